// Package policy holds what a container asks of agentcgroup through its OCI
// annotations (docs/contract.md, "Policy"), validated, with the shim's defaults.
package policy

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/errdefs"
)

// Annotation keys.
const (
	Prefix                 = "io.agentcgroup."
	AnnotationToolHigh     = Prefix + "tool.memory.high"
	AnnotationToolMax      = Prefix + "tool.memory.max"
	AnnotationAgentHigh    = Prefix + "agent.memory.high"
	AnnotationAgentMax     = Prefix + "agent.memory.max"
	AnnotationAgentLow     = Prefix + "agent.memory.low"
	AnnotationToolPidsMax  = Prefix + "tool.pids.max"
	AnnotationPriority     = Prefix + "priority"
	AnnotationStallTimeout = Prefix + "tool.stall-timeout"
	AnnotationDetect       = Prefix + "detect"
	AnnotationSessions     = Prefix + "sessions"
	AnnotationAgent        = Prefix + "agent"
)

// Priority orders containers and tool calls for freezing under pressure.
type Priority string

const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// Rank orders priorities: a lower rank is frozen first and thawed last.
func (p Priority) Rank() int {
	switch p {
	case PriorityLow:
		return 0
	case PriorityHigh:
		return 2
	}
	return 1
}

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
	// AgentMemoryLow protects the agent framework from reclaim caused by its
	// tool calls (and, where C has memory.low, by the host).
	AgentMemoryLow Limit
	// ToolPidsMax bounds the tasks of one tool call (0: no bound), so that a
	// fork bomb stays inside its call.
	ToolPidsMax  int64
	Priority     Priority
	StallTimeout time.Duration
	Detect       Detect
	// Sessions are the programs that are shell sessions, not tool calls,
	// when the agent starts them reading their commands (an interactive
	// bash fed on its stdin or a pty, tmux, screen): each command they run
	// is a tool call of its own, and they stay with the agent. Comma
	// separated: a name stands for the files of that name where programs
	// are installed (/usr/local/sbin ... /bin), a path for that file, both
	// in the container's root; "" for none.
	Sessions string
	// Agent is the absolute path, in the container, of the agent's
	// program or main script, where the container starts it in a way the
	// shim does not take for the agent by itself ("": none).
	Agent string
}

// DefaultSessions are the shells and terminal multiplexers that agent
// frameworks keep as sessions (SWE-agent's bash, OpenHands' tmux).
const DefaultSessions = "bash,sh,dash,zsh,ksh,ash,fish,tmux,screen"

// Default is the policy of a container without annotations or config, sized
// for agent workloads: a framework of about 185 MB that must survive, and
// tool calls that burst to 0.5-2 GB for a second or two. Percentages are of
// the container's memory.max; without one they mean no limit.
// docs/configuration.md explains each value.
func Default() Policy {
	return Policy{
		// A call is throttled well before it can take C's whole limit...
		ToolMemoryHigh: Limit{Percent: 75},
		// ...and killed (alone, memory.oom.group) before C's own OOM could
		// pick a victim in C/agent.
		ToolMemoryMax:   Limit{Percent: 90},
		AgentMemoryHigh: Max,
		AgentMemoryMax:  Max,
		// The framework's steady 185 MB plus headroom is not reclaimed to make
		// room for a tool call.
		AgentMemoryLow: Limit{Bytes: 256 << 20},
		// Far above any build or test run, far below a host's pid_max.
		ToolPidsMax:  4096,
		Priority:     PriorityNormal,
		StallTimeout: 5 * time.Minute,
		Detect:       DetectForkExec,
		Sessions:     DefaultSessions,
	}
}

// InvalidError names the key, the value, what is allowed and where the value
// came from ("annotation", or the config's Policy table), and, where it adds
// to Allowed, the Reason this value is not.
type InvalidError struct {
	Source, Key, Value, Allowed string
	Reason                      string
}

func (e *InvalidError) Error() string {
	key := e.Key
	if !printable(key) {
		key = strconv.Quote(key)
	}
	if e.Reason != "" {
		return fmt.Sprintf("invalid %s %s=%q: %s; allowed: %s", e.Source, key, e.Value, e.Reason, e.Allowed)
	}
	return fmt.Sprintf("invalid %s %s=%q: allowed: %s", e.Source, key, e.Value, e.Allowed)
}

// Is makes an InvalidError an errdefs.ErrInvalidArgument, so it reaches the
// client as gRPC InvalidArgument.
func (e *InvalidError) Is(target error) bool { return target == errdefs.ErrInvalidArgument }

// DeniedError is an annotation that the shim's config does not honour.
type DeniedError struct {
	Key     string
	Allowed []string
	// Value and Reason say why a value is refused without an allow-list.
	Value, Reason string
}

func (e *DeniedError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("annotation %s=%q is not honoured by this shim's config: it %s", e.Key, e.Value, e.Reason)
	}
	allowed := "none"
	if len(e.Allowed) > 0 {
		allowed = strings.Join(e.Allowed, ", ")
	}
	return fmt.Sprintf("annotation %s is not honoured by this shim's config (AllowedAnnotations: %s)", e.Key, allowed)
}

