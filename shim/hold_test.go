package shim

import (
	"os"
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
			err := probeNotify(rt)
			if tc.err == "" && err != nil {
				t.Fatalf("want notify support, got %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want one saying %q", err, tc.err)
			}
		})
	}
}
