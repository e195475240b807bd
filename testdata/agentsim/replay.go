package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentcgroup/agentcgroup/replay/trace"
)

// replayTrace replays an agent run, with every memory level times scale: this
// process holds the framework's own memory level for the whole run, and
// each tool call is forked (`sh -c` for Bash calls, as agents run them) as
// `agentsim -steps`, which holds the memory the trace shows above that
// level during the call's window. A call starts as the agent started it:
// after the calls that had ended before it in the trace, and the agent's
// own time after the last of them (trace.Gates), so that a call that runs
// slower than in the trace delays the agent's next ones, as it would delay
// a real agent's. Times are divided by speed; seed shifts the start by up
// to one compressed second, so that agents replaying the same trace do not
// align. It prints one summary line when the last call has ended.
func replayTrace(path string, speed, scale float64, seed int64) error {
	if speed <= 0 || scale <= 0 {
		return fmt.Errorf("-speed %v, -scale %v: both must be positive", speed, scale)
	}
	t, err := trace.Load(path)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	base := t.BaselineMB()
	agent := touch(nil, int(base*scale))
	busy := spinThreads(4)
	defer close(busy)

	start := time.Now().Add(time.Duration(rand.New(rand.NewPCG(uint64(seed), 0)).Float64() * float64(time.Second)))
	at := func(s float64) time.Duration { return time.Duration(s / speed * float64(time.Second)) }
	var wg sync.WaitGroup
	var failed, killed atomic.Int64
	var mu sync.Mutex
	stretch := make([]float64, 0, len(t.Calls)) // wall time over the trace's, compressed
	gates := t.Gates()
	ended := make([]chan struct{}, len(t.Calls))
	ends := make([]time.Time, len(t.Calls)) // each written before its ended closes
	for i, c := range t.Calls {
		from := start
		for _, j := range gates[i].After {
			<-ended[j]
			if ends[j].After(from) {
				from = ends[j]
			}
		}
		time.Sleep(time.Until(from.Add(at(gates[i].Gap))))
		var levels []string
		for _, s := range t.Profile(c, base) {
			levels = append(levels, fmt.Sprintf("%.3f:%d", s.At/speed, int(s.MB*scale)))
		}
		argv := []string{self, "-steps", strings.Join(levels, ","), "-for", at(c.End - c.Start).String()}
		if c.Tool == "Bash" {
			argv = []string{"/bin/sh", "-c", "exec " + strings.Join(argv, " ")}
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		want := at(c.End - c.Start)
		began := time.Now()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("call %d (%s): %w", i, c.Tool, err)
		}
		ended[i] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cmd.Wait()
			ends[i] = time.Now()
			close(ended[i])
			if want > 0 {
				mu.Lock()
				stretch = append(stretch, float64(time.Since(began))/float64(want))
				mu.Unlock()
			}
			if err != nil {
				failed.Add(1)
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
					killed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(stretch)
	pct := func(p float64) float64 {
		if len(stretch) == 0 {
			return 0
		}
		return stretch[min(len(stretch)-1, int(p*float64(len(stretch))))]
	}
	fmt.Printf("agentsim: replay done: task=%s calls=%d failed=%d killed=%d baseline_mb=%.0f seconds=%.3f stretch_p50=%.3f stretch_p95=%.3f\n",
		t.Task, len(t.Calls), failed.Load(), killed.Load(), base*scale, time.Since(start).Seconds(), pct(0.5), pct(0.95))
	sum, _ := json.Marshal(trace.Summary{Task: t.Task, Calls: len(t.Calls), Failed: int(failed.Load()), Killed: int(killed.Load()), Stretch: stretch})
	fmt.Printf("%s%s\n", trace.SummaryPrefix, sum)
	runtime.KeepAlive(agent)
	return nil
}

// follow holds the memory levels of a replayed tool call ("seconds:MiB,...")
// and returns after d.
func follow(spec string, d time.Duration) error {
	start := time.Now()
	var mem [][]byte
	for _, step := range strings.Split(spec, ",") {
		at, mib, ok := strings.Cut(step, ":")
		sec, err1 := strconv.ParseFloat(at, 64)
		n, err2 := strconv.Atoi(mib)
		if !ok || err1 != nil || err2 != nil || sec < 0 || n < 0 {
			return fmt.Errorf("-steps: %q is not seconds:MiB", step)
		}
		time.Sleep(time.Until(start.Add(time.Duration(sec * float64(time.Second)))))
		if n < len(mem) {
			mem = mem[:n]
			debug.FreeOSMemory()
		}
		mem = touch(mem, n)
	}
	time.Sleep(time.Until(start.Add(d)))
	runtime.KeepAlive(mem)
	return nil
}

// touch grows mem to mib MiB of touched pages.
func touch(mem [][]byte, mib int) [][]byte {
	for len(mem) < mib {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		mem = append(mem, b)
	}
	return mem
}
