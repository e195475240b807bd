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
	// cgroup; it belongs to the call of Leader.
	Child Kind = 2
	// Exit: the leader of a tool call exited with ExitStatus.
	Exit Kind = 3
	// Escape: Leader, a process in a tool call's cgroup, forked Pid into
	// another cgroup (clone3 CLONE_INTO_CGROUP), out of the call's limits.
	Escape Kind = 4
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
	// bytes, as the kernel saw it at exec).
	Filename string
	Args     []string
	// Forked is when the leader of a Tool was forked, on CLOCK_MONOTONIC.
	Forked time.Duration
	// Unplaced says that a Tool's program started in the agent cgroup: it
	// was not placed while its execve was held.
	Unplaced bool
}

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

// Detector holds the loaded programs, their links and the ring buffer reader.
// One Detector serves every container of a shim process; each watched agent
// cgroup gets its own channel of events.
type Detector struct {
	objs   detectorObjects
	links  []link.Link
	reader *ringbuf.Reader

	mu   sync.Mutex
	subs map[uint64]chan<- Event
	// lost counts the events a watcher's full channel did not take.
	lost atomic.Uint64
	done chan struct{}
}

// dropCheck is how often the kernel's count of events lost to a full ring
// buffer is read, and a rise logged.
const dropCheck = 10 * time.Second

// Load loads and attaches the programs. It fails where the kernel lacks BTF,
// tp_btf or ring buffers, or the caller lacks the privilege.
func Load() (_ *Detector, retErr error) {
	d := &Detector{subs: make(map[uint64]chan<- Event), done: make(chan struct{})}
	if err := loadDetectorObjects(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("load tool-call detector: %w", err)
	}
	defer func() {
		if retErr != nil {
			d.close()
		}
	}()
	for _, p := range []*ebpf.Program{d.objs.OnFork, d.objs.OnExec, d.objs.OnExit} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", p, err)
		}
		d.links = append(d.links, l)
	}
	r, err := ringbuf.NewReader(d.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open detector ring buffer: %w", err)
	}
	d.reader = r
	go d.run()
	go d.reportDrops()
	return d, nil
}

// Watch starts detecting the tool calls forked from the agent cgroup with
// the given ID; their events go to ch until Unwatch. ch should be buffered:
// the reader does not wait for a slow watcher, whose events are dropped (and
// counted in Lost) so that no container stalls another's.
func (d *Detector) Watch(agentCgroup uint64, ch chan<- Event) error {
	d.mu.Lock()
	d.subs[agentCgroup] = ch
	d.mu.Unlock()
	if err := d.objs.Agents.Put(agentCgroup, uint8(1)); err != nil {
		d.Unwatch(agentCgroup)
		return fmt.Errorf("watch cgroup %d: %w", agentCgroup, err)
	}
	return nil
}

// Unwatch stops detecting for an agent cgroup.
func (d *Detector) Unwatch(agentCgroup uint64) {
	_ = d.objs.Agents.Delete(agentCgroup)
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.subs, agentCgroup)
}

// Dropped is the number of events lost to a full ring buffer.
func (d *Detector) Dropped() (uint64, error) {
	var perCPU []uint64
	if err := d.objs.Dropped.Lookup(uint32(0), &perCPU); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// AddCall watches the tool-call cgroup with ID call, of the container whose
// agent cgroup is agentCgroup: a process there that forks a child into
// another cgroup is reported (Escape). Add it before a process runs there.
func (d *Detector) AddCall(call, agentCgroup uint64) error {
	if err := d.objs.Calls.Put(call, agentCgroup); err != nil {
		return fmt.Errorf("watch tool-call cgroup %d: %w", call, err)
	}
	return nil
}

// RemoveCall stops watching a tool-call cgroup.
func (d *Detector) RemoveCall(call uint64) { _ = d.objs.Calls.Delete(call) }

// Lost is the number of events dropped because a watcher's channel was full.
func (d *Detector) Lost() uint64 { return d.lost.Load() }

// reportDrops logs events lost to a full ring buffer or a slow watcher.
func (d *Detector) reportDrops() {
	t := time.NewTicker(dropCheck)
	defer t.Stop()
	var dropped, lost uint64
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
		}
		if n, err := d.Dropped(); err != nil {
			log.L.WithError(err).Warn("read the tool-call detector's drop counter")
		} else if n > dropped {
			log.L.WithField("events", n-dropped).Warn("tool-call detector: events lost to a full ring buffer; calls may be placed late or end late")
			dropped = n
		}
		if n := d.Lost(); n > lost {
			log.L.WithField("events", n-lost).Warn("tool-call detector: events dropped for a container that did not take them")
			lost = n
		}
	}
}

// Pending reports whether pid was forked by a process in the watched agent
// cgroup agentCgroup and has not executed a program yet, and when it was
// forked (CLOCK_MONOTONIC).
func (d *Detector) Pending(pid uint32, agentCgroup uint64) (time.Duration, bool) {
	var f detectorForked
	if err := d.objs.Pending.Lookup(pid, &f); err != nil || f.AgentCgroup != agentCgroup {
		return 0, false
	}
	return time.Duration(f.ForkNs), true
}

// Claim makes a pending pid the leader of a tool call that user space has
// placed before its exec completed: its exit is reported as the call's end
// even if it never executes a program.
func (d *Detector) Claim(pid uint32, agentCgroup uint64) error {
	if err := d.objs.Tools.Put(pid, detectorTool{AgentCgroup: agentCgroup, Leader: pid}); err != nil {
		return fmt.Errorf("claim tool call %d: %w", pid, err)
	}
	return nil
}

// Forget makes a pending pid, or a tool call's leader, a process of the
// agent again (a session shell: its own children are the tool calls).
func (d *Detector) Forget(pid uint32) {
	_ = d.objs.Pending.Delete(pid)
	_ = d.objs.Tools.Delete(pid)
}

// Close detaches the programs and frees everything; nothing of the detector
// stays loaded.
func (d *Detector) Close() error {
	err := d.close()
	if d.reader != nil {
		<-d.done
	}
	return err
}

func (d *Detector) close() error {
	var errs []error
	if d.reader != nil {
		errs = append(errs, d.reader.Close())
	}
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	d.links = nil
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

func (d *Detector) run() {
	defer close(d.done)
	var rec ringbuf.Record
	var raw detectorEvent
	for {
		if err := d.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			log.L.WithError(err).Warn("read the tool-call detector's ring buffer")
			continue
		}
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &raw); err != nil {
			log.L.WithError(err).Warn("decode a tool-call detector event")
			continue
		}
		ev := Event{Kind: Kind(raw.Kind), AgentCgroup: raw.AgentCgroup, Pid: raw.Pid, Leader: raw.Leader,
			ExitStatus: raw.ExitStatus, Forked: time.Duration(raw.ForkNs), Unplaced: raw.Unplaced != 0}
		if ev.Kind == Tool {
			ev.Filename = cString(raw.Filename[:])
			ev.Args = argv(raw.Args[:min(int(raw.ArgsLen), len(raw.Args))])
		}
		d.mu.Lock()
		ch := d.subs[ev.AgentCgroup]
		d.mu.Unlock()
		if ch != nil {
			select {
			case ch <- ev:
			default:
				d.lost.Add(1)
			}
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
