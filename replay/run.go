package replay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/replay/trace"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
	"github.com/agentcgroup/agentcgroup/tree"
)

// Arm is one way users run agents on a host, compared on the same traces.
type Arm struct {
	Name, Label string
	runtime     string
	limit       func(perAgent int64) oci.SpecOpts // nil: none
}

// Arms are the four arms of the benchmark, in order.
var Arms = []Arm{
	{Name: "a", Label: "runc, pool limit only", runtime: "io.containerd.runc.v2"},
	{Name: "b", Label: "runc, memory.max = budget/N", runtime: "io.containerd.runc.v2",
		limit: func(n int64) oci.SpecOpts { return oci.WithMemoryLimit(uint64(n)) }},
	{Name: "c", Label: "runc, memory.high = budget/N", runtime: "io.containerd.runc.v2",
		limit: func(n int64) oci.SpecOpts { return withUnified("memory.high", strconv.FormatInt(n, 10)) }},
	{Name: "d", Label: "agentcgroup, default policy", runtime: agentcgroupRuntime},
}

const agentcgroupRuntime = "io.containerd.agentcgroup.v1"

func withUnified(key, value string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		if s.Linux.Resources.Unified == nil {
			s.Linux.Resources.Unified = map[string]string{}
		}
		s.Linux.Resources.Unified[key] = value
		return nil
	}
}

// Config is one run of the benchmark.
type Config struct {
	Address, Namespace string
	// Rootfs holds /bin/agentsim and /bin/sh; Traces is mounted at /traces.
	Rootfs, Traces string
	Agents         int
	Budget         int64   // the pool's memory.max
	Speed, Scale   float64 // the simulator's time compression and memory factor
	Seed           int64
	// Pool is the parent cgroup of the arms' pools.
	Pool     string
	Progress io.Writer
	// Timeout bounds one arm (zero: ten times the longest trace, compressed,
	// plus a minute); agents still running then are reported unfinished.
	Timeout time.Duration
	// Order picks the traces the agents replay: "name" (file name order)
	// or "peak" (largest memory peak first, so that fewer agents than
	// traces replay the largest bursts).
	Order string
	// Top keeps only the first Top traces in that order (0: all); agents
	// take them in turn, so that a few bursty runs are replayed by many
	// agents, each from its own start offset.
	Top int
	// Policy: annotations of the agentcgroup arm's containers (none: the
	// default policy).
	Policy map[string]string
}

// Orders of the traces.
const (
	OrderName = "name"
	OrderPeak = "peak"
)

// AgentResult is one agent's run.
type AgentResult struct {
	ID, Task    string
	ExitStatus  uint32
	Completed   bool // exited 0
	AgentKilled bool // the agent framework itself was killed (SIGKILL)
	// Unfinished: still running when the arm's bound ended; Doing is the
	// last line of its output then.
	Unfinished bool
	Doing      string
	Summary    *trace.Summary
	Cost       Cost
}

// PoolSample is the pool every 100 ms; the counters are cumulative.
type PoolSample struct {
	At        time.Duration
	Bytes     uint64
	Throttles uint64 // memory.events "high" in the pool's subtree
	OOMKills  uint64
	Frozen    int // tool calls frozen at that moment
}

// ArmResult is one arm's run.
type ArmResult struct {
	Arm      Arm
	Agents   []AgentResult
	Samples  []PoolSample
	Makespan time.Duration
	// Bound is the arm's time bound; agents still running then are
	// Unfinished.
	Bound time.Duration
}

// Run runs the agents of one arm at once under a pool cgroup whose
// memory.max is the budget and returns what happened.
func Run(ctx context.Context, cfg Config, arm Arm) (*ArmResult, error) {
	files, traces, err := SelectTraces(cfg)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = defaultBound(cfg, traces)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	client, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(cfg.Namespace))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Address, err)
	}
	defer client.Close()

	r := &armRun{cfg: cfg, arm: arm, pool: filepath.Join(cfg.Pool, arm.Name), errs: make(chan error, 2*cfg.Agents)}
	poolDir, err := makePool(r.pool, cfg.Budget)
	if err != nil {
		return nil, err
	}
	defer func() {
		os.Remove(poolDir)
		os.Remove(filepath.Dir(poolDir)) // fails while another arm's pool remains
	}()
	if r.logs, err = os.MkdirTemp("", "agentcgroup-replay-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(r.logs)

	res := &ArmResult{Arm: arm, Agents: make([]AgentResult, cfg.Agents), Bound: timeout}
	start := time.Now()
	samples := startSampler(poolDir, start)
	defer samples.stop() // on an early return; stopping twice is harmless

	var wg sync.WaitGroup
	for i := range cfg.Agents {
		ar := &res.Agents[i]
		ar.ID = fmt.Sprintf("replay-%s-%d", arm.Name, i)
		ar.Task = traces[i%len(traces)].Task
		exited, cleanup, err := startAgent(ctx, client, cfg, arm, r.pool, ar.ID, filepath.Base(files[i%len(files)]), int64(i), r.logs)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.await(ctx, ar, exited, cleanup)
		}()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	r.showProgress(allDone, samples, start)
	res.Makespan = time.Since(start)
	res.Samples = samples.stop()
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "\r[arm %s] %s %d/%d agents done in %s%20s\n", arm.Name, bar(1, 1), cfg.Agents, cfg.Agents, res.Makespan.Round(time.Second), "")
	}
	close(r.errs)
	var errList []error
	for err := range r.errs {
		errList = append(errList, err)
	}
	return res, errors.Join(errList...)
}

