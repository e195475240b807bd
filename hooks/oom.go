package hooks

import (
	"context"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// ContainerOOM decides whether an OOM kill that the runc shim saw in C
// (C's memory.events, which counts the whole tree) is the container's: an OOM
// at C's own limit or above it, what /tasks/oom means under the runc shim and
// what makes CRI and Docker report the container OOMKilled. A tool call
// killed at its own memory.max is not: it is the tool call's event
// (/agentcgroup/tool-call/killed) and its record. It reports true once for
// each new OOM kill of the container's.
func (c *Container) ContainerOOM(ctx context.Context) bool {
	ev, err := cgroupfs.ReadKV(c.tree.Dir, "memory.events")
	if err != nil {
		log.G(ctx).WithError(err).Warn("read container memory.events")
		return true // as the runc shim would
	}
	calls, _ := c.tree.Calls()
	for _, id := range calls {
		if cev, err := cgroupfs.ReadKV(c.tree.CallDir(id), "memory.events"); err == nil && cev["oom"] > 0 {
			c.toolOOM(id, cev["oom_kill"])
		}
	}
	c.oomMu.Lock()
	defer c.oomMu.Unlock()
	var tools uint64
	for _, n := range c.toolOOMKills {
		tools += n
	}
	if ev["oom_kill"] <= tools || ev["oom_kill"]-tools <= c.containerOOMKills {
		log.G(ctx).Debug("OOM kill of a tool call at its own limit: not a container OOM")
		return false
	}
	c.containerOOMKills = ev["oom_kill"] - tools
	return true
}

// toolOOM notes the OOM kills of tool call id, which met its own memory.max.
func (c *Container) toolOOM(id string, kills uint64) {
	c.oomMu.Lock()
	defer c.oomMu.Unlock()
	if kills > c.toolOOMKills[id] {
		c.toolOOMKills[id] = kills
	}
}
