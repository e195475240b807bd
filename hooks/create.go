package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/governor"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/tree"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

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
	st.Cgroup, st.Priority = group, string(p.Priority)
	if st.Pool == "" {
		st.Pool = path.Dir(group)
	}
	mount := env.CgroupMount
	if mount == "" {
		mount = cgroupfs.Root
	}
	c, err := newContainer(ctx, dir, st, tree.At(mount, group), p, env)
	if err != nil {
		return nil, err
	}
	// Saved first, so that a crash from here on is cleaned up by `delete`.
	if err := state.Save(dir, &c.st); err != nil {
		c.close()
		return nil, fmt.Errorf("save state: %w", err)
	}
	err = c.carve(pid)
	if err == nil && env.Detector != nil && p.Detect == policy.DetectForkExec {
		err = c.startWatch(ctx, env.Detector)
	}
	if err == nil {
		c.trackInit(ctx, pid)
	}
	if err != nil {
		if derr := c.Teardown(ctx); derr != nil {
			log.G(ctx).WithError(derr).Warn("cleanup after failed create")
		}
		return nil, err
	}
	if env.Governor != nil {
		c.govern(ctx, env.Governor, env.StateRoot)
	}
	log.G(ctx).WithFields(log.Fields{"cgroup": group, "policy": fmt.Sprintf("%+v", p)}).Info("carved agent/tools cgroup tree")
	return c, nil
}

// carve creates C/agent, holding init, and C/tools, with the agent's limits.
func (c *Container) carve(pid uint32) error {
	containerMax, err := cgroupfs.ReadLimit(c.tree.Dir, "memory.max")
	if errors.Is(err, os.ErrNotExist) {
		containerMax = cgroupfs.Unlimited // no memory controller in C: no limit to resolve against
	} else if err != nil {
		return fmt.Errorf("read container memory.max: %w", err)
	}
	if err := c.tree.Carve(pid); err != nil {
		return err
	}
	l := c.resolveLimits(containerMax, false)
	c.limits.Store(l)
	return c.tree.Update(layout.Agent, l.agent)
}

// govern hands the container to the governor; without it, tool calls meet
// the kernel's limits only.
func (c *Container) govern(ctx context.Context, g Governor, stateRoot string) {
	pool := governor.StatePool{Root: stateRoot, Self: c.dir, Group: c.st.Pool}
	scope := governor.Scope{Container: c.st.Cgroup, Pool: c.st.Pool}
	if err := g.Add(c.st.ID, scope, c.policy, pool, c.governed); err != nil {
		log.G(ctx).WithError(err).Warn("no memory pressure watch: tool calls are throttled and OOM-killed by the kernel's limits only, never frozen")
		return
	}
	c.governor = g
}
