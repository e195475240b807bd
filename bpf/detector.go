//go:build linux

// Package bpf is the eBPF tool-call detector: programs on sched_process_fork,
// sched_process_exec and sched_process_exit (detector.c) that find, in the
// kernel, the tool calls of watched agent cgroups, and the Go type that loads
// them, owns their links and reads their events.
package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Kind says what an Event reports.
type Kind uint32

const (
	// Tool: a process forked by the agent executed a new program: a new
	// tool call, whose leader is Pid.
	Tool Kind = 1
	// Child: a process of a tool call forked Pid while still in the agent
	// cgroup; it belongs to the call of Leader, or, for an escapee's child
	// (Leader 0), to the call whose cgroup is Call.
	Child Kind = 2
	// Exit: the leader of a tool call exited with ExitStatus.
	Exit Kind = 3
	// Escape: Leader, a process in the tool call's cgroup Call, forked Pid
	// into another cgroup (clone3 CLONE_INTO_CGROUP), out of the call's
	// limits. One cloned into the agent cgroup is the call's process for
	// the detector (Member), and what it forks there is reported as Child.
	Escape Kind = 4
	// Full: the container's share of the detector's maps is full: Pid, a
	// fresh child of the agent or of a call not moved yet (Leader), is not
	// tracked. With the exec hold it is placed anyway when it executes a
	// program (the hold fails closed).
	Full Kind = 5
	// Flushed: every event the kernel wrote for the container before the
	// Flush calls up to the Flushes-th was sent before this one. Not from
	// the kernel.
	Flushed Kind = 0x100
	// Lost: the container's ring buffer was full, and Dropped events (in
	// all) were lost: what they reported is only in the maps now (Member,
	// Pending). Not from the kernel; sent within dropCheck of the loss.
	Lost Kind = 0x101
)

// Event is one detector event.
type Event struct {
	Kind        Kind
	AgentCgroup uint64
	Pid         uint32
	Leader      uint32
	// ExitStatus is the wait(2) status of an Exit.
	ExitStatus int32
	// Filename is the executed program of a Tool, Args its argv (cut at 255
	// bytes, as the kernel saw it at exec; ArgsCut says it was).
	Filename string
	Args     []string
	ArgsCut  bool
	// Forked is when the leader of a Tool was forked, on CLOCK_MONOTONIC.
	Forked time.Duration
	// Unplaced says that a Tool's program started where the agent's
	// processes are (the agent cgroup, a session's): it was not placed
	// while its execve was held.
	Unplaced bool
	// Parent is the process that forked a Tool's leader, whoever adopted
	// it since; Session says the leader was a session user space kept.
	Parent  uint32
	Session bool
	// Call is the cgroup ID of the call of a Child or an Escape, where the
	// kernel knows it (an escapee and its children).
	Call uint64
	// Start is when Pid started (of a Tool, Child or Escape), in
	// nanoseconds of boot time: with Pid, it names one process, whatever
	// reuses the pid later.
	Start uint64
	// Flushes numbers the Flush calls a Flushed covers.
	Flushes uint64
	// Dropped counts the events a Lost reports lost since the watch began.
	Dropped uint64
}

// ErrNotWatched: the agent cgroup is not watched (any more).
var ErrNotWatched = errors.New("not watched")

// SinceFork is how long ago, on CLOCK_MONOTONIC, a Tool's leader was forked.
func (e Event) SinceFork() time.Duration { return Since(e.Forked) }

// Since is how long ago t was, on CLOCK_MONOTONIC (the clock of the
// detector's times).
func Since(t time.Duration) time.Duration {
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		return 0
	}
	return time.Duration(now.Nano()) - t
}

// ExitCode is the shell's view of a wait status: the exit code, or 128+signal.
func (e Event) ExitCode() uint32 {
	ws := unix.WaitStatus(e.ExitStatus)
	if ws.Signaled() {
		return 128 + uint32(ws.Signal())
	}
	return uint32(ws.ExitStatus())
}

