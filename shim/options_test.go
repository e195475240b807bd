package shim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
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
