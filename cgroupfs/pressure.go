package cgroupfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Pressure is the cumulative stall time of a PSI file (memory.pressure):
// Some is time in which at least one task of the cgroup was stalled, Full
// time in which all of them were.
type Pressure struct {
	Some, Full time.Duration
}

// ReadPressure reads the totals of dir/memory.pressure.
func ReadPressure(dir string) (Pressure, error) {
	b, err := readFile(dir, "memory.pressure")
	if err != nil {
		return Pressure{}, err
	}
	var p Pressure
	for _, line := range strings.Split(string(b), "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		_, total, ok := strings.Cut(rest, "total=")
		if !ok {
			continue
		}
		us, err := strconv.ParseUint(strings.Fields(total)[0], 10, 64)
		if err != nil {
			return Pressure{}, fmt.Errorf("parse %s line %q: %w", filepath.Join(dir, "memory.pressure"), line, err)
		}
		switch kind {
		case "some":
			p.Some = time.Duration(us) * time.Microsecond
		case "full":
			p.Full = time.Duration(us) * time.Microsecond
		}
	}
	return p, nil
}

// ReadMeminfo reads /proc/meminfo in kB: the host's memory, which bounds the
// cgroups without a limit of their own.
func ReadMeminfo() (map[string]uint64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if f := strings.Fields(v); ok && len(f) > 0 {
			if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out, nil
}
