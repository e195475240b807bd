package governor

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/tree"
)

// Pool is the other containers of a container's pool: every container whose
// state names the same pool cgroup.
type Pool interface {
	// Lock takes the pool's lock, which every shim of the pool shares; the
	// returned function releases it.
	Lock() (unlock func(), err error)
	// Members returns the other containers of the pool as their cgroups
	// show them now.
	Members() []Member
}

// Member is another container of the pool.
type Member struct {
	Priority        policy.Priority
	Running, Frozen int // tool calls
}

// StatePool is a Pool read from the shims' state folders. There is no pool
// daemon: each shim reads the other members' priority from their state
// folders and their tool calls' state from the kernel (cgroup.events,
// cgroup.freeze), so a shim that crashed leaves nothing stale behind;
// decisions are taken under one flock, which the kernel releases with a
// dead shim.
type StatePool struct {
	Root  string // the state root
	Self  string // this container's state folder
	Group string // the pool's cgroup
}

// Lock takes the flock on the state root's pool lock file.
func (p StatePool) Lock() (func(), error) {
	f, err := os.OpenFile(state.PoolLock(p.Root), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Members reads the pool's other containers.
func (p StatePool) Members() []Member {
	var out []Member
	for _, d := range state.List(p.Root) {
		if d == p.Self {
			continue
		}
		st, err := state.Load(d)
		if err != nil || st.Pool != p.Group || st.Cgroup == "" {
			continue
		}
		m := Member{Priority: policy.Priority(st.Priority)}
		t := tree.Of(st.Cgroup)
		calls, _ := t.Calls()
		for _, id := range calls {
			dir := t.CallDir(id)
			if populated, err := cgroupfs.Populated(dir); err != nil || !populated {
				continue
			}
			if frozen, _ := cgroupfs.ReadUint(dir, "cgroup.freeze"); frozen == 1 {
				m.Frozen++
			} else {
				m.Running++
			}
		}
		out = append(out, m)
	}
	return out
}
