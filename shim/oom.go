package shim

import (
	"context"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/agentcgroup/agentcgroup/hooks"
)

// oomFilter is the publisher of the runc shim's task service. The runc
// shim's OOM watcher reads C's memory.events, which also counts the tool
// calls killed at their own memory.max; such a kill is not a container OOM
// (hooks.Container.ContainerOOM), so its /tasks/oom is held back and CRI and
// Docker do not report the agent container OOMKilled.
type oomFilter struct {
	shim.Publisher
	container func(id string) *hooks.Container // set once the service exists
}

func (f *oomFilter) Publish(ctx context.Context, topic string, event events.Event) error {
	if e, ok := event.(*eventstypes.TaskOOM); ok && topic == runtime.TaskOOMEventTopic && f.container != nil {
		if c := f.container(e.ContainerID); c != nil && !c.ContainerOOM(ctx) {
			return nil
		}
	}
	return f.Publisher.Publish(ctx, topic, event)
}
