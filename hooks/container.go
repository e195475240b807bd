// Package hooks is what agentcgroup does at each point of a container's life,
// around the runc task service: Create carves its cgroup tree, PrepareExec
// and StartedExec give each exec'd tool call a cgroup, Teardown and Cleanup
// tear the tree down on delete. Behind them, a Container follows its tool
// calls (exec'd, and those the detector finds the agent forking) to their
// end, records them and tells the agent why one was killed. The graduated
// response to memory pressure is the governor's.
package hooks

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/tree"
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
	detector Detector
	agentID  uint64
	// fullCount counts the detector's Full events.
	fullCount atomic.Uint64
	// watching, where the detector's watch runs in the background, is
	// closed once it is done; detector and agentID are set before.
	watching chan struct{}
	// hold answers the container's held execve calls (nil: none); closed
	// by Teardown once the container's processes are gone.
	hold Hold
	// governor freezes, thaws and kills calls under memory pressure (nil:
	// the kernel's limits only).
	governor Governor
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
	// callCgroups are the IDs of the call cgroups the detector watches;
	// sessionCalls are those that hold a session.
	callCgroups  map[string]uint64
	sessionCalls map[string]bool
	// flushes are the calls waiting for the detector's events to be
	// flushed, by the number of their Flush; the event handler releases
	// them.
	flushes map[uint64][]chan struct{}
	// flushedUpTo is the highest flush the event handler has reached.
	flushedUpTo uint64

	// oomMu guards the OOM kills counted so far: each tool call's at its
	// own memory.max, and the container's own (ContainerOOM).
	oomMu             sync.Mutex
	toolOOMKills      map[uint64]uint64 // by cgroup ID
	containerOOMKills uint64

	// agentMu guards agents, the processes taken for the agent, by pid,
	// and st.Agent, which lists them in the state file.
	agentMu sync.Mutex
	agents  map[uint32]agentProc
	initPid uint32
	// sessions are the session programs' files in the container's root.
	sessionsOnce sync.Once
	sessions     map[fileID][]string // the session names each file serves

	// placeMu guards spare, the ready tool-call cgroups that placements
	// (the event handler, held execs) take, and closing, set by Teardown.
	// placing counts placements not tracked yet.
	placeMu   sync.Mutex
	spare     []string
	refilling bool
	closing   bool
	placing   sync.WaitGroup
}

// newContainer returns the container whose state is st and cgroup t, with
// nothing carved yet; it lives until Teardown.
func newContainer(ctx context.Context, dir string, st state.Container, t tree.Tree, p policy.Policy, env Env) (*Container, error) {
	empty, err := cgroupfs.NewEmptyWaiter()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Container{
		dir: dir, st: st, tree: t, policy: p,
		ctx: cctx, cancel: cancel,
		hold:  env.Hold,
		calls: newRecords(cctx, dir),
		empty: empty,

		pending:      make(map[string]pendingExec),
		live:         make(map[string]*call),
		forks:        make(map[uint32]*forkCall),
		callCgroups:  make(map[string]uint64),
		sessionCalls: make(map[string]bool),
		flushes:      make(map[uint64][]chan struct{}),
		toolOOMKills: make(map[uint64]uint64),
		agents:       make(map[uint32]agentProc),
	}
	if env.Publisher != nil {
		c.events = newEventQueue(context.WithoutCancel(ctx), env.Publisher)
	}
	return c, nil
}

// close releases what newContainer took, for a container never carved.
func (c *Container) close() {
	c.cancel()
	c.events.close()
	c.empty.Close()
}

// Available reports whether this host can carve agent/tool cgroups: a pure
// cgroup v2 hierarchy whose root offers the memory controller.
func Available() error {
	if !cgroupfs.HasController(cgroupfs.Root, "memory") {
		return errors.New("no cgroup v2 memory controller at " + cgroupfs.Root)
	}
	return nil
}
