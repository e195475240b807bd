// Command agentsim behaves like an AI agent framework as a container's init:
// a long-lived, multi-threaded process that runs its tools as child
// processes (`sh -c CMD`, as Claude Code or OpenHands run Bash calls), one
// after the other, then waits to be stopped. With -alloc it is instead a
// tool that allocates and touches memory right after exec.
//
//	agentsim [-delay 100ms] [-repeat N] [-grow MiB] CMD...
//	                                             run each CMD with sh -c (N times), then wait; with
//	                                             -grow, first hold MiB of its own (a framework's heap)
//	                                             (waiting as a job-control shell does, it reports
//	                                             a call that stops: "agentsim: call N stopped")
//	agentsim -loop N PROG                        fork+exec PROG N times, print the time taken, wait
//	agentsim -alloc MiB [-ramp 2s] [-hold 1s]    allocate and touch MiB (spread over -ramp), then exit
//	agentsim -trace FILE [-speed 10] [-scale 1] [-seed N]  replay an agent run (see replay.go), then exit
//	agentsim -steps 0:120,0.4:300 -for 1s        a replayed tool call: hold MiB levels, exit after -for
//	agentsim -int80                              make one 32-bit system call (int 0x80), then exit
//	agentsim -killheld N                         start N calls, killing each at once, then wait
//	agentsim -idle N [CMD...]                    fork N children that never execute a program (then
//	                                             create /tmp/idle.done), run each CMD, then wait
//	agentsim -escape DIR CMD...                  run CMD cloned into cgroup DIR (CLONE_INTO_CGROUP; relative: in
//	                                             the container's cgroup), then exit
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

func main() {
	delay := flag.Duration("delay", 100*time.Millisecond, "pause before each tool call")
	alloc := flag.Int("alloc", 0, "allocate and touch this many MiB, then exit")
	hold := flag.Duration("hold", 0, "with -alloc, keep the memory this long")
	ramp := flag.Duration("ramp", 0, "with -alloc, spread the allocation over this long")
	repeat := flag.Int("repeat", 1, "run the list of calls this many times")
	loop := flag.Int("loop", 0, "fork+exec the program given as argument this many times")
	tracePath := flag.String("trace", "", "replay this agent trace file")
	speed := flag.Float64("speed", 10, "with -trace, run the trace this many times faster")
	seed := flag.Int64("seed", 0, "with -trace, shifts the start by up to one (compressed) second")
	memScale := flag.Float64("scale", 1, "with -trace, multiply every memory level by this")
	steps := flag.String("steps", "", "as a replayed tool call: seconds:MiB levels to hold")
	holdFor := flag.Duration("for", 0, "with -steps, exit after this long")
	logPath := flag.String("log", "", "write stdout and stderr to this file")
	int80 := flag.Bool("int80", false, "make one 32-bit system call, then exit")
	escapeTo := flag.String("escape", "", "run the command cloned into this cgroup, then exit")
	killN := flag.Int("killheld", 0, "start this many calls, killing each right after its fork")
	execLoop := flag.Int("execloop", 0, "execve a missing program this many times, then exit")
	grow := flag.Int("grow", 0, "as the agent, hold this many MiB of its own before the calls")
	idle := flag.Int("idle", 0, "as the agent, fork this many children that never execute a program before the calls")
	flag.Parse()
	if *execLoop > 0 {
		missingExecs(*execLoop)
		return
	}
	if *escapeTo != "" {
		escape(*escapeTo, flag.Args())
		return
	}
	if *int80 {
		compat32()
		return
	}
	if *logPath != "" {
		f, err := os.Create(*logPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "agentsim:", err)
			os.Exit(2)
		}
		_ = syscall.Dup2(int(f.Fd()), 1)
		_ = syscall.Dup2(int(f.Fd()), 2)
	}
	if *steps != "" {
		if err := follow(*steps, *holdFor); err != nil {
			fmt.Fprintln(os.Stderr, "agentsim:", err)
			os.Exit(2)
		}
		return
	}
	if *tracePath != "" {
		// As a container's init, its exit is the agent's: 0 for a
		// completed run, 137 for an agent the kernel killed.
		if err := replayTrace(*tracePath, *speed, *memScale, *seed); err != nil {
			fmt.Fprintln(os.Stderr, "agentsim:", err)
			os.Exit(2)
		}
		return
	}
	if *alloc > 0 {
		allocate(*alloc, *ramp, *hold)
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	busy := spinThreads(4) // an agent framework is multi-threaded
	var heap [][]byte
	for i := range *grow {
		heap = touch(heap, i+1)
	}
	if *grow > 0 {
		fmt.Printf("agentsim: holding %d MiB\n", *grow)
	}
	if *idle > 0 {
		idleChildren(*idle)
	}
	if *killN > 0 {
		killHeld(*killN)
	}
	if *loop > 0 {
		start := time.Now()
		for range *loop {
			if err := exec.Command(flag.Arg(0)).Run(); err != nil {
				fmt.Fprintln(os.Stderr, "agentsim:", err)
				os.Exit(1)
			}
		}
		fmt.Printf("agentsim: %d fork+exec in %d us\n", *loop, time.Since(start).Microseconds())
	}
	n := 0
	for range *repeat {
		for _, cmd := range flag.Args()[min(*loop, 1):] {
			n++
			time.Sleep(*delay)
			c := exec.Command("/bin/sh", "-c", cmd)
			c.Stdout, c.Stderr = os.Stdout, os.Stderr
			if err := c.Start(); err != nil {
				fmt.Fprintf(os.Stderr, "agentsim: call %d: %v\n", n, err)
				continue
			}
			waitJob(n, c.Process.Pid)
			_ = c.Process.Release() // reaped by waitJob
		}
	}
	fmt.Println("agentsim: all calls done")
	<-stop
	close(busy)
	runtime.KeepAlive(heap)
}

// waitJob waits for a call as a job-control shell waits for its job
// (WUNTRACED): a stop is reported to the agent, and said here.
func waitJob(n, pid int) {
	for {
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WUNTRACED, nil); err != nil {
			if err == syscall.EINTR {
				continue
			}
			fmt.Fprintf(os.Stderr, "agentsim: call %d: %v\n", n, err)
			return
		}
		if !ws.Stopped() {
			return
		}
		fmt.Printf("agentsim: call %d stopped (%v)\n", n, ws.StopSignal())
	}
}

// spinThreads keeps n OS threads alive until done is closed.
func spinThreads(n int) chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			runtime.LockOSThread()
			wg.Done()
			<-done
		}()
	}
	wg.Wait()
	return done
}

// allocate touches mib MiB, one MiB at a time, evenly over ramp.
func allocate(mib int, ramp, hold time.Duration) {
	var mem [][]byte
	start := time.Now()
	for i := range mib {
		mem = touch(mem, i+1)
		if ramp > 0 {
			time.Sleep(time.Until(start.Add(ramp * time.Duration(i+1) / time.Duration(mib))))
		}
	}
	time.Sleep(hold)
	runtime.KeepAlive(mem)
}