// defaultBound is an arm's time bound where Config.Timeout is zero: ten
// times the longest trace an agent replays, compressed, plus a minute.
func defaultBound(cfg Config, traces []*trace.Trace) time.Duration {
	longest := 0.0
	for i := range cfg.Agents {
		longest = max(longest, traces[i%len(traces)].Duration())
	}
	return time.Duration(10*longest/cfg.Speed*float64(time.Second)) + time.Minute
}

// armRun is one arm's run in progress.
type armRun struct {
	cfg  Config
	arm  Arm
	pool string // relative to the cgroup2 mount
	logs string // the folder of the agents' output
	// errs receives an exit and a removal error per agent, at most.
	errs     chan error
	finished atomic.Int64
}

// await waits for agent ar to exit, or for the arm's bound to end, records
// how it ended and what it cost, and deletes its container.
func (r *armRun) await(ctx context.Context, ar *AgentResult, exited <-chan containerd.ExitStatus, cleanup func() error) {
	output := filepath.Join(r.logs, ar.ID+".log")
	st := <-exited
	code, _, err := st.Result()
	if err != nil && ctx.Err() != nil {
		// The bound ended first: an outcome, not a failure.
		ar.Unfinished = true
		ar.Doing = lastLine(output)
	} else {
		ar.ExitStatus = code
		ar.Completed = code == 0
		ar.AgentKilled = code == 128+uint32(syscall.SIGKILL)
		ar.Summary = readSummary(output)
		if !ar.Completed && !ar.AgentKilled {
			// Not a benchmark outcome: the simulator could not run.
			r.errs <- fmt.Errorf("agent %s exited %d: %s", ar.ID, code, lastLine(output))
		}
	}
	r.cost(ar)
	if err := cleanup(); err != nil {
		r.errs <- fmt.Errorf("remove %s: %w", ar.ID, err)
	}
	r.finished.Add(1)
}

// cost reads where agent ar's cost came from, before its container goes;
// what cannot be read is said, not fatal.
func (r *armRun) cost(ar *AgentResult) {
	dir := cgroupfs.Path(filepath.Join(r.pool, ar.ID))
	// Local: "oom" counts C's own limit, not its tool calls'.
	events, err := cgroupfs.ReadKV(dir, "memory.events.local")
	if err != nil {
		warnf(r.cfg.Progress, "%s: %v; a kill at its own limit is counted as the pool's", ar.ID, err)
	}
	psi, _ := cgroupfs.ReadPressure(dir)
	var recs []toolcall.Record
	records := r.arm.runtime == agentcgroupRuntime
	if records {
		time.Sleep(recordsDelay)
		if recs, err = state.LoadRecords(state.Dir(state.DefaultRoot, r.cfg.Namespace, ar.ID)); err != nil {
			warnf(r.cfg.Progress, "records of %s: %v", ar.ID, err)
		}
	}
	measureCost(ar, records, events, psi.Some, recs, time.Now())
}

// showProgress says every second how many agents are done and the pool's
// memory, until done is closed.
func (r *armRun) showProgress(done <-chan struct{}, samples *sampler, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if r.cfg.Progress != nil {
				n := int(r.finished.Load())
				fmt.Fprintf(r.cfg.Progress, "\r[arm %s] %s %d/%d agents done, pool %s of %s, %s",
					r.arm.Name, bar(n, r.cfg.Agents), n, r.cfg.Agents, mib(samples.last().Bytes), mib(uint64(r.cfg.Budget)), time.Since(start).Round(time.Second))
			}
		}
	}
}

// recordsDelay covers the shim's delay in writing its records (it
// coalesces writes for 100 ms), so that the last call's end is in them.
const recordsDelay = 250 * time.Millisecond

// warnf says what the benchmark could not measure, on its own line.
func warnf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, "\n"+format+"\n", args...)
	}
}

