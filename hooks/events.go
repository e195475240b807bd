package hooks

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/governor"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// Topics of the events published for each freeze, thaw and kill of a tool
// call. The event is a google.protobuf.Struct, which every containerd client
// can decode (`ctr events` prints it).
const (
	topicFrozen = "/agentcgroup/tool-call/frozen"
	topicThawed = "/agentcgroup/tool-call/thawed"
	topicKilled = "/agentcgroup/tool-call/killed"
)

// eventQueueSize bounds the events waiting for containerd; the queue keeps
// a slow containerd from holding up placement or the governor.
const eventQueueSize = 256

// eventQueue sends tool-call events to containerd in order. A nil queue
// drops every event.
type eventQueue struct {
	mu     sync.Mutex
	ch     chan event
	closed bool
}

type event struct {
	topic string
	ev    *structpb.Struct
}

func newEventQueue(ctx context.Context, pub events.Publisher) *eventQueue {
	q := &eventQueue{ch: make(chan event, eventQueueSize)}
	go func() {
		for e := range q.ch {
			if err := pub.Publish(ctx, e.topic, e.ev); err != nil {
				log.G(ctx).WithError(err).WithField("topic", e.topic).Warn("publish tool-call event")
			}
		}
	}()
	return q
}

// publish queues an event, or drops it with a log line when containerd is
// not taking events.
func (q *eventQueue) publish(ctx context.Context, topic string, ev *structpb.Struct) {
	if q == nil || ev == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	select {
	case q.ch <- event{topic, ev}:
	default:
		log.G(ctx).WithField("topic", topic).Warn("tool-call event dropped: containerd is not taking events")
	}
}

// close ends the queue; events queued before still go.
func (q *eventQueue) close() {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}

// event builds the event of a call.
func (c *Container) event(rec toolcall.Record, reason string) *structpb.Struct {
	cmd := make([]any, len(rec.Command))
	for i, a := range rec.Command {
		cmd[i] = strings.ToValidUTF8(a, "\uFFFD") // protobuf strings are UTF-8; argv is bytes
	}
	peak := rec.MemoryPeakBytes
	if peak == 0 {
		peak, _ = cgroupfs.ReadUint(filepath.Join(c.tree.Mount, rec.Cgroup), "memory.peak")
	}
	fields := map[string]any{
		"container_id":      c.st.ID,
		"call_id":           rec.ID,
		"kind":              rec.Kind,
		"command":           cmd,
		"state":             string(rec.State),
		"reason":            reason,
		"priority":          string(c.policy.Priority),
		"memory_peak_bytes": float64(peak),
		"frozen_seconds":    rec.FrozenSeconds,
		"throttled_seconds": rec.ThrottledSeconds,
	}
	// What the agent is waiting on, and since when.
	if rec.FrozenSince != nil {
		fields["frozen_since"] = rec.FrozenSince.Format(time.RFC3339Nano)
	}
	if rec.ThrottledSince != nil {
		fields["throttled_since"] = rec.ThrottledSince.Format(time.RFC3339Nano)
	}
	ev, err := structpb.NewStruct(fields)
	if err != nil {
		log.G(c.ctx).WithError(err).WithField("call", rec.ID).Warn("build tool-call event")
	}
	return ev
}

// governed is the governor's callback: it records and publishes what the
// governor did to one of the container's calls.
func (c *Container) governed(cl *toolcall.Call, a governor.Action, reason string) {
	rec := cl.Record()
	fields := log.Fields{"call": rec.ID, "reason": reason}
	switch a {
	case governor.Froze:
		log.G(c.ctx).WithFields(fields).Info("froze tool call")
		c.events.publish(c.ctx, topicFrozen, c.event(rec, reason))
	case governor.Thawed:
		log.G(c.ctx).WithFields(fields).Info("thawed tool call")
		c.events.publish(c.ctx, topicThawed, c.event(rec, reason))
	case governor.Killing:
		log.G(c.ctx).WithFields(fields).Warn("killing stalled tool call")
	case governor.OOMKilled:
		c.mu.Lock()
		hc := c.live[rec.ID]
		c.mu.Unlock()
		if hc != nil {
			c.tellKilled(c.ctx, hc)
		}
	}
	c.calls.save()
}
