package hooks

import (
	"time"

	"github.com/containerd/containerd/v2/core/events"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/governor"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// Env is what a container's hooks use of the shim. A nil field means the
// shim runs without that part.
type Env struct {
	// Detector finds the tool calls the agent forks (nil: execs only).
	Detector Detector
	// Publisher sends tool-call events to containerd (nil: none).
	Publisher events.Publisher
	// Hold answers the container's held execve calls (nil: no hold; a
	// forked call is placed after its program has started).
	Hold Hold
	// Governor is the shim's graduated response (nil: none).
	Governor Governor
	// StateRoot holds every container's state folder; the pool's members
	// are read there.
	StateRoot string
	// CgroupMount is the cgroup2 mount ("": /sys/fs/cgroup).
	CgroupMount string
}

// Detector is what a container uses of the host's tool-call detector
// (*bpf.Detector): its agent cgroup watched, its tool calls' cgroups known,
// and the processes it is told about.
type Detector interface {
	// Watch has the processes that C/agent (agent, a cgroup ID) forks
	// reported on events.
	Watch(agent uint64, events chan<- bpf.Event) error
	Unwatch(agent uint64)
	// Flush has a Flushed event sent after every event queued for agent;
	// it returns the flush's number.
	Flush(agent uint64) (uint64, error)
	// AddCall and RemoveCall register a tool call's cgroup, whose forks
	// are then watched for escapes.
	AddCall(call, agent uint64) error
	RemoveCall(call uint64)
	// AddSession has a session's cgroup watched as C/agent is: each
	// command the session runs is a call.
	AddSession(session, agent uint64) error
	// Pending reports whether pid is a fresh child of agent, and when and
	// by whom it was forked.
	Pending(pid uint32, agent uint64) (bpf.Fork, bool)
	// Claim makes pid a tool call's leader, placed while held; Forget
	// drops what the detector knows of pid; Rearm makes a session's pid
	// pending again, so that its next program is seen.
	Claim(pid uint32, agent uint64) error
	// Member reports whether pid is a call's process for the kernel: a
	// leader, one it forked before it was moved, an escapee or its child.
	Member(pid uint32, agent uint64) (bpf.Member, bool)
	Forget(pid uint32, agent uint64)
	Rearm(pid uint32, agent uint64) error
}

// Governor is the shim's graduated response to memory pressure
// (*governor.Watcher).
type Governor interface {
	Add(id string, sc governor.Scope, p policy.Policy, pool governor.Pool, cb governor.Callback) error
	Stop(id string)
	Watch(id string, cl *toolcall.Call)
	Unwatch(id string, cl *toolcall.Call)
	// FreezeAtStart holds back a call that would start into an OOM kill.
	FreezeAtStart(id string, cl *toolcall.Call, now time.Time) bool
}

// Hold answers a container's held execve calls (*exechold.Listener).
type Hold interface {
	Handle(func(*exechold.Request) exechold.Payer)
	Close() error
}

var (
	_ Detector = (*bpf.Detector)(nil)
	_ Governor = (*governor.Watcher)(nil)
	_ Hold     = (*exechold.Listener)(nil)
)
