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

// SetFrozen freezes or thaws every process in dir (cgroup.freeze). The
// kernel completes the freeze asynchronously; cgroup.events "frozen 1" says
// when it has.
func SetFrozen(dir string, frozen bool) error {
	v := "0"
	if frozen {
		v = "1"
	}
	return WriteString(dir, "cgroup.freeze", v)
}

// Frozen reports cgroup.events "frozen".
func Frozen(dir string) (bool, error) {
	kv, err := ReadKV(dir, "cgroup.events")
	if err != nil {
		return false, err
	}
	return kv["frozen"] == 1, nil
}

// Kill kills every process in dir and below (cgroup.kill).
func Kill(dir string) error { return WriteString(dir, "cgroup.kill", "1") }

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
