package hooks

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

// The pool is every container whose state says the same Pool cgroup. There
// is no pool daemon: each shim watches the pool's memory.pressure and reads
// the other members' priority from their state folders and their tool
// calls' state from the kernel (cgroup.events, cgroup.freeze), so a shim
// that crashed leaves nothing stale behind; decisions are taken under one
// flock, which the kernel releases with a dead shim.

const poolLock = "pool.lock"

// member is another container of the pool as its cgroups show it now.
type member struct {
	rank            int
	running, frozen int
}

func rank(p policy.Priority) int {
	switch p {
	case policy.PriorityLow:
		return 0
	case policy.PriorityHigh:
		return 2
	}
	return 1
}

// stateRoot is the folder that holds every namespace's state folders.
func (c *Container) stateRoot() string { return filepath.Dir(filepath.Dir(c.dir)) }

// lockPool takes the pool's lock; the returned function releases it.
func lockPool(root string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(root, poolLock), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// poolMembers returns the other containers of this container's pool.
func (c *Container) poolMembers() []member {
	dirs, _ := filepath.Glob(filepath.Join(c.stateRoot(), "*", "*"))
	var out []member
	for _, d := range dirs {
		if d == c.dir {
			continue
		}
		st, err := state.Load(d)
		if err != nil || st.Pool != c.st.Pool || st.Cgroup == "" {
			continue
		}
		m := member{rank: rank(policy.Priority(st.Priority))}
		calls, _ := os.ReadDir(filepath.Join(cgroupfs.Path(st.Cgroup), toolsDir))
		for _, e := range calls {
			dir := filepath.Join(cgroupfs.Path(st.Cgroup), toolsDir, e.Name())
			if populated, err := cgroupfs.Populated(dir); err != nil || !populated {
				continue
			}
			if frozen, _ := cgroupfs.ReadUint(dir, "cgroup.freeze"); frozen == 1 {
				m.frozen++
			} else {
				m.running++
			}
		}
		out = append(out, m)
	}
	return out
}