// Detector is a process's handle on the tool-call detector: the programs'
// maps and, per watched agent cgroup, a ring buffer and its reader. A
// private detector (Load) also owns the programs' links; the host's shared
// one (Open) leaves them pinned in bpffs for every shim. One Detector serves
// every container of a shim process.
type Detector struct {
	maps  detectorMaps
	links []link.Link
	// ringSpec, pendingSpec and toolsSpec make each container's ring
	// buffer and its share of the pending and tools maps.
	ringSpec, pendingSpec, toolsSpec *ebpf.MapSpec
	// shared is the pinned set's lifecycle; nil for a private detector.
	shared *share

	mu      sync.Mutex
	watches map[uint64]*watch
	closed  bool
	// removing counts the unwatched agent cgroups still leaving the
	// programs' maps.
	removing  sync.WaitGroup
	done      chan struct{}
	closeDone sync.Once
}

// watch is one watched agent cgroup: its ring buffer and the goroutine
// that reads it into the watcher's channel.
type watch struct {
	agent uint64
	ch    chan<- Event
	// pending and tools are the container's share of the programs' maps:
	// its fresh children not exec'd yet, and its calls' processes; mapsMu
	// keeps them open while a caller uses them (withWatch).
	pending, tools *ebpf.Map
	ring           *ebpf.Map
	mapsMu         sync.RWMutex
	mapsClosed     bool
	reader         *ringbuf.Reader
	stop           chan struct{}
	stopped        chan struct{}
	// flushes counts the Flush calls.
	flushes atomic.Uint64
	// dropped is the last count of lost events logged.
	dropped uint64
}

// Quota is how many fresh children not exec'd yet, and how many processes
// of calls not moved yet, one container may have in the detector at once:
// a container past it loses only its own detection.
var Quota uint32 = 4096

// MaxCalls is how many tool-call cgroups one container may have watched at
// once (running calls, spares, execs not started): the calls map is
// shared by the host's containers and sized for 256 of them at this bound.
const MaxCalls = 1024

// dropCheck is how often the kernel's counts of events lost to full ring
// buffers are read, and a rise logged and reported (Lost).
const dropCheck = time.Second

// Load loads and attaches a detector of this process's own, detached when it
// closes. It fails where the kernel lacks BTF, tp_btf, ring buffers or maps
// of maps, or the caller lacks the privilege.
func Load() (_ *Detector, retErr error) {
	spec, err := loadDetector()
	if err != nil {
		return nil, fmt.Errorf("load tool-call detector: %w", err)
	}
	var objs detectorObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load tool-call detector: %w", err)
	}
	d := newDetector(objs.detectorMaps, spec)
	defer func() {
		if retErr != nil {
			d.close()
		}
	}()
	// The links hold the programs; their own handles are not needed.
	defer objs.detectorPrograms.Close()
	if d.links, err = attach(&objs.detectorPrograms); err != nil {
		return nil, err
	}
	go d.reportDrops()
	return d, nil
}

func newDetector(maps detectorMaps, spec *ebpf.CollectionSpec) *Detector {
	share := func(outer string) *ebpf.MapSpec {
		s := spec.Maps[outer].InnerMap.Copy()
		s.MaxEntries = Quota
		return s
	}
	return &Detector{maps: maps, ringSpec: spec.Maps[detectorMapRings].InnerMap,
		pendingSpec: share(detectorMapPendingOf), toolsSpec: share(detectorMapToolsOf),
		watches: make(map[uint64]*watch), done: make(chan struct{})}
}

