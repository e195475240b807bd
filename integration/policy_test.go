//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

func annotations(kv ...string) []string {
	var out []string
	for _, a := range kv {
		out = append(out, "--annotation", "io.agentcgroup."+a)
	}
	return out
}

// endedRecord waits for the record of a call that has ended.
func endedRecord(t testing.TB, id, call string) *toolcall.Record {
	t.Helper()
	var rec *toolcall.Record
	eventually(t, "the record of "+call, func() bool {
		rec = find(ps(t, id), call)
		return rec != nil && rec.End != nil
	})
	return rec
}

func count(recs []toolcall.Record, pred func(r toolcall.Record) bool) int {
	n := 0
	for _, r := range recs {
		if pred(r) {
			n++
		}
	}
	return n
}

// TestToolOOM: tool calls that allocate past their memory.max die alone,
// whole; the agent in C/agent keeps running and starts the next call. An
// exec'd call's stderr says why; every record says oom-killed and every kill
// is published as an event. 50 calls on the first stack (half exec'd, half
// forked by the agent), 6 on the others.
func TestToolOOM(t *testing.T) {
	first := true
	forEachStack(t, func(t *testing.T, d *daemon) {
		n := 3
		if first {
			n, first = 25, false
		}
		rt := d.agentcgroup()
		id := newID("oom")
		ev := subscribeToolEvents(t, d)
		tasks := watchEvents(t, d)
		d.start(t, rt, id, annotations("tool.memory.max=64Mi"),
			"/bin/agentsim", "-delay", "200ms", "-repeat", strconv.Itoa(n), "exec /bin/agentsim -alloc 128")
		agent := d.pid(t, id)
		const told = "agentcgroup: tool call killed: out of memory at its own limit memory.max=64.0 MiB"
		for i := range n {
			r := d.ctr(t, "task", "exec", "--exec-id", fmt.Sprintf("big-%d", i), id, "/bin/agentsim", "-alloc", "128")
			if r.code != 137 || !strings.Contains(r.stderr, told) {
				t.Errorf("exec'd call %d: %v; want exit 137 and %q on stderr", i, r, told)
			}
			if p := d.pid(t, id); p != agent || d.status(t, id) != "RUNNING" {
				t.Fatalf("after call %d the agent is %s (pid %d, was %d)", i, d.status(t, id), p, agent)
			}
		}
		if r := d.ctr(t, "task", "exec", "--exec-id", "next", id, "/bin/sh", "-c", "echo alive"); r.code != 0 || strings.TrimSpace(r.stdout) != "alive" {
			t.Errorf("the agent's next call: %v", r)
		}
		var recs []toolcall.Record
		eventually(t, fmt.Sprintf("%d oom-killed calls", 2*n), func() bool {
			recs = ps(t, id)
			return count(recs, func(r toolcall.Record) bool { return r.State == toolcall.OOMKilled }) == 2*n
		})
		for _, r := range recs {
			if r.State == toolcall.OOMKilled && (!strings.Contains(r.Reason, "out of memory") || r.MemoryPeakBytes < 60<<20 || r.MemoryPeakBytes > 65<<20) {
				t.Errorf("record %s: reason %q, peak %d", r.ID, r.Reason, r.MemoryPeakBytes)
			}
		}
		if forks := count(recs, func(r toolcall.Record) bool { return r.Kind == "fork" && r.State == toolcall.OOMKilled }); forks != n {
			t.Errorf("oom-killed fork calls = %d, want %d", forks, n)
		}
		if p := d.pid(t, id); p != agent {
			t.Errorf("agent pid %d, was %d", p, agent)
		}
		// A tool call's own OOM is not the container's: no /tasks/oom, so
		// CRI and Docker do not report the agent container OOMKilled.
		if tasks.saw(t, "/tasks/oom", id) {
			t.Errorf("a tool call killed at its own memory.max raised /tasks/oom for container %s", id)
		}
		for _, call := range []string{"big-0", "fork-1"} {
			m := ev.saw("/agentcgroup/tool-call/killed", id, call)
			if m == nil || !strings.Contains(fmt.Sprint(m["reason"]), "out of memory") || m["state"] != string(toolcall.OOMKilled) {
				t.Errorf("event for %s: %v; want /agentcgroup/tool-call/killed, oom-killed, out of memory", call, m)
			}
		}
		d.remove(id)
		assertGone(t, id)
	})
}

