package shim

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbeNotify runs fake runtimes that answer `features` and `--version`
// as runc 1.1+, a runc built without seccomp, crun 1.8 and runc 1.0 do.
func TestProbeNotify(t *testing.T) {
	for _, tc := range []struct {
		name, script, err string
	}{
		{"runc with notify", `[ "$1" = features ] && echo '{"linux":{"seccomp":{"enabled":true,"actions":["SCMP_ACT_ALLOW","SCMP_ACT_NOTIFY"]}}}'`, ""},
		{"runc without seccomp", `[ "$1" = features ] && echo '{"linux":{"seccomp":{"enabled":false}}}'`, "built without seccomp"},
		{"old libseccomp", `[ "$1" = features ] && echo '{"linux":{"seccomp":{"enabled":true,"actions":["SCMP_ACT_ALLOW"]}}}'`, "has no SCMP_ACT_NOTIFY"},
		{"crun 1.8", `[ "$1" = --version ] && printf 'crun version 1.8.1\n+SYSTEMD +SECCOMP +EBPF\n' && exit 0; echo "unknown command $1" >&2; exit 1`, ""},
		{"runc 1.0", `[ "$1" = --version ] && echo 'runc version 1.0.3' && exit 0; echo "No help topic for '$1'" >&2; exit 3`, "features"},
		{"garbage", `echo '{not json'`, "parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := filepath.Join(t.TempDir(), "runtime")
			if err := os.WriteFile(rt, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			err := probeNotify(rt, (*exec.Cmd).Output)
			if tc.err == "" && err != nil {
				t.Fatalf("want notify support, got %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want one saying %q", err, tc.err)
			}
		})
	}
}

// TestRuntimeNotifiesCached: a yes is asked once per runtime binary; a
// changed binary is asked again, a no every time.
func TestRuntimeNotifiesCached(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	rt := filepath.Join(dir, "runc")
	write := func(actions string) {
		script := "#!/bin/sh\necho x >> " + calls + "\n" +
			`echo '{"linux":{"seccomp":{"enabled":true,"actions":[` + actions + `]}}}'` + "\n"
		if err := os.WriteFile(rt, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	asked := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "x")
	}
	s := &service{stateRoot: filepath.Join(dir, "state"), output: (*exec.Cmd).Output}
	write(`"SCMP_ACT_NOTIFY"`)
	for range 3 {
		if err := s.runtimeNotifies(rt); err != nil {
			t.Fatal(err)
		}
	}
	if n := asked(); n != 1 {
		t.Fatalf("runtime asked %d times for three containers, want once", n)
	}
	write(`"SCMP_ACT_ALLOW"`) // an upgrade (size and mtime change) that lost notify
	for range 2 {
		if err := s.runtimeNotifies(rt); err == nil {
			t.Fatal("a runtime without notify was taken for one with it")
		}
	}
	if n := asked(); n != 3 {
		t.Fatalf("runtime asked %d times, want 3 (once, then every time it says no)", n)
	}
}
