// Package hooks is what agentcgroup does at each point of a container's life:
// carve its cgroup tree on create, give each tool call a cgroup (exec'd
// calls, and the calls the detector finds the agent forking), follow each
// call to its end and record it, and tear the tree down on delete. The
// graduated response to memory pressure is the governor's.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"sync/atomic"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/governor"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/tree"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

// Container is one container's cgroup tree and its tool calls.
type Container struct {
	dir    string // state folder
	st     state.Container
	tree   tree.Tree
	policy policy.Policy
	// limits are the policy resolved against C's memory.max; resizeMu
	// orders resizes.
	limits   atomic.Pointer[limits]
	resizeMu sync.Mutex

	ctx    context.Context // ends with the container
	cancel context.CancelFunc

	// detector finds the tool calls the agent forks (nil: execs only).
	detector *bpf.Detector
	agentID  uint64
	// watching, where the detector's watch runs in the background, is
	// closed once it is done; detector and agentID are set before.
	watching chan struct{}
	// hold answers the container's held execve calls (nil: none); closed
	// by Teardown once the container's processes are gone.
	hold *exechold.Listener
	// governor freezes, thaws and kills calls under memory pressure (nil:
	// the kernel's limits only).
	governor *governor.Watcher
	events   *eventQueue
	calls    *records
	// empty waits for the tool calls' cgroups to empty.
	empty *cgroupfs.EmptyWaiter

	// mu guards the maps; no cgroup or state file is read or written under it.
	mu      sync.Mutex
	pending map[string]pendingExec
	live    map[string]*call // running tool calls by ID
	forks   map[uint32]*forkCall
	seq     uint64
	// callCgroups are the IDs of the call cgroups the detector watches.
	callCgroups map[string]uint64
	// flushes are the calls waiting for the detector's events to be
	// flushed, by the number of their Flush; the event handler releases
	// them.
	flushes map[uint64][]chan struct{}

	// oomMu guards the OOM kills counted so far: each tool call's at its
	// own memory.max, and the container's own (ContainerOOM).
	oomMu             sync.Mutex
	toolOOMKills      map[uint64]uint64 // by cgroup ID
	containerOOMKills uint64

	// placeMu guards spare, the ready tool-call cgroups that placements
	// (the event handler, held execs) take, and closing, set by Teardown.
	// placing counts placements not tracked yet.
	placeMu   sync.Mutex
	spare     []string
	refilling bool
	closing   bool
	placing   sync.WaitGroup
}

// Env is what a container's hooks use of the shim.
type Env struct {
	// Detector finds the tool calls the agent forks (nil: execs only).
	Detector *bpf.Detector
	// Publisher sends tool-call events to containerd (nil: none).
	Publisher events.Publisher
	// Hold answers the container's held execve calls (nil: no hold; a
	// forked call is placed after its program has started).
	Hold *exechold.Listener
	// Governor is the shim's graduated response (nil: none).
	Governor *governor.Watcher
	// StateRoot holds every container's state folder; the pool's members
	// are read there.
	StateRoot string
}

// Create carves the tree for a container whose init (pid, still waiting in
// `runc init`) is in cgroup C: C/agent with the agent's limits, holding init,
// and C/tools. With a detector (policy detect=fork+exec), the tool calls that
// the agent forks get their cgroups too. It then hands the container to the
// governor. On error nothing of the tree is left, and init is gone with it.
// st.Pool names the container's pool; empty means C's parent.
func Create(ctx context.Context, dir string, st state.Container, pid uint32, p policy.Policy, env Env) (*Container, error) {
	group, err := cgroupsv2.PidGroupPath(int(pid))
	if err != nil {
		return nil, fmt.Errorf("read cgroup of init %d: %w", pid, err)
	}
	st.Cgroup = group
	st.Priority = string(p.Priority)
	if st.Pool == "" {
		st.Pool = path.Dir(group)
	}
	empty, err := cgroupfs.NewEmptyWaiter()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Container{
		empty: empty,
		dir:   dir, st: st, tree: tree.Of(group), policy: p,
		ctx: cctx, cancel: cancel, hold: env.Hold,
		calls:   newRecords(cctx, dir),
		pending: make(map[string]pendingExec),
		live:    make(map[string]*call),
		forks:   make(map[uint32]*forkCall),

		callCgroups: make(map[string]uint64),
		flushes:     make(map[uint64][]chan struct{}),

		toolOOMKills: make(map[uint64]uint64),
	}
	if env.Publisher != nil {
		c.events = newEventQueue(context.WithoutCancel(ctx), env.Publisher)
	}
	// Saved first, so that a crash from here on is cleaned up by `delete`.
	if err := state.Save(dir, &c.st); err != nil {
		cancel()
		c.events.close()
		empty.Close()
		return nil, fmt.Errorf("save state: %w", err)
	}
	err = c.carve(pid)
	if err == nil && env.Detector != nil && p.Detect == policy.DetectForkExec {
		err = c.startWatch(ctx, env.Detector)
	}
	if err == nil && env.Governor != nil {
		pool := governor.StatePool{Root: env.StateRoot, Self: dir, Group: st.Pool}
		if gerr := env.Governor.Add(st.ID, governor.Scope{Container: group, Pool: st.Pool}, p, pool, c.governed); gerr != nil {
			log.G(ctx).WithError(gerr).Warn("no memory pressure watch: tool calls are throttled and OOM-killed by the kernel's limits only, never frozen")
		} else {
			c.governor = env.Governor
		}
	}
	if err != nil {
		if derr := c.Teardown(ctx); derr != nil {
			log.G(ctx).WithError(derr).Warn("cleanup after failed create")
		}
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"cgroup": group, "policy": fmt.Sprintf("%+v", p)}).Info("carved agent/tools cgroup tree")
	return c, nil
}

func (c *Container) carve(pid uint32) error {
	containerMax, err := cgroupfs.ReadLimit(c.tree.Dir, "memory.max")
	if err != nil {
		return fmt.Errorf("read container memory.max: %w", err)
	}
	if err := c.tree.Carve(pid); err != nil {
		return err
	}
	l := c.resolveLimits(containerMax, false)
	c.limits.Store(l)
	return c.tree.Update(layout.Agent, l.agent)
}

// Available reports whether this host can carve agent/tool cgroups: a pure
// cgroup v2 hierarchy whose root offers the memory controller.
func Available() error {
	if !cgroupfs.HasController(cgroupfs.Root, "memory") {
		return errors.New("no cgroup v2 memory controller at " + cgroupfs.Root)
	}
	return nil
}