// Is makes a DeniedError an errdefs.ErrPermissionDenied.
func (e *DeniedError) Is(target error) bool { return target == errdefs.ErrPermissionDenied }

// Sources of settings, as errors name them.
const (
	SourceAnnotation = "annotation"
	SourceConfig     = "config Policy key"
)

// MaxToolPids is the largest tool.pids.max: the kernel's PID_MAX_LIMIT on
// 64-bit (4194304, 1<<22). pids.max refuses anything above it, so a larger
// value would be accepted here and then fail every tool call's exec.
const MaxToolPids = 1 << 22

// minToolPids leaves room for a shell, the program it runs and its helpers.
const minToolPids = 8

// Bounds of tool.stall-timeout. Below a second a call would be killed for
// the stall of one or two PSI windows (500 ms); above a day the timeout no
// longer keeps a frozen call from starving, which is what it is for.
const (
	minStallTimeout = time.Second
	maxStallTimeout = 24 * time.Hour
)

type field struct {
	allowed string
	// set parses v into p; its error is the reason v is refused.
	set func(p *Policy, v string) error
	// limit is set for memory limits, which the shim's TOML config takes
	// only as strings.
	limit bool
}

func limitField(get func(p *Policy) *Limit) field {
	return field{allowed: limitSyntax, limit: true, set: func(p *Policy, v string) (err error) {
		*get(p), err = ParseLimit(v)
		return err
	}}
}

func oneOf[T ~string](dst func(p *Policy) *T, values ...T) field {
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = string(v)
	}
	return field{allowed: strings.Join(names, ", "), set: func(p *Policy, v string) error {
		for _, ok := range values {
			if v == string(ok) {
				*dst(p) = ok
				return nil
			}
		}
		for _, ok := range values {
			if strings.EqualFold(v, string(ok)) {
				return fmt.Errorf("values are lower case (%s)", ok)
			}
		}
		return errors.New("unknown value")
	}}
}

// fields maps each annotation key to what it accepts and its parser.
var fields = map[string]field{
	AnnotationToolHigh:     limitField(func(p *Policy) *Limit { return &p.ToolMemoryHigh }),
	AnnotationToolMax:      limitField(func(p *Policy) *Limit { return &p.ToolMemoryMax }),
	AnnotationAgentHigh:    limitField(func(p *Policy) *Limit { return &p.AgentMemoryHigh }),
	AnnotationAgentMax:     limitField(func(p *Policy) *Limit { return &p.AgentMemoryMax }),
	AnnotationAgentLow:     limitField(func(p *Policy) *Limit { return &p.AgentMemoryLow }),
	AnnotationToolPidsMax:  {allowed: toolPidsSyntax, set: parseToolPidsMax},
	AnnotationPriority:     oneOf(func(p *Policy) *Priority { return &p.Priority }, PriorityHigh, PriorityNormal, PriorityLow),
	AnnotationDetect:       oneOf(func(p *Policy) *Detect { return &p.Detect }, DetectForkExec, DetectExec, DetectOff),
	AnnotationSessions:     {allowed: sessionsSyntax, set: parseSessions},
	AnnotationStallTimeout: {allowed: stallTimeoutSyntax, set: parseStallTimeout},
	AnnotationAgent:        {allowed: agentSyntax, set: parseAgent},
}

var toolPidsSyntax = fmt.Sprintf(`a number of tasks of at least %d and at most %d (the kernel's PID_MAX_LIMIT), or "max"`, minToolPids, MaxToolPids)

// parseToolPidsMax sets p.ToolPidsMax from v; "max" is no bound.
func parseToolPidsMax(p *Policy, v string) error {
	if v == "max" {
		p.ToolPidsMax = 0
		return nil
	}
	// Digits only: no sign, no 0x, no 1e3.
	if !isDigits(v, len(v)) {
		return errors.New("not a whole number")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil || n > MaxToolPids:
		return fmt.Errorf("above %d, the most the kernel's pids.max can hold", MaxToolPids)
	case n < minToolPids:
		return fmt.Errorf("below %d, too few for a shell and what it runs", minToolPids)
	}
	p.ToolPidsMax = n
	return nil
}

const sessionsSyntax = `comma-separated program names (letters, digits, ".", "_", "+", "-") or absolute paths, or "none" (bash,/opt/bin/zsh)`

// parseSessions sets p.Sessions from v; "none" is no session program.
func parseSessions(p *Policy, v string) error {
	if v == "none" {
		p.Sessions = ""
		return nil
	}
	names := strings.Split(v, ",")
	for _, n := range names {
		if strings.HasPrefix(n, "/") {
			if len(n) > 4096 || path.Clean(n) != n || strings.ContainsAny(n, ", ") {
				return fmt.Errorf("%q is no clean absolute path", n)
			}
			continue
		}
		if n == "" || len(n) > 64 || strings.IndexFunc(n, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r))
		}) >= 0 {
			return fmt.Errorf("%q is no program name", n)
		}
	}
	p.Sessions = strings.Join(names, ",")
	return nil
}

