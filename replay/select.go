package replay

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"

	"github.com/agentcgroup/agentcgroup/replay/trace"
)

// SelectTraces lists the traces of cfg.Traces in cfg.Order and keeps the
// first cfg.Top, as Run replays them.
func SelectTraces(cfg Config) ([]string, []*trace.Trace, error) {
	files, traces, err := ListTraces(cfg.Traces)
	if err != nil {
		return nil, nil, err
	}
	if err := OrderTraces(files, traces, cfg.Order); err != nil {
		return nil, nil, err
	}
	if cfg.Top > 0 && cfg.Top < len(traces) {
		files, traces = files[:cfg.Top], traces[:cfg.Top]
	}
	return files, traces, nil
}

// ListTraces loads every trace in dir, in name order, so that a broken file
// fails the run before any container starts.
func ListTraces(dir string) ([]string, []*trace.Trace, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("no trace files (*.json) in %s", dir)
	}
	traces := make([]*trace.Trace, len(files))
	for i, f := range files {
		if traces[i], err = trace.Load(f); err != nil {
			return nil, nil, err
		}
	}
	return files, traces, nil
}

// OrderTraces orders the traces as order says (see Config.Order).
func OrderTraces(files []string, traces []*trace.Trace, order string) error {
	switch order {
	case "", OrderName:
		return nil
	case OrderPeak:
		idx := make([]int, len(traces))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return peakMB(traces[idx[a]]) > peakMB(traces[idx[b]]) })
		f, t := slices.Clone(files), slices.Clone(traces)
		for i, j := range idx {
			files[i], traces[i] = f[j], t[j]
		}
		return nil
	}
	return fmt.Errorf("trace order %q: want %s or %s", order, OrderName, OrderPeak)
}

// peakMB is a trace's largest memory sample.
func peakMB(t *trace.Trace) float64 {
	peak := 0.0
	for _, s := range t.Samples {
		peak = max(peak, s.MemoryMB)
	}
	return peak
}
