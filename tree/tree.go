// Package tree is the layout agentcgroup carves in a container's cgroup C,
// known here (its names in tree/layout) and nowhere else:
//
//	C                  the container's cgroup, as the runtime made it
//	├── agent          init and everything that is not a tool call
//	└── tools
//	    └── <id>       one cgroup per tool call
//
// It creates, measures, kills and removes the tree through
// containerd/cgroups v3 where v3 has the operation, and cgroupfs where not.
package tree

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

// delegated are the controllers enabled from C down to the tool calls, where
// C has them.
var delegated = []string{"cpu", "io", "memory", "pids"}

// killTimeout bounds the wait for a killed tree to empty.
const killTimeout = 10 * time.Second

// Tree is one container's tree.
type Tree struct {
	// Mount is the cgroup2 mount.
	Mount string
	// Group is C relative to Mount, such as /default/t1.
	Group string
	// Dir is C's directory.
	Dir string
}

// Of returns the tree of the container whose cgroup is group, on the host's
// cgroup2 mount.
func Of(group string) Tree { return At(cgroupfs.Root, group) }

// At returns the tree of the container whose cgroup is group on the cgroup2
// hierarchy mounted at mount.
func At(mount, group string) Tree {
	return Tree{Mount: mount, Group: group, Dir: filepath.Join(mount, group)}
}

// load loads sub, a cgroup of the tree relative to C ("" for C).
func (t Tree) load(sub string) (*cgroup2.Manager, error) {
	return cgroup2.Load(path.Join(t.Group, sub), cgroup2.WithMountpoint(t.Mount))
}

// AgentDir is C/agent's directory.
func (t Tree) AgentDir() string { return filepath.Join(t.Dir, layout.Agent) }

// CallGroup is tool call id's cgroup relative to the cgroup2 mount.
func (t Tree) CallGroup(id string) string { return path.Join(t.Group, layout.Tools, id) }

// CallDir is tool call id's cgroup directory.
func (t Tree) CallDir(id string) string { return filepath.Join(t.Dir, layout.Tools, id) }

// Carve creates C/agent and C/tools, moves init (pid) into C/agent and
// enables the controllers down to the tool calls.
func (t Tree) Carve(pid uint32) error {
	c, err := t.load("")
	if err != nil {
		return err
	}
	a, err := c.NewChild(layout.Agent, nil)
	if err != nil {
		return fmt.Errorf("create %s/%s: %w", t.Dir, layout.Agent, err)
	}
	if _, err := c.NewChild(layout.Tools, nil); err != nil {
		return fmt.Errorf("create %s/%s: %w", t.Dir, layout.Tools, err)
	}
	if err := a.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("move init %d into %s: %w", pid, t.AgentDir(), err)
	}
	// C now holds no process, so it may enable domain controllers for its
	// children. v3's ToggleControllers writes every ancestor's
	// subtree_control, not C's own: the two writes are here.
	ctrls, err := c.Controllers()
	if err != nil {
		return err
	}
	ctrls = slices.DeleteFunc(ctrls, func(s string) bool { return !slices.Contains(delegated, s) })
	for _, dir := range []string{t.Dir, filepath.Join(t.Dir, layout.Tools)} {
		if err := enable(dir, ctrls); err != nil {
			return err
		}
	}
	return nil
}

// Update writes resources to sub, a cgroup of the tree relative to C (layout.Agent,
// or a layout.CallCgroup).
func (t Tree) Update(sub string, res *cgroup2.Resources) error {
	if res == nil {
		return nil
	}
	m, err := t.load(sub)
	if err == nil {
		err = m.Update(res)
	}
	if err != nil {
		return fmt.Errorf("set limits of %s: %w", filepath.Join(t.Dir, sub), err)
	}
	return nil
}

func enable(dir string, ctrls []string) error {
	if len(ctrls) == 0 {
		return nil
	}
	v := "+" + strings.Join(ctrls, " +")
	return cgroupfs.WriteString(dir, "cgroup.subtree_control", v)
}

// Has reports whether C's children have controller.
func (t Tree) Has(controller string) bool {
	return cgroupfs.HasController(filepath.Join(t.Dir, layout.Tools), controller)
}

// NewCall creates tool call id's cgroup with its resources, before any
// process is in it. An id already taken fails with an error that is
// os.ErrExist; on any error nothing is left.
func (t Tree) NewCall(id string, res *cgroup2.Resources) error {
	dir := t.CallDir(id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := t.Update(layout.CallCgroup(id), res); err != nil {
		os.Remove(dir)
		return err
	}
	return nil
}

// Move moves process pid into tool call id's cgroup.
func (t Tree) Move(id string, pid uint32) error {
	m, err := t.load(layout.CallCgroup(id))
	if err == nil {
		err = m.AddProc(uint64(pid))
	}
	if err != nil {
		return fmt.Errorf("move %d into %s: %w", pid, t.CallDir(id), err)
	}
	return nil
}

// RemoveCall removes an empty tool call's cgroup; one already gone is not an error.
func (t Tree) RemoveCall(id string) error {
	if err := os.Remove(t.CallDir(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Calls lists the names of the tool-call cgroups in C/tools.
func (t Tree) Calls() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(t.Dir, layout.Tools))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Kill kills every process in C and below and waits until C is empty.
func (t Tree) Kill(ctx context.Context) error {
	populated, err := cgroupfs.Populated(t.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || !populated {
		return err
	}
	c, err := t.load("")
	if err != nil {
		return err
	}
	if err := c.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", t.Dir, err)
	}
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	return cgroupfs.WaitEmpty(ctx, t.Dir)
}

// Remove removes C's sub-cgroups; they must be empty. C is the runtime's.
func (t Tree) Remove() error {
	for _, sub := range []string{layout.Tools, layout.Agent} {
		if err := cgroupfs.RemoveTree(filepath.Join(t.Dir, sub)); err != nil {
			return err
		}
	}
	return nil
}

// Measure reads a tool call's memory figures from its cgroup (group,
// relative to the host's cgroup2 mount).
func Measure(group string) (toolcall.Measures, error) { return Of(group).Measure("") }

// Measure reads the memory figures of sub, a cgroup of the tree relative to
// C ("" for C itself), and the forks its pids.max refused (none where the
// pids controller is off).
func (t Tree) Measure(sub string) (toolcall.Measures, error) {
	m, err := t.load(sub)
	if err != nil {
		return toolcall.Measures{}, err
	}
	var out toolcall.Measures
	st, err := m.StatFiltered(cgroup2.StatMemoryEvents)
	if err != nil {
		return out, err
	}
	if ev := st.GetMemoryEvents(); ev != nil {
		out.High, out.Max, out.OOM, out.OOMKills = ev.High, ev.Max, ev.Oom, ev.OomKill
	}
	dir := filepath.Join(t.Dir, sub)
	if pids, err := cgroupfs.ReadKV(dir, "pids.events"); err == nil {
		out.PidsMax = pids["max"]
	}
	out.Peak, err = cgroupfs.ReadUint(dir, "memory.peak")
	return out, err
}
