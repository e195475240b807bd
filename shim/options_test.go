package shim

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/agentcgroup/agentcgroup/policy"
)

func mustAny(t *testing.T, v any) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(v)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRuntimeOptions(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(def, []byte("BinaryName = \"crun\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.toml")
	if err := os.WriteFile(other, []byte("SystemdCgroup = true\nRoot = \"/run/x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		in   *anypb.Any
		want *options.Options
	}{
		"nil uses the default file": {nil, &options.Options{BinaryName: "crun"}},
		"runc options pass through": {mustAny(t, &options.Options{BinaryName: "runc", ShimCgroup: "/s"}), &options.Options{BinaryName: "runc", ShimCgroup: "/s"}},
		"ConfigPath":                {mustAny(t, &runtimeoptions.Options{ConfigPath: other}), &options.Options{SystemdCgroup: true, Root: "/run/x"}},
		"ConfigBody wins":           {mustAny(t, &runtimeoptions.Options{TypeUrl: "x", ConfigBody: []byte("BinaryName = \"/usr/bin/crun\"\nTypeUrl = \"x\"\n")}), &options.Options{BinaryName: "/usr/bin/crun"}},
		"empty runtimeoptions":      {mustAny(t, &runtimeoptions.Options{}), &options.Options{BinaryName: "crun"}},
	} {
		got, _, err := runtimeOptions(tc.in, def)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !proto.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
	if got, _, err := runtimeOptions(nil, filepath.Join(dir, "missing.toml")); err != nil || !proto.Equal(got, &options.Options{}) {
		t.Errorf("missing default file: %v, %v", got, err)
	}
}

func TestRuntimeOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "none.toml")
	for name, tc := range map[string]struct {
		in   *anypb.Any
		want string
	}{
		"unknown key":       {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("BinaryNmae = \"crun\"\n")}), "BinaryNmae"},
		"bad toml":          {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("BinaryName = \n")}), "config body"},
		"wrong type":        {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("SystemdCgroup = \"yes\"\n")}), "SystemdCgroup"},
		"missing path":      {mustAny(t, &runtimeoptions.Options{ConfigPath: filepath.Join(dir, "nope.toml")}), "nope.toml"},
		"unsupported type":  {mustAny(t, &emptypb.Empty{}), "google.protobuf.Empty"},
		"bad policy value":  {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("[Policy]\ntool.memory.max = \"12X\"\n")}), "io.agentcgroup.tool.memory.max=\"12X\""},
		"unknown policy":    {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("[Policy]\npriorty = \"low\"\n")}), "io.agentcgroup.priorty"},
		"unknown allowed":   {mustAny(t, &runtimeoptions.Options{ConfigBody: []byte("AllowedAnnotations = [\"io.agentcgroup.prio\"]\n")}), "io.agentcgroup.prio"},
		"unregistered type": {&anypb.Any{TypeUrl: "example.com/Nope", Value: []byte{1}}, "example.com/Nope"},
	} {
		_, _, err := runtimeOptions(tc.in, def)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %q", name, err, tc.want)
		}
		if name != "missing path" && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: err %v is not InvalidArgument", name, err)
		}
	}
}

