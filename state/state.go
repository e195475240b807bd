// Package state is what a shim keeps on disk for each container, under
// /run/agentcgroup/<namespace>/<id>: enough for `containerd-shim-agentcgroup-v1
// delete` to tear down after a crash, for the OCI runtime wrapper to find the
// real runtime, and for `agentcgroup ps` to list tool calls.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// DefaultRoot holds one folder per namespace and container.
const DefaultRoot = "/run/agentcgroup"

const (
	containerFile = "container.json"
	recordsFile   = "records.json"
	// RuntimeLink is the OCI runtime the runc shim is given as BinaryName: a
	// link to the shim binary, which runs as a runtime wrapper under that name.
	RuntimeLink = "oci-runtime"
)

// Dir is the state folder of one container.
func Dir(root, namespace, id string) string { return filepath.Join(root, namespace, id) }

// Container is what is known once the container's cgroup is carved.
type Container struct {
	Namespace string `json:"namespace"`
	ID        string `json:"id"`
	// Runtime is the absolute path of the real OCI runtime (runc, crun).
	Runtime string `json:"runtime"`
	// Cgroup is the container's cgroup C, relative to the cgroup2 mount
	// (e.g. /default/t1); empty until the tree is carved.
	Cgroup string `json:"cgroup,omitempty"`
	// Priority and Pool are what the other shims of the pool read to decide
	// whose tool calls freeze first under the pool's memory pressure.
	Priority string `json:"priority,omitempty"`
	Pool     string `json:"pool,omitempty"`
}

// Record is one tool call, as `agentcgroup ps` shows it.
type Record struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"` // exec, or fork for calls the detector found
	Command []string `json:"command"`
	Pid     uint32   `json:"pid"`
	// Cgroup is the tool call's cgroup, relative to the cgroup2 mount.
	Cgroup           string     `json:"cgroup"`
	Start            time.Time  `json:"start"`
	End              *time.Time `json:"end,omitempty"`
	State            string     `json:"state"`
	ExitCode         *uint32    `json:"exit_code,omitempty"`
	MemoryPeakBytes  uint64     `json:"memory_peak_bytes"`
	MemoryHighEvents uint64     `json:"memory_high_events"`
	MemoryMaxEvents  uint64     `json:"memory_max_events"`
	OOMKills         uint64     `json:"oom_kills"`
	// PlacedAfterUs is, for a fork-detected call, how long after its fork it
	// was in its own cgroup; memory it charged before stays with C/agent.
	PlacedAfterUs int64 `json:"placed_after_us,omitempty"`
	// StartedUnplaced says that a fork-detected call's program started in
	// C/agent (no exec hold), so that what it touched until PlacedAfterUs
	// stays charged there.
	StartedUnplaced  bool    `json:"started_unplaced,omitempty"`
	ThrottledSeconds float64 `json:"throttled_seconds"`
	FrozenSeconds    float64 `json:"frozen_seconds"`
	// Freezes counts how often the call was frozen; FreezeLatencyUs is the
	// last one's time from the pressure notification to frozen.
	Freezes         int   `json:"freezes,omitempty"`
	FreezeLatencyUs int64 `json:"freeze_latency_us,omitempty"`
	// Reason says why a killed or oom-killed call died, with its peak and
	// the limit it met, as the agent is told.
	Reason string `json:"reason,omitempty"`
}

// Tool call states.
const (
	Running   = "running"
	Throttled = "throttled"
	Frozen    = "frozen"
	Exited    = "exited"
	OOMKilled = "oom-killed"
	Killed    = "killed"
)

// Measure reads the call's memory figures from its cgroup, where it still
// is, and returns the memory.events it read (zero if it could not).
func (r *Record) Measure() cgroupfs.MemoryEvents {
	dir := cgroupfs.Path(r.Cgroup)
	if peak, err := cgroupfs.ReadUint(dir, "memory.peak"); err == nil {
		r.MemoryPeakBytes = peak
	}
	ev, err := cgroupfs.ReadMemoryEvents(dir)
	if err == nil {
		r.MemoryHighEvents, r.MemoryMaxEvents, r.OOMKills = ev.High, ev.Max, ev.OOMKill
	}
	return ev
}

// writeJSON replaces path atomically, so a reader never sees half a file.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// Save writes the container's state into dir, creating it.
func Save(dir string, c *Container) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, containerFile), c)
}

// Load reads the container's state from dir.
func Load(dir string) (*Container, error) {
	var c Container
	if err := readJSON(filepath.Join(dir, containerFile), &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// SaveRecords replaces the container's tool-call records.
func SaveRecords(dir string, recs []Record) error {
	return writeJSON(filepath.Join(dir, recordsFile), recs)
}

// LoadRecords reads the container's tool-call records; none yet is not an error.
func LoadRecords(dir string) ([]Record, error) {
	var recs []Record
	err := readJSON(filepath.Join(dir, recordsFile), &recs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return recs, err
}

// Remove deletes the container's state folder, and the namespace folder
// when it was the last container in it.
func Remove(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	_ = os.Remove(filepath.Dir(dir)) // fails while other containers remain
	return nil
}