// attach links the programs to their tracepoints.
func attach(progs *detectorPrograms) ([]link.Link, error) {
	var links []link.Link
	for _, p := range []*ebpf.Program{progs.OnFork, progs.OnExec, progs.OnExit} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			return nil, fmt.Errorf("attach %s: %w", p, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// Watch starts detecting the tool calls forked from the agent cgroup with
// the given ID; their events go to ch until Unwatch. The container's events
// wait in its own ring buffer while ch is full; once that is full too, the
// kernel drops them (counted, and logged) and no other container is
// affected.
func (d *Detector) Watch(agentCgroup uint64, ch chan<- Event) (retErr error) {
	w, err := d.newWatch()
	if err != nil {
		return fmt.Errorf("watch cgroup %d: %w", agentCgroup, err)
	}
	d.mu.Lock()
	if _, dup := d.watches[agentCgroup]; dup || d.closed {
		d.mu.Unlock()
		w.closeMaps()
		if dup {
			return fmt.Errorf("watch cgroup %d: already watched", agentCgroup)
		}
		return fmt.Errorf("watch cgroup %d: the detector is closed", agentCgroup)
	}
	w.agent, w.ch = agentCgroup, ch
	d.watches[agentCgroup] = w
	d.mu.Unlock()
	go w.run()
	defer func() {
		if retErr != nil {
			d.Unwatch(agentCgroup)
		}
	}()
	if err := d.maps.Dropped.Put(agentCgroup, uint64(0)); err != nil {
		return fmt.Errorf("watch cgroup %d: drop counter: %w", agentCgroup, err)
	}
	// Each update of a map of maps waits for an RCU grace period: the
	// three run side by side and share one. The programs act on the
	// container only once all three are in, and none of its processes
	// forks or executes a program before Watch returns (the exec hold waits
	// for it).
	err = inParallel(
		func() error { return d.maps.PendingOf.Put(agentCgroup, w.pending) },
		func() error { return d.maps.ToolsOf.Put(agentCgroup, w.tools) },
		func() error { return d.maps.Rings.Put(agentCgroup, w.ring) })
	if err != nil {
		return fmt.Errorf("watch cgroup %d: %w", agentCgroup, err)
	}
	return nil
}

// inParallel runs fs side by side and joins their errors.
func inParallel(fs ...func() error) error {
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// newWatch makes a container's ring buffer, its reader, and its share of
// the pending and tools maps.
func (d *Detector) newWatch() (_ *watch, retErr error) {
	w := &watch{stop: make(chan struct{}), stopped: make(chan struct{})}
	defer func() {
		if retErr != nil {
			w.closeMaps()
		}
	}()
	var err error
	if w.ring, err = ebpf.NewMap(d.ringSpec); err != nil {
		return nil, fmt.Errorf("ring buffer: %w", err)
	}
	if w.reader, err = ringbuf.NewReader(w.ring); err != nil {
		return nil, fmt.Errorf("ring buffer reader: %w", err)
	}
	if w.pending, err = ebpf.NewMap(d.pendingSpec); err != nil {
		return nil, fmt.Errorf("pending map: %w", err)
	}
	if w.tools, err = ebpf.NewMap(d.toolsSpec); err != nil {
		return nil, fmt.Errorf("tools map: %w", err)
	}
	return w, nil
}

// Unwatch stops detecting for an agent cgroup: its watcher gets no more
// events. The cgroup and what the programs keep for it (its ring buffer, its
// calls' and processes' entries) leave the maps in the background, because
// removing an entry of a map of maps waits for an RCU grace period, most of
// a delete's cost here; Close waits for them.
func (d *Detector) Unwatch(agentCgroup uint64) {
	d.mu.Lock()
	w := d.watches[agentCgroup]
	delete(d.watches, agentCgroup)
	if w != nil {
		d.removing.Add(1) // under d.mu, so before Close's Wait
	}
	d.mu.Unlock()
	if w == nil {
		return
	}
	w.close()
	go func() {
		defer d.removing.Done()
		d.forget(agentCgroup)
	}()
}

// Flush has the watcher of agentCgroup send, once every event the kernel
// has written for it so far has been sent, a Flushed event whose Flushes is
// at least the number it returns.
func (d *Detector) Flush(agentCgroup uint64) (uint64, error) {
	d.mu.Lock()
	w := d.watches[agentCgroup]
	d.mu.Unlock()
	if w == nil {
		return 0, fmt.Errorf("flush cgroup %d: %w", agentCgroup, ErrNotWatched)
	}
	n := w.flushes.Add(1)
	if err := w.reader.Flush(); err != nil {
		return 0, fmt.Errorf("flush cgroup %d: %w", agentCgroup, err)
	}
	return n, nil
}

// forget removes an agent cgroup from the programs' maps, with what points
// to it: its call cgroups, and its share of the pending and tools maps (so
// that no entry of its processes outlives it for a reused pid to inherit).
func (d *Detector) forget(agentCgroup uint64) {
	// Side by side, as in Watch: each delete waits for a grace period.
	var dels []func() error
	for _, m := range []*ebpf.Map{d.maps.Rings, d.maps.PendingOf, d.maps.ToolsOf} {
		dels = append(dels, func() error {
			if err := m.Delete(agentCgroup); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
			return nil
		})
	}
	errs := []error{inParallel(dels...)}
	_ = d.maps.Dropped.Delete(agentCgroup)
	errs = append(errs, deleteWhere[uint64](d.maps.Calls, func(c detectorCallCgroup) bool { return c.AgentCgroup == agentCgroup }))
	if err := errors.Join(errs...); err != nil {
		log.L.WithError(err).WithField("cgroup", agentCgroup).Warn("forget an agent cgroup's entries in the tool-call detector")
	}
}

// deleteWhere deletes the entries of m whose value matches: collected
// first, since deleting while iterating restarts a hash map's iteration.
func deleteWhere[K comparable, V any](m *ebpf.Map, match func(V) bool) error {
	var k K
	var v V
	var gone []K
	it := m.Iterate()
	for it.Next(&k, &v) {
		if match(v) {
			gone = append(gone, k)
		}
	}
	for _, k := range gone {
		_ = m.Delete(k)
	}
	return it.Err()
}

// Dropped is the number of agentCgroup's events lost to its full ring
// buffer.
func (d *Detector) Dropped(agentCgroup uint64) (uint64, error) {
	var n uint64
	if err := d.maps.Dropped.Lookup(agentCgroup, &n); err != nil {
		return 0, err
	}
	return n, nil
}

// AddCall watches the tool-call cgroup with ID call, of the container whose
// agent cgroup is agentCgroup: a process there that forks a child into
// another cgroup is reported (Escape). Add it before a process runs there;
// a session's cgroup added again is a call's from then on.
func (d *Detector) AddCall(call, agentCgroup uint64) error {
	if err := d.maps.Calls.Put(call, detectorCallCgroup{AgentCgroup: agentCgroup}); err != nil {
		return fmt.Errorf("watch tool-call cgroup %d: %w", call, err)
	}
	return nil
}

// AddSession watches the cgroup with ID session, of the container whose
// agent cgroup is agentCgroup, as the agent cgroup is watched: what a
// process there forks is pending, and a tool call once it executes a
// program. A session (a shell the agent feeds commands to) runs there,
// bounded apart from the agent. A call's cgroup added again is a
// session's from then on.
func (d *Detector) AddSession(session, agentCgroup uint64) error {
	if err := d.maps.Calls.Put(session, detectorCallCgroup{AgentCgroup: agentCgroup, Session: 1}); err != nil {
		return fmt.Errorf("watch session cgroup %d: %w", session, err)
	}
	return nil
}

// RemoveCall stops watching a tool call's or a session's cgroup.
func (d *Detector) RemoveCall(call uint64) { _ = d.maps.Calls.Delete(call) }

// reportDrops logs the events each watched container lost to its full ring
// buffer, and tells the container (Lost).
func (d *Detector) reportDrops() {
	t := time.NewTicker(dropCheck)
	defer t.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
		}
		type loss struct {
			w *watch
			n uint64
		}
		var lost []loss
		d.mu.Lock()
		for agent, w := range d.watches {
			n, err := d.Dropped(agent)
			if err != nil {
				log.L.WithError(err).WithField("cgroup", agent).Warn("read the tool-call detector's drop counter")
			} else if n > w.dropped {
				log.L.WithFields(log.Fields{"cgroup": agent, "events": n - w.dropped}).Warn("tool-call detector: events lost to a full ring buffer; the container's agent cgroup is scanned for what they reported")
				w.dropped = n
				lost = append(lost, loss{w, n})
			}
		}
		d.mu.Unlock()
		for _, l := range lost { // off d.mu: a container may be slow to take it
			select {
			case l.w.ch <- Event{Kind: Lost, AgentCgroup: l.w.agent, Dropped: l.n}:
			case <-l.w.stop:
			case <-d.done:
			}
		}
	}
}

// Member is what the detector knows of a tool call's process that is (or
// was) in the agent cgroup.
type Member struct {
	// Leader is its call's leader; 0 for a process cloned out of its call
	// and its children.
	Leader uint32
	// Call is its call's cgroup ID, where the kernel knows it (Leader 0).
	Call uint64
}

// Member reports whether pid is a tool call's process for the detector of
// agentCgroup's container, and which call's.
func (d *Detector) Member(pid uint32, agentCgroup uint64) (Member, bool) {
	var t detectorTool
	err := d.withWatch(agentCgroup, func(w *watch) error { return w.tools.Lookup(pid, &t) })
	if err != nil {
		return Member{}, false
	}
	return Member{Leader: t.Leader, Call: t.Call}, true
}

// Fork is what the detector knows of a pending process.
type Fork struct {
	// At is when it was forked (CLOCK_MONOTONIC).
	At time.Duration
	// Parent is the process that forked it.
	Parent uint32
	// Session says that user space kept it as a session (Rearm).
	Session bool
}

// Pending reports whether pid was forked by a process in the watched agent
// cgroup agentCgroup and has not executed a program yet, and how.
func (d *Detector) Pending(pid uint32, agentCgroup uint64) (Fork, bool) {
	var f detectorForked
	err := d.withWatch(agentCgroup, func(w *watch) error { return w.pending.Lookup(pid, &f) })
	if err != nil {
		return Fork{}, false
	}
	return Fork{At: time.Duration(f.ForkNs), Parent: f.Parent, Session: f.Session != 0}, true
}

// withWatch runs f on the watch of agentCgroup, whose maps stay open until
// f returns; ErrNotWatched if there is none (any more).
func (d *Detector) withWatch(agentCgroup uint64, f func(w *watch) error) error {
	d.mu.Lock()
	w := d.watches[agentCgroup]
	d.mu.Unlock()
	if w == nil {
		return fmt.Errorf("cgroup %d: %w", agentCgroup, ErrNotWatched)
	}
	w.mapsMu.RLock()
	defer w.mapsMu.RUnlock()
	if w.mapsClosed {
		return fmt.Errorf("cgroup %d: %w", agentCgroup, ErrNotWatched)
	}
	return f(w)
}

// Claim makes a pending pid the leader of a tool call that user space has
// placed before its exec completed: its exit is reported as the call's end
// even if it never executes a program.
func (d *Detector) Claim(pid uint32, agentCgroup uint64) error {
	err := d.withWatch(agentCgroup, func(w *watch) error {
		return w.tools.Put(pid, detectorTool{AgentCgroup: agentCgroup, Leader: pid})
	})
	if err != nil {
		return fmt.Errorf("claim tool call %d: %w", pid, err)
	}
	return nil
}

// Forget makes a pending pid, or a tool call's leader, of agentCgroup's
// container a process of the agent again.
func (d *Detector) Forget(pid uint32, agentCgroup uint64) {
	_ = d.withWatch(agentCgroup, func(w *watch) error {
		// Either may hold no entry for pid.
		_ = w.pending.Delete(pid)
		_ = w.tools.Delete(pid)
		return nil
	})
}

// Rearm makes pid, a session that stays in agentCgroup, pending again, as
// if just forked: its next program is then seen, so that a session
// replaced by another program (`exec CMD`) becomes a tool call.
func (d *Detector) Rearm(pid uint32, agentCgroup uint64) error {
	// A session is no call's process, and is pending as if forked now.
	f := detectorForked{AgentCgroup: agentCgroup, ForkNs: uint64(Since(0)), Session: 1}
	err := d.withWatch(agentCgroup, func(w *watch) error {
		_ = w.tools.Delete(pid) // it may hold none
		return w.pending.Put(pid, f)
	})
	if err != nil {
		return fmt.Errorf("rearm session %d: %w", pid, err)
	}
	return nil
}

// Close stops watching every agent cgroup still watched and releases the
// detector: a private one is detached and freed; the shared one is
// unpinned, and so detached and freed, when no other shim uses it.
func (d *Detector) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true // from here Watch refuses and Unwatch finds nothing
	watches := d.watches
	d.watches = map[uint64]*watch{}
	d.mu.Unlock()
	for agent, w := range watches {
		w.close()
		d.forget(agent)
	}
	d.removing.Wait()
	return d.close()
}

