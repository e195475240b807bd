package governor

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

// Pool is the other containers of a container's pool: every container whose
// state names the same pool cgroup.
type Pool interface {
	// Lock takes the pool's lock, which every shim of the pool shares; the
	// returned function releases it.
	Lock() (unlock func(), err error)
	// Members returns the other containers of the pool as they last
	// published themselves.
	Members() []Member
	// Publish says what the container's tool calls are doing now.
	Publish(Member) error
}

// Member is a container of the pool.
type Member struct {
	Priority        policy.Priority
	Running, Frozen int // tool calls
}

// StatePool is a Pool read from the shims' state folders. There is no pool
// daemon: each shim publishes its container's tally (state.Tally) in its
// state folder as its calls start, end, freeze and thaw, and reads the
// other members' there, under a flock per pool that the kernel releases
// with a dead shim. A decision so reads one small file per member, whatever
// their number of calls; a shim killed leaves its tally until containerd's
// cleanup removes its state folder.
type StatePool struct {
	Root  string // the state root
	Self  string // this container's state folder
	Group string // the pool's cgroup
}

// Lock takes the flock on the pool's lock file.
func (p StatePool) Lock() (func(), error) {
	f, err := os.OpenFile(state.PoolLock(p.Root, p.Group), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Members reads the pool's other containers' tallies.
func (p StatePool) Members() []Member {
	var out []Member
	for _, d := range state.List(p.Root) {
		if d == p.Self {
			continue
		}
		t, err := state.LoadTally(d)
		if err != nil || t.Pool != p.Group {
			continue
		}
		out = append(out, Member{Priority: policy.Priority(t.Priority), Running: t.Running, Frozen: t.Frozen})
	}
	return out
}

// Publish replaces this container's tally; a state folder already removed
// (the container deleted) has none to replace.
func (p StatePool) Publish(m Member) error {
	err := state.SaveTally(p.Self, state.Tally{Pool: p.Group, Priority: string(m.Priority), Running: m.Running, Frozen: m.Frozen})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
