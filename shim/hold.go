package shim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/pkg/sys/reaper"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/agentcgroup/agentcgroup/exechold"
)

// holdSocket is the listener socket's name in the container's state folder
// (short: a unix socket path has at most 107 bytes).
const holdSocket = "hold.sock"

// prepareHold makes the container's execve calls wait for placement: it
// serves the socket and adds the notify rule to the bundle's config.json
// before the runtime reads it. Where the runtime cannot notify, or the
// container's seccomp profile would mean something else with the rule, it
// returns nil and the shim places each forked call after its program has
// started, saying why in the log.
func (s *service) prepareHold(ctx context.Context, spec *specs.Spec, bundle, dir, runtime string) *exechold.Listener {
	if err := s.runtimeNotifies(runtime); err != nil {
		s.holdWarnOnce.Do(func() {
			log.G(ctx).WithError(err).Warn("no exec hold: forked tool calls are placed after their program has started")
		})
		return nil
	}
	l, err := listenHold(spec, bundle, filepath.Join(dir, holdSocket))
	if err != nil {
		log.G(ctx).WithError(err).Warn("no exec hold for this container: forked tool calls are placed after their program has started")
		return nil
	}
	return l
}

// listenHold adds the rule to the spec, serves the socket and writes the
// bundle's config.json; on error nothing of it is left.
func listenHold(spec *specs.Spec, bundle, socket string) (*exechold.Listener, error) {
	if err := exechold.Configure(spec, socket); err != nil {
		return nil, err
	}
	l, err := exechold.Listen(socket)
	if err != nil {
		return nil, err
	}
	if err := writeSpec(bundle, spec); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// runtimeNotifies says whether the OCI runtime can send a seccomp listener.
// A yes is kept in the state root, keyed by the runtime's path, size and
// modification time: each container has its own shim, and an exec of the
// runtime costs as much as a short tool call. A no is asked again.
func (s *service) runtimeNotifies(runtime string) error {
	fi, err := os.Stat(runtime)
	if err != nil {
		return err
	}
	key := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", runtime, fi.Size(), fi.ModTime().UnixNano()))
	known := filepath.Join(s.stateRoot, ".runtimes", hex.EncodeToString(key[:8])+".notify")
	if _, err := os.Stat(known); err == nil {
		return nil
	}
	if err := probeNotify(runtime, s.output); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(known), 0o700); err == nil {
		_ = os.WriteFile(known, nil, 0o600)
	}
	return nil
}

// probeNotify asks the runtime: `features` (runc 1.1+, crun 1.9+), or for
// an older crun the build flags its version prints. output runs a command
// and returns its stdout.
func probeNotify(runtime string, output func(*exec.Cmd) ([]byte, error)) error {
	out, err := output(exec.Command(runtime, "features"))
	if err != nil {
		v, verr := output(exec.Command(runtime, "--version"))
		if verr == nil && strings.Contains(string(v), "+SECCOMP") {
			return nil // crun before `features`: notify since 0.19
		}
		return fmt.Errorf("%s features: %w", runtime, err)
	}
	var f features.Features
	if err := json.Unmarshal(out, &f); err != nil {
		return fmt.Errorf("parse %s features: %w", runtime, err)
	}
	if f.Linux == nil || f.Linux.Seccomp == nil || f.Linux.Seccomp.Enabled == nil || !*f.Linux.Seccomp.Enabled {
		return errors.New(runtime + " is built without seccomp")
	}
	if !slices.Contains(f.Linux.Seccomp.Actions, string(specs.ActNotify)) {
		return errors.New(runtime + " has no SCMP_ACT_NOTIFY")
	}
	return nil
}

// reaped runs cmd and returns its stdout. In the shim, containerd's reaper
// waits for every child (any pid), so a plain Cmd.Wait would race it and
// now and then fail with ECHILD; the reaper hands the exit status over.
func reaped(cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	ec, err := reaper.Default.Start(cmd)
	if err != nil {
		return nil, err
	}
	status, err := reaper.Default.Wait(cmd, ec)
	if err != nil {
		return nil, err
	}
	if status != 0 {
		return nil, fmt.Errorf("exit status %d", status)
	}
	return out.Bytes(), nil
}

func writeSpec(bundle string, spec *specs.Spec) error {
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	p := filepath.Join(bundle, "config.json")
	if err := os.WriteFile(p+".agentcgroup", b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(p+".agentcgroup", p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
