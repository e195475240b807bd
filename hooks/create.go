// Package hooks is what agentcgroup does at each point of a container's life:
// carve its cgroup tree on create, give each tool call a cgroup, record a
// tool call when it ends, and tear the tree down on delete.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

const (
	agentDir = "agent"
	toolsDir = "tools"
)

// delegated are the controllers enabled from C down to the tool calls, where
// C has them.
var delegated = []string{"cpu", "io", "memory", "pids"}

// Container is one container's cgroup tree C, C/agent, C/tools/<id> and its
// tool calls.
type Container struct {
	dir    string // state folder
	st     state.Container
	path   string // C, absolute
	policy policy.Policy
	// containerMax is C's memory.max at create, the base of percentages.
	containerMax int64

	ctx    context.Context // ends with the container
	cancel context.CancelFunc

	// detector finds the tool calls the agent forks (nil: execs only).
	detector *bpf.Detector
	agentID  uint64
	// hold answers the container's held execve calls (nil: none); closed
	// by Teardown once the container's processes are gone.
	hold *exechold.Listener

	// events queues freezes, thaws and kills for containerd (nil: none, or
	// torn down); guarded by mu.
	events chan event
	// poller watches memory pressure and the calls' events (nil: the
	// kernel has no PSI; the kernel's own limits still hold).
	poller *cgroupfs.Poller

	mu      sync.Mutex
	pending map[string]pendingExec
	live    map[string]*call // running tool calls by ID
	forks   map[uint32]*forkCall
	seq     uint64
	// placeMu guards spare, the ready tool-call cgroups that placements
	// (the event handler, held execs) take, and closing, set by Teardown.
	// placing counts placements not tracked yet.
	placeMu   sync.Mutex
	spare     []string
	refilling bool
	closing   bool
	placing   sync.WaitGroup
	calls     *records
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
}

// Create carves the tree for a container whose init (pid, still waiting in
// `runc init`) is in cgroup C: it creates C/agent and C/tools, moves init into
// C/agent, enables the controllers down the tree and applies the agent limits.
// With a detector (policy detect=fork+exec), the tool calls that the agent
// forks get their cgroups too. It then starts the graduated response. On
// error nothing of the tree is left, and init is gone with it. st.Pool names
// the container's pool; empty means C's parent.
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
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Container{
		dir: dir, st: st, path: cgroupfs.Path(group), policy: p,
		ctx: cctx, cancel: cancel, hold: env.Hold,
		pending: make(map[string]pendingExec),
		live:    make(map[string]*call),
		forks:   make(map[uint32]*forkCall),
	}
	c.calls = newRecords(&c.mu, dir)
	if env.Publisher != nil {
		c.events = make(chan event, eventQueue)
		go c.sendEvents(context.WithoutCancel(ctx), env.Publisher)
	}
	// Saved first, so that a crash from here on is cleaned up by `delete`.
	if err := state.Save(dir, &c.st); err != nil {
		cancel()
		return nil, fmt.Errorf("save state: %w", err)
	}
	err = c.carve(pid)
	if err == nil && env.Detector != nil && p.Detect == policy.DetectForkExec {
		err = c.watch(ctx, env.Detector)
	}
	if err == nil {
		if gerr := c.govern(ctx); gerr != nil {
			log.G(ctx).WithError(gerr).Warn("no memory pressure watch: tool calls are throttled and OOM-killed by the kernel's limits only, never frozen")
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
	cg, err := cgroupsv2.Load(c.st.Cgroup)
	if err != nil {
		return err
	}
	if c.containerMax, err = cgroupfs.ReadLimit(c.path, "memory.max"); err != nil {
		return fmt.Errorf("read container memory.max: %w", err)
	}
	agent, err := cg.NewChild(agentDir, nil)
	if err != nil {
		return fmt.Errorf("create %s/%s: %w", c.path, agentDir, err)
	}
	if _, err := cg.NewChild(toolsDir, nil); err != nil {
		return fmt.Errorf("create %s/%s: %w", c.path, toolsDir, err)
	}
	if err := agent.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("move init %d into %s/%s: %w", pid, c.path, agentDir, err)
	}
	// C now holds no process, so it may enable domain controllers for its children.
	ctrls := enable(c.path)
	if err := writeSubtreeControl(c.path, ctrls); err != nil {
		return err
	}
	if err := writeSubtreeControl(filepath.Join(c.path, toolsDir), ctrls); err != nil {
		return err
	}
	return c.setAgentLimits(filepath.Join(c.path, agentDir))
}

// enable returns the delegated controllers that dir has.
func enable(dir string) []string {
	var out []string
	for _, ctrl := range delegated {
		if cgroupfs.HasController(dir, ctrl) {
			out = append(out, ctrl)
		}
	}
	return out
}

func writeSubtreeControl(dir string, ctrls []string) error {
	if len(ctrls) == 0 {
		return nil
	}
	v := "+" + strings.Join(ctrls, " +")
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(v), 0); err != nil {
		return fmt.Errorf("enable controllers %q in %s: %w", v, dir, err)
	}
	return nil
}

// Available reports whether this host can carve agent/tool cgroups: a pure
// cgroup v2 hierarchy whose root offers the memory controller.
func Available() error {
	if !cgroupfs.HasController(cgroupfs.Root, "memory") {
		return errors.New("no cgroup v2 memory controller at " + cgroupfs.Root)
	}
	return nil
}