// TestThrottle: a call a little over its memory.high is throttled by the
// kernel, not killed, and finishes; its record counts the throttling.
func TestThrottle(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("high")
		d.start(t, d.agentcgroup(), id, annotations("tool.memory.high=40Mi"), "/bin/agentsim")
		r := d.ctr(t, "task", "exec", "--exec-id", "over-high", id, "/bin/agentsim", "-alloc", "44")
		if r.code != 0 {
			t.Fatalf("throttled call: %v", r)
		}
		rec := endedRecord(t, id, "over-high")
		if rec.State != toolcall.Exited || rec.MemoryHighEvents == 0 || rec.ThrottledSeconds <= 0 || rec.OOMKills != 0 {
			t.Errorf("record %+v: want exited, high events, throttled time, no OOM kill", rec)
		}
		d.remove(id)
		assertGone(t, id)
	})
}

// TestStallTimeout: a call throttled so hard that it cannot progress is
// killed after the stall timeout, and the agent is told why.
func TestStallTimeout(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("stall")
		d.start(t, d.agentcgroup(), id, annotations("tool.memory.high=24Mi", "tool.stall-timeout=2s"), "/bin/agentsim")
		start := time.Now()
		r := d.ctr(t, "task", "exec", "--exec-id", "stuck", id, "/bin/agentsim", "-alloc", "256")
		took := time.Since(start)
		if r.code != 137 || !strings.Contains(r.stderr, "agentcgroup: tool call killed: no progress for 2s while throttled at its memory.high") {
			t.Errorf("stalled call: %v", r)
		}
		if took < 2*time.Second {
			t.Errorf("killed after %v, before the stall timeout", took)
		}
		rec := endedRecord(t, id, "stuck")
		if rec.State != toolcall.Killed || !strings.Contains(rec.Reason, "no progress") {
			t.Errorf("record %+v: want killed for no progress", rec)
		}
		if d.status(t, id) != "RUNNING" {
			t.Error("the agent did not survive")
		}
		d.remove(id)
		assertGone(t, id)
	})
}

// TestForkBomb: a fork bomb in a tool call is held at its pids.max; the
// agent survives and runs its next call; delete takes everything.
func TestForkBomb(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("bomb")
		d.start(t, d.agentcgroup(), id, annotations("tool.pids.max=64"), "/bin/agentsim")
		go d.run(nil, "task", "exec", "--exec-id", "bomb", id, "/bin/sh", "-c", "b() { b | b & }; b; sleep 60")
		dir := filepath.Join(containerCgroup(id), "tools", "bomb")
		eventually(t, "the bomb at its pids.max", func() bool {
			ev, err := cgroupfs.ReadKV(dir, "pids.events")
			return err == nil && ev["max"] > 0
		})
		if cur, err := cgroupfs.ReadUint(dir, "pids.current"); err != nil || cur > 64 {
			t.Errorf("pids.current = %d, %v; want at most 64", cur, err)
		}
		if r := d.ctr(t, "task", "exec", "--exec-id", "next", id, "/bin/sh", "-c", "echo alive"); r.code != 0 || strings.TrimSpace(r.stdout) != "alive" {
			t.Errorf("the agent's next call: %v", r)
		}
		d.remove(id)
		assertGone(t, id)
	})
}

// TestPoolFreeze: two containers of one pool, priority high and low, whose
// calls together overrun the pool's memory. The low one's call is frozen and
// the high one's finishes; then the low one is thawed and finishes.
func TestPoolFreeze(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		ev := subscribeToolEvents(t, d)
		_, hi, lo := newPool(t, d)
		rh, rl := contend(t, d, hi, lo, "1")
		if rh.code != 0 || rl.code != 0 {
			t.Errorf("calls: high %v, low %v", rh, rl)
		}
		var h, l *toolcall.Record
		eventually(t, "both records", func() bool {
			h, l = find(ps(t, hi), "hold-1"), find(ps(t, lo), "ramp-1")
			return h != nil && l != nil && h.End != nil && l.End != nil
		})
		if h.Freezes != 0 || h.State != toolcall.Exited {
			t.Errorf("high-priority call: %+v; want never frozen, exited", h)
		}
		if l.Freezes == 0 || l.FrozenSeconds <= 0 || l.State != toolcall.Exited {
			t.Errorf("low-priority call: %+v; want frozen, thawed, exited", l)
		}
		if ev.saw("/agentcgroup/tool-call/frozen", lo, "ramp-1") == nil || ev.saw("/agentcgroup/tool-call/thawed", lo, "ramp-1") == nil {
			t.Error("no frozen and thawed events for the low-priority call")
		}
		t.Logf("low call frozen %d times for %.1fs, freeze took %d us", l.Freezes, l.FrozenSeconds, l.FreezeLatencyUs)
	})
}

// poolBudget is the pool's memory.high in the pool scenario: the two calls
// of contend need 270 MiB together.
const poolBudget = 200 << 20