func TestConfigPolicy(t *testing.T) {
	c, err := parseConfig("body", []byte(`
AllowedAnnotations = ["io.agentcgroup.detect"]
[Policy]
tool.memory.max = "1Gi"
"tool.memory.high" = "512Mi"
tool.pids.max = 128
priority = "low"
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.policy(map[string]string{"io.agentcgroup.detect": "exec"})
	if err != nil {
		t.Fatal(err)
	}
	if p.ToolMemoryMax.Bytes != 1<<30 || p.ToolMemoryHigh.Bytes != 512<<20 || p.ToolPidsMax != 128 || p.Priority != policy.PriorityLow || p.Detect != policy.DetectExec {
		t.Errorf("policy %+v", p)
	}
	if _, err := c.policy(map[string]string{"io.agentcgroup.priority": "high"}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("an annotation outside AllowedAnnotations: %v", err)
	}
	none, err := parseConfig("body", []byte("AllowedAnnotations = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.policy(map[string]string{"io.agentcgroup.detect": "off"}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("AllowedAnnotations = [] honoured an annotation: %v", err)
	}
}

func TestSystemdCgroupsPath(t *testing.T) {
	for p, want := range map[string]bool{
		"system.slice:docker:abc":                      true,
		"kubepods-besteffort.slice:cri-containerd:abc": true,
		":nerdctl:abc":                                 true,
		"/default/t1":                                  false,
		"/docker/abc":                                  false,
		"":                                             false,
		"a:b:c":                                        false,
		"system.slice:docker:":                         false,
	} {
		if got := systemdCgroupsPath(p); got != want {
			t.Errorf("systemdCgroupsPath(%q) = %v", p, got)
		}
	}
}

// A value in the config's Policy table must be a TOML string, as an
// annotation is (tool.pids.max may be an integer). Before, a bare number for
// a memory key was taken as bytes (1536: a 1.5 KB limit) and 128.0 as 128.
func TestConfigPolicyTypes(t *testing.T) {
	for body, want := range map[string][]string{
		"[Policy]\ntool.memory.max = 1536\n":          {"io.agentcgroup.tool.memory.max=\"1536\"", "bare TOML number would be bytes", `"1536Mi" or "1536M"`},
		"[Policy]\nagent.memory.low = 268435456\n":    {"io.agentcgroup.agent.memory.low=\"268435456\"", "bare TOML number"},
		"[Policy]\ntool.memory.high = 1.5\n":          {"io.agentcgroup.tool.memory.high=\"1.5\"", "bare TOML number"},
		"[Policy]\ntool.pids.max = 128.0\n":           {"io.agentcgroup.tool.pids.max=\"128\"", "TOML float", "an integer or a quoted string"},
		"[Policy]\ntool.pids.max = 5000000\n":         {"io.agentcgroup.tool.pids.max=\"5000000\"", "above 4194304"},
		"[Policy]\npriority = true\n":                 {"io.agentcgroup.priority=\"true\"", "TOML boolean, not a string", "high, normal, low"},
		"[Policy]\ndetect = [\"exec\"]\n":             {"io.agentcgroup.detect", "TOML array"},
		"[Policy]\ntool.stall-timeout = 1979-05-27\n": {"io.agentcgroup.tool.stall-timeout", "TOML date-time", "Go duration"},
		"[Policy]\ntool.stall-timeout = 300\n":        {"io.agentcgroup.tool.stall-timeout=\"300\"", "TOML integer, not a string"},
		// Which of the two won depended on map order.
		"[Policy]\ntool.memory.max = \"1Gi\"\n\"tool.memory.max\" = \"2Gi\"\n": {"io.agentcgroup.tool.memory.max", "set twice"},
	} {
		_, err := parseConfig("body", []byte(body))
		var ie *policy.InvalidError
		if !errors.As(err, &ie) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: err %v, want a policy.InvalidError", body, err)
			continue
		}
		for _, w := range append(want, "config body", "config Policy key") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not say %q", body, err, w)
			}
		}
	}
	c, err := parseConfig("body", []byte("[Policy]\ntool.pids.max = 4194304\ntool.memory.max = \"1536Mi\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.policy(nil); err != nil || p.ToolPidsMax != policy.MaxToolPids || p.ToolMemoryMax.Bytes != 1536<<20 {
		t.Errorf("policy %+v, %v", p, err)
	}
}

// Pool is compared as a string with cgroup paths as the kernel writes them
// and joined to the cgroup2 mount: only an absolute, clean path is taken.
func TestConfigPool(t *testing.T) {
	for _, p := range []string{"", "/", "/kubepods.slice", "/default", "/a..b"} {
		if _, err := parseConfig("body", []byte("Pool = "+strconv.Quote(p)+"\n")); err != nil {
			t.Errorf("Pool %q: %v", p, err)
		}
	}
	for _, p := range []string{"kubepods.slice", "/kubepods.slice/", "/../../etc", "/a/../b", "//a", "/a\nb"} {
		_, err := parseConfig("body", []byte("Pool = "+strconv.Quote(p)+"\n"))
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "Pool "+strconv.Quote(p)) {
			t.Errorf("Pool %q: err %v, want one naming it", p, err)
		}
	}
}

// A ConfigPath that is not a regular file fails at once: before, a FIFO
// blocked the shim's create for good and /dev/zero filled its memory.
func TestConfigPathNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, append([]byte("# "), bytes.Repeat([]byte("x"), 2<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{fifo: "not a regular file", dir: "not a regular file", big: "larger than"} {
		done := make(chan error, 1)
		go func() {
			_, _, err := runtimeOptions(mustAny(t, &runtimeoptions.Options{ConfigPath: p}), filepath.Join(dir, "none.toml"))
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), want) {
				t.Errorf("ConfigPath %s: err %v, want one naming it and saying %q", p, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("ConfigPath %s: still reading after 5s", p)
		}
	}
}

// TestWrapperBeside: the wrapper program beside the shim is linked when it
// is there and executable; else the shim binary itself.
func TestWrapperBeside(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "containerd-shim-agentcgroup-v1")
	if got := wrapperBeside(self); got != self {
		t.Errorf("no wrapper: %s, want the shim %s", got, self)
	}
	w := filepath.Join(dir, WrapperName)
	if err := os.WriteFile(w, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := wrapperBeside(self); got != self {
		t.Errorf("a wrapper that cannot run: %s, want the shim", got)
	}
	if err := os.Chmod(w, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := wrapperBeside(self); got != w {
		t.Errorf("wrapper %s, want %s", got, w)
	}
}
