package hooks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"

	cgroupsv2 "github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

// limits are the container's policy resolved against C's memory.max, the
// base of percentages; they are resolved again when C is resized.
type limits struct {
	containerMax int64
	agent, tool  *cgroupsv2.Resources
}

// resolveLimits resolves the policy for a C whose memory.max is
// containerMax. On create, "max" is the kernel's default for a new cgroup's
// memory.high and memory.max and is not written; on resize it must be, to
// undo a limit resolved before. memory.low's default is 0, so its "max" is
// always written.
func (c *Container) resolveLimits(containerMax int64, resize bool) *limits {
	resolve := func(l policy.Limit, defaultMax bool) *int64 {
		v := l.Resolve(containerMax)
		if v == cgroupfs.Unlimited {
			if defaultMax && !resize {
				return nil
			}
			v = math.MaxInt64 // the kernel clamps it to "max"; it refuses -1
		}
		return &v
	}
	l := &limits{containerMax: containerMax, tool: &cgroupsv2.Resources{}}
	if c.tree.Has("memory") {
		// C/agent's memory.low, memory.high and memory.max.
		l.agent = &cgroupsv2.Resources{Memory: &cgroupsv2.Memory{
			Low:  resolve(c.policy.AgentMemoryLow, false),
			High: resolve(c.policy.AgentMemoryHigh, true),
			Max:  resolve(c.policy.AgentMemoryMax, true),
		}}
		// A tool call's, written before its first process runs in its
		// cgroup: memory.high and memory.max, and memory.oom.group so that
		// an OOM kill takes the whole call and nothing else.
		group := true
		l.tool.Memory = &cgroupsv2.Memory{
			High:     resolve(c.policy.ToolMemoryHigh, true),
			Max:      resolve(c.policy.ToolMemoryMax, true),
			OOMGroup: &group,
		}
	}
	if c.policy.ToolPidsMax > 0 && c.tree.Has("pids") {
		l.tool.Pids = &cgroupsv2.Pids{Max: c.policy.ToolPidsMax}
	}
	return l
}

// Resize follows a change of C's memory.max (ctr task update, CRI
// UpdateContainerResources, Kubernetes in-place resize): limits given as
// percentages are resolved again and written to C/agent, to every running
// tool call and to the spare cgroups; new calls get them too.
func (c *Container) Resize(ctx context.Context) error {
	c.resizeMu.Lock() // two updates in a row: the later limit stays
	defer c.resizeMu.Unlock()
	containerMax, err := cgroupfs.ReadLimit(c.tree.Dir, "memory.max")
	if err != nil {
		return fmt.Errorf("read container memory.max: %w", err)
	}
	if c.limits.Load().containerMax == containerMax {
		return nil
	}
	l := c.resolveLimits(containerMax, true)
	c.limits.Store(l) // new calls take these (newCall checks again after its cgroup exists)
	errs := []error{c.tree.Update(layout.Agent, l.agent)}
	// Every call cgroup: running, exec'd but not started, spare, being placed.
	ids, err := c.tree.Calls()
	errs = append(errs, err)
	for _, id := range ids {
		if err := c.tree.Update(layout.CallCgroup(id), l.tool); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	log.G(ctx).WithField("memory.max", size(containerMax)).Info("container resized: agent and tool-call limits resolved again")
	return errors.Join(errs...)
}
