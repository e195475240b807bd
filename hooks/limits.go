package hooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
)

// toolOOMScoreAdj is given to a tool call's first process (its children
// inherit it): where an OOM above the call's own limit must pick a victim in
// C or on the host, the kernel picks a tool call before the agent.
const toolOOMScoreAdj = 500

// setAgentLimits applies the agent's memory.low, memory.high and memory.max.
func (c *Container) setAgentLimits(dir string) error {
	if !cgroupfs.HasController(filepath.Dir(dir), "memory") {
		return nil
	}
	return c.writeLimits(dir, []limitFile{
		{"memory.low", c.policy.AgentMemoryLow},
		{"memory.high", c.policy.AgentMemoryHigh},
		{"memory.max", c.policy.AgentMemoryMax},
	})
}

// setToolLimits prepares a tool call's cgroup before its first process runs
// in it: memory.high and memory.max, memory.oom.group so that an OOM kill
// takes the whole call and nothing else, and pids.max.
func (c *Container) setToolLimits(dir string) error {
	parent := filepath.Dir(dir)
	if cgroupfs.HasController(parent, "memory") {
		if err := c.writeLimits(dir, []limitFile{
			{"memory.high", c.policy.ToolMemoryHigh},
			{"memory.max", c.policy.ToolMemoryMax},
		}); err != nil {
			return err
		}
		if err := cgroupfs.WriteString(dir, "memory.oom.group", "1"); err != nil {
			return err
		}
	}
	if c.policy.ToolPidsMax > 0 && cgroupfs.HasController(parent, "pids") {
		if err := cgroupfs.WriteString(dir, "pids.max", strconv.FormatInt(c.policy.ToolPidsMax, 10)); err != nil {
			return err
		}
	}
	return nil
}

// limitFile is a limit and the file it goes to.
type limitFile struct {
	file  string
	limit policy.Limit
}

// writeLimits writes resolved limits in order; "max" is the kernel's default
// for a new cgroup (and 0 for memory.low) and is not written.
func (c *Container) writeLimits(dir string, limits []limitFile) error {
	for _, l := range limits {
		if v := l.limit.Resolve(c.containerMax); v != policy.Unlimited {
			if err := cgroupfs.WriteLimit(dir, l.file, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// raiseOOMScore gives a tool call's process toolOOMScoreAdj unless it has a
// higher one already.
func raiseOOMScore(pid uint32) error {
	path := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return ignoreGone(err)
	}
	if cur, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && cur >= toolOOMScoreAdj {
		return nil
	}
	return ignoreGone(os.WriteFile(path, []byte(strconv.Itoa(toolOOMScoreAdj)), 0))
}

// ignoreGone treats a process that has exited already as done with.
func ignoreGone(err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}
