// Package runtimewrapper is the OCI runtime that agentcgroup gives the runc
// shim it wraps (as BinaryName): linked as <state folder>/oci-runtime, it
// runs the real runc or crun, adding to `exec` the tool call's cgroup.
// It runs for every runtime call, so it imports as little as it can:
// cmd/agentcgroup-oci-runtime is it alone, a program whose start costs
// a fraction of the shim binary's.
package runtimewrapper

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/tree/layout"
)

// Run runs the real OCI runtime in place of this process (argv[0] is the
// link in the container's state folder); it returns only when it answered
// itself (nil) or failed. The runc shim never passes `exec --cgroup`, which
// both runc and crun have; this wrapper adds it, so that an exec's first
// instruction already runs in its tool-call cgroup. Everything else passes
// through unchanged.
func Run(argv []string) error {
	st, err := state.Load(filepath.Dir(argv[0]))
	if err != nil {
		return err
	}
	if crunPsJSON(argv[1:], st) {
		return psJSON(st.Cgroup)
	}
	args := execArgs(argv[1:], func(execID string) bool {
		if st.Cgroup == "" {
			return false
		}
		_, err := os.Stat(filepath.Join(cgroupfs.Path(st.Cgroup), layout.CallCgroup(execID)))
		return err == nil
	})
	return fmt.Errorf("exec %s: %w", st.Runtime, unix.Exec(st.Runtime, append([]string{st.Runtime}, args...), os.Environ()))
}

// globalValueFlags are the runtime's global flags that take a separate value.
var globalValueFlags = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

// subcommand returns the index of the runtime subcommand in args, or -1.
func subcommand(args []string) int {
	for i := 0; i < len(args); i++ {
		if !strings.HasPrefix(args[i], "-") {
			return i
		}
		if globalValueFlags[args[i]] {
			i++
		}
	}
	return -1
}

// crunPsJSON reports whether args are `ps --format json` for crun on a
// carved container: crun 1.8 crashes (SIGSEGV) listing a container whose
// processes are in sub-cgroups, so the wrapper answers instead.
func crunPsJSON(args []string, st *state.Container) bool {
	sub := subcommand(args)
	if st.Cgroup == "" || filepath.Base(st.Runtime) != "crun" || sub < 0 || args[sub] != "ps" {
		return false
	}
	rest := strings.Join(args[sub+1:], " ")
	return strings.Contains(rest, "--format json") || strings.Contains(rest, "--format=json") || strings.Contains(rest, "-f json")
}

// psJSON prints what `runc ps --format json` prints: the pids of every
// process in the container's cgroup and below.
func psJSON(group string) error {
	pids, err := cgroupfs.ProcsBelow(cgroupfs.Path(group))
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(pids)
}

// execArgs adds `--cgroup tools/<execID>` to an `exec` command line when the
// exec's cgroup exists; the exec ID is the runc shim's pid file name,
// <bundle>/<execID>.pid.
func execArgs(args []string, hasCgroup func(execID string) bool) []string {
	sub := subcommand(args)
	if sub < 0 || args[sub] != "exec" {
		return args
	}
	var pidFile string
	for i := sub + 1; i < len(args); i++ {
		if v, ok := strings.CutPrefix(args[i], "--pid-file="); ok {
			pidFile = v
		} else if args[i] == "--pid-file" && i+1 < len(args) {
			pidFile = args[i+1]
		} else if args[i] == "--cgroup" || strings.HasPrefix(args[i], "--cgroup=") {
			return args // the caller chose one
		}
	}
	execID, ok := strings.CutSuffix(filepath.Base(pidFile), ".pid")
	if pidFile == "" || !ok || !hasCgroup(execID) {
		return args
	}
	out := make([]string, 0, len(args)+2)
	out = append(out, args[:sub+1]...)
	out = append(out, "--cgroup", layout.CallCgroup(execID))
	return append(out, args[sub+1:]...)
}