func bar(n, of int) string {
	const width = 20
	full := width * n / max(of, 1)
	return "[" + strings.Repeat("#", full) + strings.Repeat(".", width-full) + "]"
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// makePool creates the arm's pool cgroup with memory.max = budget and no
// swap, so that the budget is what the agents have.
func makePool(pool string, budget int64) (string, error) {
	dir := cgroupfs.Path(pool)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create pool cgroup: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := cgroupfs.WriteString(parent, "cgroup.subtree_control", "+memory +pids"); err != nil {
		return "", err
	}
	if err := cgroupfs.WriteLimit(dir, "memory.max", budget); err != nil {
		return "", err
	}
	_ = cgroupfs.WriteString(dir, "memory.swap.max", "0") // absent without swap accounting
	return dir, nil
}

// startAgent starts one agent container replaying a trace and returns its
// exit channel and a function that deletes it.
func startAgent(ctx context.Context, client *containerd.Client, cfg Config, arm Arm, pool, id, traceFile string, seed int64, logs string) (<-chan containerd.ExitStatus, func() error, error) {
	opts := []oci.SpecOpts{
		oci.WithRootFSPath(cfg.Rootfs),
		oci.WithEnv([]string{"PATH=/bin"}),
		oci.WithProcessArgs("/bin/agentsim", "-trace", "/traces/"+traceFile,
			"-speed", strconv.FormatFloat(cfg.Speed, 'f', -1, 64), "-scale", strconv.FormatFloat(cfg.Scale, 'f', -1, 64),
			"-seed", strconv.FormatInt(cfg.Seed+seed, 10)),
		oci.WithMounts([]specs.Mount{{Destination: "/traces", Type: "bind", Source: cfg.Traces, Options: []string{"rbind", "ro"}}}),
		oci.WithCgroup(filepath.Join(pool, id)),
	}
	if arm.limit != nil {
		opts = append(opts, arm.limit(cfg.Budget/int64(cfg.Agents)))
	}
	if arm.runtime == agentcgroupRuntime && len(cfg.Policy) > 0 {
		opts = append(opts, oci.WithAnnotations(cfg.Policy))
	}
	// A container left by an interrupted run goes first.
	if old, err := client.LoadContainer(ctx, id); err == nil {
		if t, err := old.Task(ctx, nil); err == nil {
			_ = t.Kill(ctx, syscall.SIGKILL)
			if ch, err := t.Wait(ctx); err == nil {
				<-ch
			}
			_, _ = t.Delete(ctx)
		}
		_ = old.Delete(ctx)
	}
	c, err := client.NewContainer(ctx, id, containerd.WithNewSpec(opts...), containerd.WithRuntime(arm.runtime, nil))
	if err != nil {
		return nil, nil, fmt.Errorf("create container %s: %w", id, err)
	}
	task, err := c.NewTask(ctx, cio.LogFile(filepath.Join(logs, id+".log")))
	if err != nil {
		_ = c.Delete(ctx)
		return nil, nil, fmt.Errorf("create task %s (runtime %s): %w", id, arm.runtime, err)
	}
	cleanup := func() error {
		dctx := context.WithoutCancel(ctx)
		if _, err := task.Delete(dctx, containerd.WithProcessKill); err != nil {
			return err
		}
		return c.Delete(dctx)
	}
	exited, err := task.Wait(ctx)
	if err == nil {
		err = task.Start(ctx)
	}
	if err != nil {
		_ = cleanup()
		return nil, nil, fmt.Errorf("start %s: %w", id, err)
	}
	return exited, cleanup, nil
}

// readSummary reads the simulator's summary from its output; nil if the
// agent died before it could write one.
func readSummary(path string) *trace.Summary {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<24)
	for s.Scan() {
		if line, ok := strings.CutPrefix(s.Text(), trace.SummaryPrefix); ok {
			var sum trace.Summary
			if json.Unmarshal([]byte(line), &sum) == nil {
				return &sum
			}
		}
	}
	return nil
}

// lastLine is the last line of an agent's output, which names what went wrong.
func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// sampler records the pool every 100 ms; the progress line reads the last
// sample while it runs.
type sampler struct {
	mu      sync.Mutex
	samples []PoolSample
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func startSampler(dir string, start time.Time) *sampler {
	s := &sampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			p := PoolSample{At: time.Since(start)}
			p.Bytes, _ = cgroupfs.ReadUint(dir, "memory.current")
			if ev, err := cgroupfs.ReadKV(dir, "memory.events"); err == nil {
				p.OOMKills = ev["oom_kill"]
			}
			p.Throttles, p.Frozen = subtreeEvents(dir)
			s.mu.Lock()
			s.samples = append(s.samples, p)
			s.mu.Unlock()
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) last() PoolSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return PoolSample{}
	}
	return s.samples[len(s.samples)-1]
}

// stop ends the sampling and returns the samples.
func (s *sampler) stop() []PoolSample {
	s.once.Do(func() { close(s.quit) })
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// subtreeEvents sums memory.events "high" of the containers in the pool
// (their own memory.high, arm c, and their tool calls', arm d) and counts the
// frozen tool calls.
func subtreeEvents(pool string) (throttles uint64, frozen int) {
	containers, _ := os.ReadDir(pool)
	for _, c := range containers {
		if !c.IsDir() {
			continue
		}
		dir := filepath.Join(pool, c.Name())
		if ev, err := cgroupfs.ReadKV(dir, "memory.events"); err == nil {
			throttles += ev["high"]
		}
		t := tree.Tree{Dir: dir}
		calls, _ := t.Calls()
		for _, id := range calls {
			if v, err := cgroupfs.ReadUint(t.CallDir(id), "cgroup.freeze"); err == nil && v == 1 {
				frozen++
			}
		}
	}
	return throttles, frozen
}
