// Package state is what a shim keeps on disk for each container, under
// /run/agentcgroup/<namespace>/<id>: enough for `containerd-shim-agentcgroup-v1
// delete` to tear down after a crash, for the OCI runtime wrapper to find the
// real runtime, and for `agentcgroup ps` to list tool calls.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/agentcgroup/agentcgroup/toolcall"
)

// DefaultRoot holds one folder per namespace and container.
const DefaultRoot = "/run/agentcgroup"

const (
	containerFile = "container.json"
	recordsFile   = "records.json"
	tallyFile     = "tally.json"
	// RuntimeLink is the OCI runtime the runc shim is given as BinaryName: a
	// link to the real runtime, or, while a call that needs it runs, to the
	// runtime wrapper (agentcgroup-oci-runtime, else the shim binary, which
	// runs as the wrapper under that name).
	RuntimeLink = "oci-runtime"
)

// Dir is the state folder of one container.
func Dir(root, namespace, id string) string { return filepath.Join(root, namespace, id) }

// List returns the state folders of every container under root.
func List(root string) []string {
	dirs, _ := filepath.Glob(filepath.Join(root, "*", "*"))
	out := dirs[:0]
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// PoolLock is the file whose flock the shims of one pool share: each pool
// its own, so that a busy pool slows no other.
func PoolLock(root, pool string) string {
	return filepath.Join(root, "pool-"+url.PathEscape(pool)+".lock")
}

// Tally is what the other shims of a container's pool read of it: its
// priority and how many of its tool calls run and wait frozen now. Its shim
// replaces it as they change, so that a pool's decision reads one small
// file per member, not every call's cgroup.
type Tally struct {
	Pool     string `json:"pool"`
	Priority string `json:"priority"`
	Running  int    `json:"running"`
	Frozen   int    `json:"frozen"`
}

// SaveTally replaces the container's tally.
func SaveTally(dir string, t Tally) error { return writeJSON(filepath.Join(dir, tallyFile), t) }

// LoadTally reads the container's tally.
func LoadTally(dir string) (Tally, error) {
	var t Tally
	err := readJSON(filepath.Join(dir, tallyFile), &t)
	return t, err
}

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
	// Init is the container's main program as the OCI spec gives it.
	Init []string `json:"init,omitempty"`
	// Agent lists the processes taken for the agent beside init, and why.
	Agent []AgentProcess `json:"agent,omitempty"`
}

// AgentProcess is a process the shim took for the agent, never a tool call.
type AgentProcess struct {
	Pid     uint32   `json:"pid"`
	Command []string `json:"command"`
	Why     string   `json:"why"`
}

// writeJSON replaces path atomically, so a reader never sees half a file.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
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

// Save writes the container's state into dir, creating it. Only root reads
// the state: records hold command lines, which can hold secrets.
func Save(dir string, c *Container) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, containerFile), c)
}

// LinkRuntime links the runtime the runc shim runs (the real runtime, or
// the OCI runtime wrapper program) into dir, creating dir. It replaces a
// link by rename, so that a runtime call never finds none.
func LinkRuntime(dir, runtime string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	link := filepath.Join(dir, RuntimeLink)
	tmp := link + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(runtime, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
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
func SaveRecords(dir string, recs []toolcall.Record) error {
	return writeJSON(filepath.Join(dir, recordsFile), recs)
}

// LoadRecords reads the container's tool-call records; none yet is not an error.
func LoadRecords(dir string) ([]toolcall.Record, error) {
	var recs []toolcall.Record
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
