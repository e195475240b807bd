package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/replay"
)

// defaultTraces is where the project's checkout finds the shared traces.
const defaultTraces = "../shared/traces"

var replayCommand = &cli.Command{
	Name:  "replay",
	Usage: "replay real agent traces in N containers at once under one memory budget, in four arms, and compare",
	Description: `Each agent container runs the agent simulator (/bin/agentsim in --rootfs) on one trace
(round-robin over --traces), all under a pool cgroup whose memory.max is --budget:
(a) runc shim, pool limit only; (b) runc shim, memory.max = budget/N per container;
(c) runc shim, memory.high = budget/N; (d) agentcgroup with its default policy.
Writes table.md, pool.svg and results.json into --out; with --sweep N1,N2,... also
sweep.md and sweep.svg (the largest N per arm with no agent-framework kill).`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "address", Value: "/run/containerd/containerd.sock", Usage: "containerd's socket"},
		&cli.StringFlag{Name: "namespace", Value: "agentcgroup-replay", Usage: "containerd namespace of the agent containers"},
		&cli.StringFlag{Name: "traces", Usage: "folder of trace files (default " + defaultTraces + " when present)"},
		&cli.StringFlag{Name: "rootfs", Required: true, Usage: "root filesystem with /bin/agentsim and /bin/sh"},
		&cli.IntFlag{Name: "agents", Value: 8, Usage: "agent containers at once (N)"},
		&cli.StringFlag{Name: "budget", Value: "1536Mi", Usage: "the pool's memory.max"},
		&cli.Float64Flag{Name: "speed", Value: 10, Usage: "time compression of the traces"},
		&cli.Float64Flag{Name: "scale", Value: 0.5, Usage: "memory factor of the traces (fit the host)"},
		&cli.Int64Flag{Name: "seed", Value: 1, Usage: "seed of the agents' start offsets"},
		&cli.StringFlag{Name: "arms", Value: "a,b,c,d", Usage: "which arms to run"},
		&cli.StringFlag{Name: "pool", Value: "/agentcgroup-replay", Usage: "parent cgroup of the arms' pools"},
		&cli.StringFlag{Name: "sweep", Usage: "comma-separated numbers of agents to sweep at the fixed budget"},
		&cli.StringFlag{Name: "out", Value: "replay-results", Usage: "folder for the table, plots and raw results"},
		&cli.StringFlag{Name: "order", Value: replay.OrderName, Usage: "which traces the agents replay: name (file order) or peak (largest memory burst first)"},
		&cli.IntFlag{Name: "top", Usage: "replay only the first K traces in that order, each by several agents when N > K (0: all)"},
		&cli.StringFlag{Name: "policy", Usage: "arm (d) with these policy settings instead of the default, as in the shim config's Policy table (key=value,...; e.g. detect=exec)"},
		&cli.DurationFlag{Name: "bound", Usage: "time bound of one arm; agents still running then are reported unfinished (default: ten times the longest trace, compressed, plus a minute)"},
	},
	Action: runReplay,
}