// newPool makes a pool cgroup whose memory.high is poolBudget, with an
// agent container of priority high and one of priority low in it.
func newPool(tb testing.TB, d *daemon) (pool, hi, lo string) {
	pool = "/" + newID("pool")
	dir := cgroupfs.Path(pool)
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.Remove(dir) })
	if err := cgroupfs.WriteString(dir, "memory.high", strconv.Itoa(poolBudget)); err != nil {
		tb.Fatal(err)
	}
	hi, lo = newID("hi"), newID("lo")
	for _, c := range []struct{ id, prio string }{{hi, "normal"}, {lo, "low"}} {
		extra := append(annotations("priority="+c.prio), "--cgroup", pool+"/"+c.id)
		d.start(tb, d.agentcgroup(), c.id, extra, "/bin/agentsim")
	}
	tb.Cleanup(func() { d.remove(hi); d.remove(lo) })
	return pool, hi, lo
}

// contend runs one round of the pool scenario: the high container's call
// holds 120 MiB for 5 s; a second later the low one's ramps to 150 MiB.
func contend(tb testing.TB, d *daemon, hi, lo, round string) (rh, rl result) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		rh, _ = d.run(nil, "task", "exec", "--exec-id", "hold-"+round, hi, "/bin/agentsim", "-alloc", "120", "-hold", "5s")
	}()
	go func() {
		defer wg.Done()
		time.Sleep(time.Second)
		rl, _ = d.run(nil, "task", "exec", "--exec-id", "ramp-"+round, lo, "/bin/agentsim", "-alloc", "150", "-ramp", "3s", "-hold", "500ms")
	}()
	wg.Wait()
	return rh, rl
}

// toolEvents subscribes to containerd's /agentcgroup/ events and decodes them
// as any client would (ctr 2.x does not link google.protobuf.Struct).
type toolEvents struct {
	ch   chan map[string]any
	seen []map[string]any
}

func subscribeToolEvents(t *testing.T, d *daemon) *toolEvents {
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	sub, err := eventsapi.NewEventsClient(conn).Subscribe(ctx, &eventsapi.SubscribeRequest{Filters: []string{`topic~="^/agentcgroup/"`}})
	if err != nil {
		t.Fatal(err)
	}
	w := &toolEvents{ch: make(chan map[string]any, 1024)}
	go func() {
		defer close(w.ch)
		for {
			env, err := sub.Recv()
			if err != nil {
				return
			}
			var s structpb.Struct
			if err := env.Event.UnmarshalTo(&s); err != nil {
				continue
			}
			m := s.AsMap()
			m["topic"] = env.Topic
			w.ch <- m
		}
	}()
	time.Sleep(200 * time.Millisecond) // subscribed before the test acts
	return w
}

// saw waits up to 10 s for an event of topic about the container's call.
func (w *toolEvents) saw(topic, id, call string) map[string]any {
	match := func(m map[string]any) bool {
		return m["topic"] == topic && m["container_id"] == id && m["call_id"] == call
	}
	for _, m := range w.seen {
		if match(m) {
			return m
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-w.ch:
			if !ok {
				return nil
			}
			w.seen = append(w.seen, m)
			if match(m) {
				return m
			}
		case <-deadline:
			return nil
		}
	}
}

// TestResize: a change of C's memory.max (ctr task update, CRI
// UpdateContainerResources) resolves the percentage limits again: a running
// call, a new exec and the spare cgroups of forked calls get 90% of the new
// limit; a byte limit given by annotation stays.
func TestResize(t *testing.T) {
	forEachStack(t, func(t *testing.T, d *daemon) {
		id := newID("resize")
		d.start(t, d.agentcgroup(), id, append([]string{"--memory-limit", "536870912"}, annotations("agent.memory.max=400Mi")...), agentInit...)
		d.mustCtr(t, "task", "exec", "-d", "--exec-id", "long", id, "/bin/sleep", "60")
		long := filepath.Join(containerCgroup(id), "tools", "long")
		eventually(t, "the long call's cgroup", func() bool { _, err := os.Stat(long); return err == nil })
		// The kernel keeps limits in pages.
		pages := func(b int64) string { return strconv.FormatInt(b/4096*4096, 10) }
		if got := readTrim(t, filepath.Join(long, "memory.max")); got != pages(483183820) {
			t.Fatalf("memory.max of a call before resize = %s, want 90%% of 512 MiB", got)
		}
		d.updateMemory(t, id, 268435456)
		want := pages(241591910) // 90% of 256 MiB
		if got := readTrim(t, filepath.Join(long, "memory.max")); got != want {
			t.Errorf("memory.max of the running call after resize = %s, want %s", got, want)
		}
		if got := readTrim(t, filepath.Join(long, "memory.high")); got != "201326592" {
			t.Errorf("memory.high of the running call after resize = %s, want 75%% of 256 MiB", got)
		}
		d.mustCtr(t, "task", "exec", "-d", "--exec-id", "new", id, "/bin/sleep", "60")
		fresh := filepath.Join(containerCgroup(id), "tools", "new")
		eventually(t, "the new call's cgroup", func() bool { _, err := os.Stat(fresh); return err == nil })
		if got := readTrim(t, filepath.Join(fresh, "memory.max")); got != want {
			t.Errorf("a new exec's memory.max = %s, want %s", got, want)
		}
		spares, _ := filepath.Glob(filepath.Join(containerCgroup(id), "tools", "fork-*"))
		for _, s := range spares {
			if got := readTrim(t, filepath.Join(s, "memory.max")); got != want {
				t.Errorf("spare %s memory.max = %s, want %s", filepath.Base(s), got, want)
			}
		}
		if got := readTrim(t, filepath.Join(containerCgroup(id), "agent", "memory.max")); got != "419430400" {
			t.Errorf("agent memory.max = %s, want the annotation's 400Mi", got)
		}
	})
}

