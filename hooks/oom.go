package hooks

import (
	"context"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

// ContainerOOM decides whether an OOM kill that the runc shim saw in C
// (C's memory.events, which counts the whole tree) is the container's: an OOM
// at C's own limit or above it, what /tasks/oom means under the runc shim and
// what makes CRI and Docker report the container OOMKilled. A tool call
// killed at its own memory.max is not: it is the tool call's event
// (/agentcgroup/tool-call/killed) and its record. It reports true once for
// each new OOM kill of the container's.
func (c *Container) ContainerOOM(ctx context.Context) bool {
	all, err := c.tree.Measure("")
	if err != nil {
		log.G(ctx).WithError(err).Warn("read container memory.events")
		return true // as the runc shim would
	}
	calls, _ := c.tree.Calls()
	for _, id := range calls {
		if m, err := c.tree.Measure(layout.CallCgroup(id)); err == nil && m.OOM > 0 {
			c.toolOOM(c.tree.CallDir(id), m.OOMKills)
		}
	}
	c.oomMu.Lock()
	defer c.oomMu.Unlock()
	var tools uint64
	for _, n := range c.toolOOMKills {
		tools += n
	}
	if all.OOMKills <= tools || all.OOMKills-tools <= c.containerOOMKills {
		log.G(ctx).Debug("OOM kill of a tool call at its own limit: not a container OOM")
		return false
	}
	c.containerOOMKills = all.OOMKills - tools
	return true
}

// toolOOM notes the OOM kills of the tool call whose cgroup is dir, which met
// its own memory.max. Calls are told apart by their cgroup's ID: an exec ID
// can be used again once its call has ended.
func (c *Container) toolOOM(dir string, kills uint64) {
	id, err := cgroupfs.ID(dir)
	if err != nil {
		return // gone: counted at its end
	}
	c.oomMu.Lock()
	defer c.oomMu.Unlock()
	if kills > c.toolOOMKills[id] {
		c.toolOOMKills[id] = kills
	}
}