const agentSyntax = `an absolute path in the container, of at most 4096 bytes, to the agent's program or main script (/usr/local/bin/claude)`

// parseAgent sets p.Agent from v.
func parseAgent(p *Policy, v string) error {
	switch {
	case !strings.HasPrefix(v, "/"):
		return errors.New("not an absolute path")
	case len(v) > 4096:
		return errors.New("longer than a path can be (4096 bytes)")
	case path.Clean(v) != v:
		return fmt.Errorf("not a clean path (%s)", path.Clean(v))
	}
	p.Agent = v
	return nil
}

var stallTimeoutSyntax = fmt.Sprintf("a Go duration of at least %v and at most %v (90s, 5m)", minStallTimeout, maxStallTimeout)

// parseStallTimeout sets p.StallTimeout from v.
func parseStallTimeout(p *Policy, v string) error {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return errors.New("not a Go duration with its unit, or too long for one")
	case d < minStallTimeout:
		return fmt.Errorf("below %v", minStallTimeout)
	case d > maxStallTimeout:
		return fmt.Errorf("above %v: a frozen call would starve that long", maxStallTimeout)
	}
	p.StallTimeout = d
	return nil
}

// AllowedValues says what key (with the prefix) accepts, for errors about a
// value that did not reach its parser; "" for an unknown key.
func AllowedValues(key string) string { return fields[key].allowed }

// IsLimitKey reports whether key (with the prefix) takes a memory limit.
func IsLimitKey(key string) bool { return fields[key].limit }

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// checkValue refuses what no key accepts, with a reason more telling than
// the key's syntax: invalid UTF-8, control characters (NUL, a newline left
// by a YAML block scalar) and white space around the value. These are
// refused rather than trimmed, so that a value means what it shows and the
// config and the annotations spell each value one way.
func checkValue(v string) error {
	switch {
	case !utf8.ValidString(v):
		return errors.New("not valid UTF-8")
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		r := v[strings.IndexFunc(v, unicode.IsControl):]
		c, _ := utf8.DecodeRuneInString(r)
		return fmt.Errorf("contains the control character %q", c)
	case strings.TrimSpace(v) != v:
		return errors.New("has white space around it")
	}
	return nil
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

// Apply returns base with the settings applied; source names where they come
// from in errors. Keys outside the prefix are ignored; an unknown key under
// it is an error, so that a typo does not silently fall back to a default.
func Apply(base Policy, source string, settings map[string]string) (Policy, error) {
	p := base
	for _, k := range ownKeys(settings) {
		v := settings[k]
		f, ok := fields[k]
		if !ok {
			return base, &InvalidError{Source: source, Key: k, Value: v, Allowed: "no such key; known keys are " + strings.Join(Keys(), ", ")}
		}
		err := checkValue(v)
		if err == nil {
			err = f.set(&p, v)
		}
		if err != nil {
			return base, &InvalidError{Source: source, Key: k, Value: v, Allowed: f.allowed, Reason: err.Error()}
		}
	}
	return p, nil
}

// ownKeys returns the keys under the prefix, sorted so that the first bad key
// reported is stable.
func ownKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Resolve is a container's policy: Default, then the shim config's Policy
// table (keys without the prefix), then the container's annotations where
// allowed lists them (nil allows every key). An annotation the config does
// not allow fails creation rather than being dropped: the pod's author learns
// that it has no effect.
func Resolve(config map[string]string, allowed []string, annotations map[string]string) (Policy, error) {
	withPrefix := make(map[string]string, len(config))
	for k, v := range config {
		withPrefix[Prefix+k] = v
	}
	base, err := Apply(Default(), SourceConfig, withPrefix)
	if err != nil {
		return Policy{}, err
	}
	if allowed != nil {
		for _, k := range ownKeys(annotations) {
			if _, known := fields[k]; known && !slices.Contains(allowed, k) {
				return Policy{}, &DeniedError{Key: k, Allowed: allowed}
			}
		}
	}
	p, err := Apply(base, SourceAnnotation, annotations)
	if err != nil {
		return p, err
	}
	// Without an allow-list a container's annotations decide only about
	// itself: every key bounds what is inside C, except a priority above
	// the config's, which would have its neighbours frozen first. Where
	// tenants set annotations (CRI pod annotations) that is the operator's
	// to grant, by listing the key.
	if allowed == nil && p.Priority.Rank() > base.Priority.Rank() {
		return Policy{}, &DeniedError{Key: AnnotationPriority, Value: string(p.Priority),
			Reason: "raises the container above its neighbours in the pool, which only the operator grants: list it in AllowedAnnotations"}
	}
	return p, nil
}

// CheckAllowed validates a config's list of honoured annotation keys.
func CheckAllowed(allowed []string) error {
	for _, k := range allowed {
		if _, ok := fields[k]; !ok {
			return fmt.Errorf("AllowedAnnotations: unknown annotation %q; known keys are %s: %w", k, strings.Join(Keys(), ", "), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
