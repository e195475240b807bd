// Package hooks is what agentcgroup does at each point of a container's life:
// carve its cgroup tree on create, give each tool call a cgroup, record a
// tool call when it ends, and tear the tree down on delete.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
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

	mu      sync.Mutex
	pending map[string][]string // exec ID -> argv, between Exec and Start
	forks   map[uint32]*forkCall
	seq     uint64
	spare   []string // ready tool-call cgroups, used by the event handler only
	calls   *records
}

// Create carves the tree for a container whose init (pid, still waiting in
// `runc init`) is in cgroup C: it creates C/agent and C/tools, moves init into
// C/agent, enables the controllers down the tree and applies the agent limits.
// With a detector (policy detect=fork+exec), the tool calls that the agent
// forks get their cgroups too. On error nothing of the tree is left, and
// init is gone with it.
func Create(ctx context.Context, dir string, st state.Container, pid uint32, p policy.Policy, d *bpf.Detector) (*Container, error) {
	group, err := cgroupsv2.PidGroupPath(int(pid))
	if err != nil {
		return nil, fmt.Errorf("read cgroup of init %d: %w", pid, err)
	}
	st.Cgroup = group
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Container{
		dir: dir, st: st, path: cgroupfs.Path(group), policy: p,
		ctx: cctx, cancel: cancel,
		pending: make(map[string][]string),
		forks:   make(map[uint32]*forkCall),
	}
	c.calls = newRecords(&c.mu, dir)
	// Saved first, so that a crash from here on is cleaned up by `delete`.
	if err := state.Save(dir, &c.st); err != nil {
		cancel()
		return nil, fmt.Errorf("save state: %w", err)
	}
	err = c.carve(pid)
	if err == nil && d != nil && p.Detect == policy.DetectForkExec {
		err = c.watch(ctx, d)
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
	agentPath := filepath.Join(c.path, agentDir)
	if err := c.setMemory(agentPath, c.policy.AgentMemoryHigh, c.policy.AgentMemoryMax); err != nil {
		return err
	}
	return nil
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

// setMemory applies memory.high and memory.max; "max" is the kernel's default
// for a new cgroup and is not written.
func (c *Container) setMemory(dir string, high, max policy.Limit) error {
	if !cgroupfs.HasController(filepath.Dir(dir), "memory") {
		return nil
	}
	for _, l := range []struct {
		file  string
		limit policy.Limit
	}{{"memory.high", high}, {"memory.max", max}} {
		if v := l.limit.Resolve(c.containerMax); v != policy.Unlimited {
			if err := cgroupfs.WriteLimit(dir, l.file, v); err != nil {
				return err
			}
		}
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