func (d *Detector) close() error {
	d.closeDone.Do(func() { close(d.done) })
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	d.links = nil
	if d.shared != nil {
		errs = append(errs, d.shared.release())
	}
	errs = append(errs, d.maps.Close())
	return errors.Join(errs...)
}

// run reads the container's ring buffer into ch until stopped.
func (w *watch) run() {
	ch := w.ch
	defer close(w.stopped)
	var rec ringbuf.Record
	var raw detectorEvent
	// covered: the Flush calls made before the reader could have waited
	// for the flush it reports next; their events are in the ring by then.
	covered := w.flushes.Load()
	for {
		if err := w.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			if errors.Is(err, ringbuf.ErrFlushed) {
				select {
				case ch <- Event{Kind: Flushed, Flushes: covered}:
				case <-w.stop:
					return
				}
				// Flush calls that came since need a flush of their own
				// (the reader's eventfd counts several as one).
				if next := w.flushes.Load(); next > covered {
					covered = next
					if err := w.reader.Flush(); err != nil {
						log.L.WithError(err).Warn("flush the tool-call detector's ring buffer")
					}
				}
				continue
			}
			log.L.WithError(err).Warn("read the tool-call detector's ring buffer")
			continue
		}
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &raw); err != nil {
			log.L.WithError(err).Warn("decode a tool-call detector event")
			continue
		}
		ev := Event{Kind: Kind(raw.Kind), AgentCgroup: raw.AgentCgroup, Pid: raw.Pid, Leader: raw.Leader,
			ExitStatus: raw.ExitStatus, Forked: time.Duration(raw.ForkNs), Unplaced: raw.Unplaced != 0,
			Parent: raw.Parent, Session: raw.Session != 0, Call: raw.Call, Start: raw.Start}
		if ev.Kind == Tool {
			ev.Filename = cString(raw.Filename[:])
			ev.Args = argv(raw.Args[:min(int(raw.ArgsLen), len(raw.Args))])
			ev.ArgsCut = int(raw.ArgsLen) >= len(raw.Args)-1
		}
		select {
		case ch <- ev:
		case <-w.stop:
			return
		}
	}
}

// close stops the reader and frees the ring buffer.
func (w *watch) close() {
	close(w.stop)
	if err := w.reader.Close(); err != nil {
		log.L.WithError(err).Warn("close a tool-call detector ring buffer reader")
	}
	<-w.stopped
	w.reader = nil
	w.closeMaps()
}

// closeMaps closes this process's handles of the watch's maps (the kernel
// keeps a map while the programs' maps hold it), once no caller uses them.
func (w *watch) closeMaps() {
	w.mapsMu.Lock()
	defer w.mapsMu.Unlock()
	w.mapsClosed = true
	if w.reader != nil {
		w.reader.Close()
	}
	for _, m := range []*ebpf.Map{w.ring, w.pending, w.tools} {
		if m != nil {
			m.Close()
		}
	}
}

// argv splits a NUL-separated argument area.
func argv(b []int8) []string {
	if len(b) == 0 {
		return nil
	}
	s := make([]byte, len(b))
	for i, c := range b {
		s[i] = byte(c)
	}
	return strings.Split(strings.TrimRight(string(s), "\x00"), "\x00")
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
