//go:build integration

package integration

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// realToolsRounds is the number of runs of each tool call per runtime; odd,
// for a plain median.
var realToolsRounds = flag.Int("bench.toolrounds", 3, "runs of each tool call per runtime in BenchmarkRealTools (odd)")

// realToolsSeccomp gives every container of BenchmarkRealTools containerd's
// default seccomp profile, as Docker and Kubernetes' RuntimeDefault do; ctr
// gives none unless asked, and agentcgroup's default then runs the only
// filter (its execve rule).
var realToolsSeccomp = flag.Bool("bench.seccomp", false, "run BenchmarkRealTools' containers with containerd's default seccomp profile")

// realTools are the tool calls of BenchmarkRealTools, as an agent runs them
// (a fresh `bash -c` each), and the untimed set-up each needs first.
var realTools = []struct{ name, setup, run string }{
	{"make -j2, 32 C files",
		`mkdir -p /tmp/proj && cd /tmp/proj && for i in $(seq 1 32); do printf 'int f%d(int x){int s=0;for(int i=0;i<x;i++)s+=i*%d;return s;}\n' $i $i >f$i.c; done && printf 'int main(void){return 0;}\n' >main.c && printf 'prog: $(patsubst %%.c,%%.o,$(wildcard *.c))\n\t$(CC) -o $@ $^\n' >Makefile && rm -f *.o prog`,
		`make -s -j2 -C /tmp/proj`},
	{"git add+commit, 300 files",
		`rm -rf /tmp/repo && mkdir -p /tmp/repo && cd /tmp/repo && for i in $(seq 1 300); do echo "line $i" >file$i.txt; done && git init -q`,
		`cd /tmp/repo && git add -A && git -c user.name=agent -c user.email=agent@example.com commit -qm files`},
	{"python3, 200 MB", `true`, `python3 -c "b = b'x' * (200 << 20)"`},
	// Not a tool of its own: what a seccomp filter costs a syscall-bound
	// call, where the runc shim's container has no profile.
	{"python3, 100k getppid", `true`, `python3 -c "import os
for _ in range(100000): os.getppid()"`},
}

// BenchmarkRealTools times real tool calls exec'd into a Debian container
// (gcc, make, git, python3) under the runc shim, agentcgroup's default
// (fork+exec detection, every execve held) and detect=exec, interleaved
// round by round on one daemon, and reports medians and ratios against the
// runc shim. Run with -test.benchtime 1x.
func BenchmarkRealTools(b *testing.B) {
	if *realToolsRounds < 1 || *realToolsRounds%2 == 0 {
		b.Fatalf("-bench.toolrounds %d: want an odd number of rounds, at least 1", *realToolsRounds)
	}
	s := stacks()[0]
	debian := filepath.Join(projectRoot, ".cache/debian-rootfs")
	if _, err := os.Stat(filepath.Join(debian, "usr/bin/gcc")); err != nil {
		b.Fatalf("no Debian rootfs with gcc (integration/debian-rootfs.sh): %v", err)
	}
	d := getDaemon(b, s)
	execOnly := d.agentcgroup()
	execOnly.name, execOnly.args = "detect=exec", append(execOnly.args, "--annotation", "io.agentcgroup.detect=exec")
	runtimes := []runtime{d.runc(), d.agentcgroup(), execOnly}
	ids := map[string]string{}
	for _, rt := range runtimes {
		id := newID("tools")
		args := append([]string{"run", "-d"}, rt.args...)
		if *realToolsSeccomp {
			args = append(args, "--seccomp")
		}
		args = append(args, "--env", "PATH=/usr/local/bin:/usr/bin:/bin", "--env", "HOME=/root", "--rootfs", debian, id, "/bin/sleep", "infinity")
		d.mustCtr(b, args...)
		b.Cleanup(func() { d.remove(id) })
		ids[rt.name] = id
	}
	samples := map[string]map[string][]time.Duration{}
	for _, rt := range runtimes {
		samples[rt.name] = map[string][]time.Duration{}
	}
	n := 0
	// Round 0 is not timed: it fills the page cache, which the three
	// containers share (one rootfs). Each timed round starts with another
	// runtime, so that none always runs right after the same one.
	for round := range *realToolsRounds + 1 {
		for _, tool := range realTools {
			for i := range runtimes {
				rt := runtimes[(i+round)%len(runtimes)]
				n++
				d.mustCtr(b, "task", "exec", "--exec-id", fmt.Sprintf("setup-%d", n), ids[rt.name], "/bin/bash", "-c", tool.setup)
				start := time.Now()
				d.mustCtr(b, "task", "exec", "--exec-id", fmt.Sprintf("call-%d", n), ids[rt.name], "/bin/bash", "-c", tool.run)
				if round > 0 {
					samples[rt.name][tool.name] = append(samples[rt.name][tool.name], time.Since(start))
				}
			}
		}
		fmt.Fprintf(os.Stderr, "real tools: round %d of %d done (round 0 warms the cache)\n", round, *realToolsRounds)
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n%s, real tool calls exec'd into a Debian container, median of %d:\n%-28s %10s %12s %7s %12s %7s\n",
		s.name, *realToolsRounds, "tool call", "runc shim", "agentcgroup", "ratio", "detect=exec", "ratio")
	for _, tool := range realTools {
		runc, ours, exec := median(samples["runc"][tool.name]), median(samples["agentcgroup"][tool.name]), median(samples["detect=exec"][tool.name])
		fmt.Fprintf(&report, "%-28s %10s %12s %6.3fx %12s %6.3fx\n", tool.name, runc.Round(time.Millisecond), ours.Round(time.Millisecond),
			float64(ours)/float64(runc), exec.Round(time.Millisecond), float64(exec)/float64(runc))
		key := strings.Fields(tool.name)[0]
		b.ReportMetric(float64(ours)/float64(runc), key+"-ratio")
		b.ReportMetric(float64(exec)/float64(runc), key+"-detect-exec-ratio")
	}
	fmt.Fprint(os.Stdout, report.String())
}
