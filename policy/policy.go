// Package policy holds what a container asks of agentcgroup through its OCI
// annotations (CONTRACT.md, "Policy"), validated, with the shim's defaults.
package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Annotation keys.
const (
	Prefix                 = "io.agentcgroup."
	AnnotationToolHigh     = Prefix + "tool.memory.high"
	AnnotationToolMax      = Prefix + "tool.memory.max"
	AnnotationAgentHigh    = Prefix + "agent.memory.high"
	AnnotationAgentMax     = Prefix + "agent.memory.max"
	AnnotationPriority     = Prefix + "priority"
	AnnotationStallTimeout = Prefix + "tool.stall-timeout"
	AnnotationDetect       = Prefix + "detect"
)

// Priority orders containers and tool calls for freezing under pressure.
type Priority string

const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// Detect says which tool calls get their own cgroup.
type Detect string

const (
	DetectForkExec Detect = "fork+exec"
	DetectExec     Detect = "exec"
	DetectOff      Detect = "off"
)

// Policy is the resolved per-container policy.
type Policy struct {
	ToolMemoryHigh  Limit
	ToolMemoryMax   Limit
	AgentMemoryHigh Limit
	AgentMemoryMax  Limit
	Priority        Priority
	StallTimeout    time.Duration
	Detect          Detect
}

// Default is the policy of a container without annotations or config. Tool
// calls get no limit of their own below the container's: the container's
// memory.max stays the bound, and each call is still measured and torn down
// on its own. The README explains each value.
func Default() Policy {
	return Policy{
		ToolMemoryHigh:  Max,
		ToolMemoryMax:   Max,
		AgentMemoryHigh: Max,
		AgentMemoryMax:  Max,
		Priority:        PriorityNormal,
		StallTimeout:    5 * time.Minute,
		Detect:          DetectForkExec,
	}
}

// InvalidError names the key, the value and what is allowed.
type InvalidError struct {
	Key, Value, Allowed string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid annotation %s=%q: allowed: %s", e.Key, e.Value, e.Allowed)
}

// Is makes an InvalidError an errdefs.ErrInvalidArgument, so it reaches the
// client as gRPC InvalidArgument.
func (e *InvalidError) Is(target error) bool { return target == errdefs.ErrInvalidArgument }

type field struct {
	allowed string
	set     func(p *Policy, v string) error
}

func limitField(get func(p *Policy) *Limit) field {
	return field{limitSyntax, func(p *Policy, v string) (err error) {
		*get(p), err = ParseLimit(v)
		return err
	}}
}

func oneOf[T ~string](dst func(p *Policy) *T, values ...T) field {
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = string(v)
	}
	return field{strings.Join(names, ", "), func(p *Policy, v string) error {
		for _, ok := range values {
			if v == string(ok) {
				*dst(p) = ok
				return nil
			}
		}
		return fmt.Errorf("unknown value")
	}}
}

var fields = map[string]field{
	AnnotationToolHigh:  limitField(func(p *Policy) *Limit { return &p.ToolMemoryHigh }),
	AnnotationToolMax:   limitField(func(p *Policy) *Limit { return &p.ToolMemoryMax }),
	AnnotationAgentHigh: limitField(func(p *Policy) *Limit { return &p.AgentMemoryHigh }),
	AnnotationAgentMax:  limitField(func(p *Policy) *Limit { return &p.AgentMemoryMax }),
	AnnotationPriority:  oneOf(func(p *Policy) *Priority { return &p.Priority }, PriorityHigh, PriorityNormal, PriorityLow),
	AnnotationDetect:    oneOf(func(p *Policy) *Detect { return &p.Detect }, DetectForkExec, DetectExec, DetectOff),
	AnnotationStallTimeout: {"a Go duration of at least 1s (90s, 5m)", func(p *Policy, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return fmt.Errorf("bad duration")
		}
		p.StallTimeout = d
		return nil
	}},
}

// Keys lists every annotation key, sorted.
func Keys() []string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Apply returns base with the io.agentcgroup.* annotations applied. Other
// annotations are ignored; an unknown key under the prefix is an error, so
// that a typo does not silently fall back to a default.
func Apply(base Policy, annotations map[string]string) (Policy, error) {
	p := base
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // the first bad key reported is stable
	for _, k := range keys {
		v := annotations[k]
		f, ok := fields[k]
		if !ok {
			return base, &InvalidError{Key: k, Value: v, Allowed: "no such key; known keys are " + strings.Join(Keys(), ", ")}
		}
		if err := f.set(&p, v); err != nil {
			return base, &InvalidError{Key: k, Value: v, Allowed: f.allowed}
		}
	}
	return p, nil
}
