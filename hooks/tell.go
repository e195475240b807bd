package hooks

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/policy"
)

// Topics of the events published for each freeze, thaw and kill of a tool
// call. The event is a google.protobuf.Struct, which every containerd client
// can decode (`ctr events` prints it).
const (
	topicFrozen = "/agentcgroup/tool-call/frozen"
	topicThawed = "/agentcgroup/tool-call/thawed"
	topicKilled = "/agentcgroup/tool-call/killed"
)

// TellPrefix starts the line an exec'd tool call that was killed gets on its
// stderr.
const TellPrefix = "agentcgroup: "

// eventQueue bounds the events waiting for containerd; the queue keeps a
// slow containerd from holding the container's lock (and with it placement).
const eventQueue = 256

type event struct {
	topic string
	ev    *structpb.Struct
}

// publish queues an event about a call; callers hold c.mu.
func (c *Container) publish(ctx context.Context, topic string, cl *call, reason string) {
	if c.events == nil {
		return
	}
	cmd := make([]any, len(cl.rec.Command))
	for i, a := range cl.rec.Command {
		cmd[i] = a
	}
	ev, err := structpb.NewStruct(map[string]any{
		"container_id":      c.st.ID,
		"call_id":           cl.rec.ID,
		"kind":              cl.rec.Kind,
		"command":           cmd,
		"state":             cl.rec.State,
		"reason":            reason,
		"priority":          string(c.policy.Priority),
		"memory_peak_bytes": float64(peak(cl)),
	})
	if err != nil {
		log.G(ctx).WithError(err).WithField("topic", topic).Warn("build tool-call event")
		return
	}
	select {
	case c.events <- event{topic, ev}:
	default:
		log.G(ctx).WithField("topic", topic).Warn("tool-call event dropped: containerd is not taking events")
	}
}

// sendEvents publishes the queued events in order until the queue is closed.
func (c *Container) sendEvents(ctx context.Context, pub events.Publisher) {
	for e := range c.events {
		if err := pub.Publish(ctx, e.topic, e.ev); err != nil {
			log.G(ctx).WithError(err).WithField("topic", e.topic).Warn("publish tool-call event")
		}
	}
}

// closeEvents ends the queue once no call can publish any more; callers
// hold c.mu.
func (c *Container) closeEvents() {
	if c.events != nil {
		close(c.events)
		c.events = nil
	}
}

func peak(cl *call) uint64 {
	if cl.rec.MemoryPeakBytes > 0 {
		return cl.rec.MemoryPeakBytes
	}
	v, _ := cgroupfs.ReadUint(cl.dir, "memory.peak")
	return v
}

// killReason says why an ended call died, for its record, its event and the
// agent; "" for a call agentcgroup and the kernel's OOM killer left alone.
// oomLocal says the call met its own memory.max rather than a limit above.
func (c *Container) killReason(cl *call, oomLocal bool) string {
	r := cl.rec
	switch {
	case r.OOMKills > 0:
		limit := "a memory limit above the container (host or pool)"
		if oomLocal {
			limit = "its own limit memory.max=" + size(c.policy.ToolMemoryMax.Resolve(c.containerMax))
		} else if c.containerMax != policy.Unlimited {
			limit = "the container's limit memory.max=" + size(c.containerMax)
		}
		return fmt.Sprintf("tool call killed: out of memory at %s (peak %s); the agent was not touched", limit, size(int64(r.MemoryPeakBytes)))
	case cl.killReason != "":
		return fmt.Sprintf("tool call killed: %s (peak %s); the agent was not touched", cl.killReason, size(int64(r.MemoryPeakBytes)))
	}
	return ""
}

// tell writes the reason on an exec'd call's stderr and closes it; the
// client sees the stream end only after that.
func tell(ctx context.Context, w io.WriteCloser, reason string) {
	if reason != "" {
		if _, err := io.WriteString(w, TellPrefix+reason+"\n"); err != nil {
			log.G(ctx).WithError(err).Debug("tell the agent")
		}
	}
	w.Close()
}

func size(b int64) string {
	if b == policy.Unlimited {
		return "max"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
