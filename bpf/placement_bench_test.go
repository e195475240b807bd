//go:build linux

package bpf

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/cgroupfs/cgrouptest"
	"github.com/agentcgroup/agentcgroup/exechold"
)

// BenchmarkPlacement measures natively, on this host, the path a detected
// tool call takes from its fork to being in its own cgroup, both ways the
// shim places one: after its exec (the kernel event, the ring buffer
// wake-up, one cgroup.procs write into a ready cgroup) and while its execve
// is held (the seccomp notification, one map lookup, the same write). A
// shell agent in a cgroup of the unified hierarchy runs 10,000 /bin/true per
// phase; the loop is also timed with no detector and with the detector
// attached but nothing moved.
func BenchmarkPlacement(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("loading BPF programs needs root")
	}
	const calls = 10000
	script := "i=0; while [ $i -lt " + strconv.Itoa(calls) + " ]; do /bin/true; i=$((i+1)); done"
	parent, err := os.MkdirTemp(cgrouptest.Mount(b), "agentcgroup-placement-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(parent)
	agent := filepath.Join(parent, "agent")
	must(b, os.Mkdir(agent, 0o755))
	defer os.Remove(agent)

	timeLoop := func(hold string) time.Duration {
		start := time.Now()
		runHeld(b, agent, script, hold)
		return time.Since(start)
	}
	none := timeLoop("")

	d, err := Load()
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	id, err := cgroupfs.ID(agent)
	if err != nil {
		b.Fatal(err)
	}
	events := make(chan Event, 4096)
	must(b, d.Watch(id, events))
	attached := timeLoop("") // events are dropped on the floor: nothing is moved
	drain(events)

	// ready makes one cgroup per call ahead, as the shim keeps spares.
	ready := func(phase string) chan string {
		ch := make(chan string, calls)
		go func() {
			for i := range calls {
				dir := filepath.Join(parent, phase+"-"+strconv.Itoa(i))
				must(b, os.Mkdir(dir, 0o755))
				ch <- dir
			}
		}()
		time.Sleep(time.Second) // the cgroups are ahead of the calls
		return ch
	}
	move := func(dirs chan string, pid uint32) {
		_ = os.WriteFile(filepath.Join(<-dirs, "cgroup.procs"), []byte(strconv.FormatUint(uint64(pid), 10)), 0)
	}

	// After exec: the mover acts on each Tool event. Events of an earlier
	// phase still in the ring buffer are skipped by their fork time.
	var afterExec []int64
	dirs := ready("exec")
	done := make(chan struct{})
	phase := monotonic()
	go func() {
		defer close(done)
		for ev := range events {
			if ev.Kind != Tool || ev.Forked < phase {
				continue
			}
			move(dirs, ev.Pid)
			afterExec = append(afterExec, ev.SinceFork().Microseconds())
			if len(afterExec) == calls {
				return
			}
		}
	}()
	moved := timeLoop("")
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("placed %d of %d calls", len(afterExec), calls)
	}

	// Held: the mover acts while the call's execve waits.
	var held []int64
	dirs = ready("held")
	l, err := exechold.Listen(filepath.Join(b.TempDir(), "hold.sock"))
	must(b, err)
	defer l.Close()
	l.Handle(func(r *exechold.Request) exechold.Payer {
		pid := r.Pid
		forked, ok := d.Pending(pid, id)
		if !ok {
			return exechold.Call
		}
		move(dirs, pid)
		held = append(held, Since(forked.At).Microseconds())
		return exechold.Agent
	})
	var unplaced, tools int
	counted := make(chan struct{})
	phase = monotonic()
	go func() {
		defer close(counted)
		for ev := range events {
			if ev.Kind == Tool && ev.Forked >= phase {
				tools++
				if ev.Unplaced {
					unplaced++
				}
				if tools == calls {
					return
				}
			}
		}
	}()
	heldLoop := timeLoop(l.Path())
	select {
	case <-counted:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d held calls reported", tools, calls)
	}
	for _, phase := range []string{"exec", "held"} {
		for i := range calls {
			os.Remove(filepath.Join(parent, phase+"-"+strconv.Itoa(i)))
		}
	}
	if len(held) != calls {
		b.Fatalf("held %d of %d calls", len(held), calls)
	}
	slices.Sort(afterExec)
	slices.Sort(held)
	pct := func(v []int64, p float64) int64 { return v[int(float64(len(v))*p)] }
	fmt.Printf("native placement, fork to in its cgroup, %d calls each: after exec p50 %d us, p99 %d us; held p50 %d us, p99 %d us, %d of %d programs started unplaced\n",
		calls, pct(afterExec, 0.5), pct(afterExec, 0.99), pct(held, 0.5), pct(held, 0.99), unplaced, tools)
	fmt.Printf("agent loop %v with no detector: %.3fx attached, %.3fx every call moved after exec, %.3fx every call held and moved\n",
		none.Round(time.Millisecond), ratio(attached, none), ratio(moved, none), ratio(heldLoop, none))
	b.ReportMetric(float64(pct(held, 0.5)), "held-p50-us")
	b.ReportMetric(float64(pct(held, 0.99)), "held-p99-us")
	b.ReportMetric(float64(pct(afterExec, 0.99)), "exec-p99-us")
	b.ReportMetric(float64(unplaced), "unplaced")
	b.ReportMetric(ratio(attached, none), "attached-ratio")
	b.ReportMetric(ratio(heldLoop, none), "held-ratio")
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func drain(ch chan Event) {
	for len(ch) > 0 {
		<-ch
	}
}

func monotonic() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

func must(b testing.TB, err error) {
	if err != nil {
		b.Fatal(err)
	}
}