// TestFreezeAtStart: where a forked call would start into an OOM kill (its
// container near memory.max, another call holding the memory) and the
// host has swap, it is frozen as it starts and runs once the other has
// ended: both complete, where starting it at once would have OOM-killed one
// of them; the agent survives and saw no call stop. Without swap (first,
// the control, on one stack) it is not frozen: the kernel OOM-kills one of
// the two, as it would under the runc shim, and the agent waits for nothing.
func TestFreezeAtStart(t *testing.T) {
	if hostSwap(t) == "" {
		t.Run("no swap", func(t *testing.T) {
			_, first, second := freezeAtStart(t, getDaemon(t, stacks()[0]))
			if second.Freezes != 0 || first.Freezes != 0 {
				t.Errorf("without swap a call was frozen: %+v, %+v", first, second)
			}
			if first.State != toolcall.OOMKilled && second.State != toolcall.OOMKilled {
				t.Errorf("without swap no call was OOM-killed: %s, %s; want the kernel to kill one", first.State, second.State)
			}
		})
		zramSwap(t, 512<<20)
	}
	forEachStack(t, func(t *testing.T, d *daemon) {
		ev := subscribeToolEvents(t, d)
		id, first, second := freezeAtStart(t, d)
		for _, r := range []toolcall.Record{first, second} {
			if r.State != toolcall.Exited || r.ExitCode == nil || *r.ExitCode != 0 {
				t.Errorf("call %s %q: %s (%s); want both completed", r.ID, r.Command, r.State, r.Reason)
			}
		}
		if first.Freezes != 0 {
			t.Errorf("the running call was frozen: %+v", first)
		}
		if second.Freezes == 0 || second.FrozenSeconds < 1 {
			t.Errorf("the second call: %d freezes, %.1fs frozen; want it frozen until the first ended", second.Freezes, second.FrozenSeconds)
		}
		if m := ev.saw("/agentcgroup/tool-call/frozen", id, second.ID); m == nil || !strings.HasSuffix(fmt.Sprint(m["reason"]), "before it started") {
			t.Errorf("frozen event of the second call: %v; want its reason to say before it started", m)
		}
		if ev.saw("/agentcgroup/tool-call/thawed", id, second.ID) == nil {
			t.Error("no thawed event for the second call")
		}
	})
}

// freezeAtStart runs the scenario of TestFreezeAtStart: an agent whose
// first call leaves a job holding 232 MiB of its container's 256 MiB for
// 8 s, and whose second needs 48 MiB more. It returns the container's ID and
// the two calls' records once both ended, after checking that the agent
// survived.
func freezeAtStart(t *testing.T, d *daemon) (id string, first, second toolcall.Record) {
	id = newID("admit")
	log := "/tmp/" + id + "-log"
	extra := append([]string{"--memory-limit", strconv.Itoa(256 << 20)}, annotations("tool.memory.high=max", "tool.memory.max=100%")...)
	d.start(t, d.agentcgroup(), id, extra, "/bin/agentsim", "-delay", "3s", "-log", log,
		"/bin/agentsim -alloc 232 -hold 8s &",
		"exec /bin/agentsim -alloc 48 -hold 200ms")
	var recs []toolcall.Record
	eventually(t, "two ended calls", func() bool {
		recs = ps(t, id)
		return len(recs) == 2 && ended(recs) == 2
	})
	sort.Slice(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })
	agentLog := readTrim(t, filepath.Join(rootfs, log))
	os.Remove(filepath.Join(rootfs, log))
	if !strings.Contains(agentLog, "all calls done") || strings.Contains(agentLog, "stopped") {
		t.Errorf("agent's log: %q, want all calls done and none stopped", agentLog)
	}
	if d.status(t, id) != "RUNNING" {
		t.Error("the agent did not survive")
	}
	d.remove(id)
	assertGone(t, id)
	return id, recs[0], recs[1]
}