func runReplay(c *cli.Context) error {
	traces := c.String("traces")
	if traces == "" {
		if _, err := os.Stat(defaultTraces); err != nil {
			return fmt.Errorf("--traces: no folder given and %s does not exist", defaultTraces)
		}
		traces = defaultTraces
	}
	traces, err := filepath.Abs(traces)
	if err != nil {
		return err
	}
	if _, _, err := replay.ListTraces(traces); err != nil {
		return err
	}
	budget, err := policy.ParseLimit(c.String("budget"))
	if err != nil || budget.Bytes == 0 {
		return fmt.Errorf("--budget %q: want a size such as 1536Mi or 2G", c.String("budget"))
	}
	arms, err := pickArms(c.String("arms"))
	if err != nil {
		return err
	}
	settings, err := parsePolicy(c.String("policy"))
	if err != nil {
		return err
	}
	for i := range arms {
		if arms[i].Name == "d" && len(settings) > 0 {
			arms[i].Label = "agentcgroup, policy " + c.String("policy")
		}
	}
	counts := []int{c.Int("agents")}
	if s := c.String("sweep"); s != "" {
		if counts, err = parseCounts(s); err != nil {
			return err
		}
	}
	if c.Float64("speed") <= 0 || c.Float64("scale") <= 0 {
		return fmt.Errorf("--speed and --scale must be positive")
	}
	cfg := replay.Config{
		Address: c.String("address"), Namespace: c.String("namespace"),
		Rootfs: c.String("rootfs"), Traces: traces,
		Budget: budget.Bytes, Speed: c.Float64("speed"), Scale: c.Float64("scale"), Seed: c.Int64("seed"),
		Pool: c.String("pool"), Progress: os.Stderr,
		Order: c.String("order"), Top: c.Int("top"), Timeout: c.Duration("bound"),
		Policy: settings,
	}
	if cfg.Top < 0 {
		return fmt.Errorf("--top %d: want 0 (all traces) or more", cfg.Top)
	}
	if o := cfg.Order; o != replay.OrderName && o != replay.OrderPeak {
		return fmt.Errorf("--order %q: want %s or %s", o, replay.OrderName, replay.OrderPeak)
	}
	out := c.String("out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var points []replay.SweepPoint
	var runs [][]*replay.ArmResult // one per number of agents
	var last []*replay.ArmResult
	for _, n := range counts {
		cfg.Agents = n
		last = nil
		for _, arm := range arms {
			fmt.Fprintf(os.Stderr, "arm (%s) %s: %d agents, budget %s\n", arm.Name, arm.Label, n, c.String("budget"))
			res, err := replay.Run(ctx, cfg, arm)
			if err != nil {
				return fmt.Errorf("arm %s with %d agents: %w", arm.Name, n, err)
			}
			last = append(last, res)
			points = append(points, replay.SweepPoint{Arm: arm.Name, Agents: n, Totals: res.Totals()})
		}
		runs = append(runs, last)
	}
	if err := writeResults(out, cfg, runs, points); err != nil {
		return err
	}
	replay.WriteTable(os.Stdout, last)
	fmt.Println()
	replay.WriteCosts(os.Stdout, last)
	if len(counts) > 1 {
		fmt.Println()
		replay.WriteSweep(os.Stdout, points, cfg.Budget)
	}
	fmt.Fprintf(os.Stderr, "results in %s\n", out)
	return nil
}

// writeResults writes the last number of agents' tables and plot, the raw
// results, and for a sweep every number's tables and the sweep's summary.
func writeResults(out string, cfg replay.Config, runs [][]*replay.ArmResult, points []replay.SweepPoint) error {
	last := runs[len(runs)-1]
	if err := writeTables(filepath.Join(out, "table.md"), cfg, [][]*replay.ArmResult{last}, nil); err != nil {
		return err
	}
	if err := replay.PlotPool(filepath.Join(out, "pool.svg"), last, cfg.Budget); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	raw, err := json.MarshalIndent(struct {
		Config replay.Config
		Runs   [][]*replay.ArmResult
		Sweep  []replay.SweepPoint
	}{cfg, runs, points}, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.json"), raw, 0o644); err != nil {
		return err
	}
	if len(runs) == 1 {
		return nil
	}
	if err := writeTables(filepath.Join(out, "sweep.md"), cfg, runs, points); err != nil {
		return err
	}
	return replay.PlotSweep(filepath.Join(out, "sweep.svg"), points)
}

// writeTables writes, for each number of agents, the arms' table and where
// their cost came from, then with points the sweep's summary.
func writeTables(path string, cfg replay.Config, runs [][]*replay.ArmResult, points []replay.SweepPoint) error {
	_, selected, err := replay.SelectTraces(cfg)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	traces := cfg.Traces
	if cfg.Top > 0 {
		traces = fmt.Sprintf("the first %d of %s", cfg.Top, traces)
	}
	for _, arms := range runs {
		n := len(arms[0].Agents)
		fmt.Fprintf(f, "%d agents, budget %.0f MiB, speed %gx, memory scale %g, traces %s in %s order\n\n",
			n, float64(cfg.Budget)/(1<<20), cfg.Speed, cfg.Scale, traces, cfg.Order)
		unfit, total := replay.Unfittable(selected, n, cfg.Scale, cfg.Budget)
		fmt.Fprintf(f, "%d of the %d tool calls cannot fit even alone (peak above the agent's baseline, plus every agent's baseline, over the budget): without swap, an arm that keeps every agent kills at least these.\n\n", unfit, total)
		replay.WriteTable(f, arms)
		fmt.Fprintln(f)
		replay.WriteCosts(f, arms)
		fmt.Fprintln(f)
	}
	if points != nil {
		replay.WriteSweep(f, points, cfg.Budget)
	}
	return f.Close()
}

func pickArms(s string) ([]replay.Arm, error) {
	var out []replay.Arm
	for _, name := range strings.Split(s, ",") {
		found := false
		for _, a := range replay.Arms {
			if a.Name == strings.TrimSpace(name) {
				out, found = append(out, a), true
			}
		}
		if !found {
			return nil, fmt.Errorf("--arms: unknown arm %q; the arms are a, b, c, d", name)
		}
	}
	return out, nil
}

// parsePolicy reads --policy's key=value pairs as annotations, validated as
// the shim resolves a container's annotations under a config without a
// Policy table or allow-list, so that a typo fails here and not in every
// create.
func parsePolicy(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("--policy: %q is not key=value", kv)
		}
		out[policy.Prefix+k] = v
	}
	if _, err := policy.Resolve(nil, nil, out); err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	return out, nil
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--sweep: %q is not a number of agents", f)
		}
		out = append(out, n)
	}
	return out, nil
}
