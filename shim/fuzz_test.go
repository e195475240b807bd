package shim

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/agentcgroup/agentcgroup/policy"
)

// configSeeds are the config bodies of the unit tests and docs/configuration.md.
var configSeeds = []string{
	"",
	"BinaryName = \"crun\"\n",
	"SystemdCgroup = true\nRoot = \"/run/x\"\n",
	"BinaryName = \"/usr/bin/crun\"\nTypeUrl = \"x\"\n",
	"AllowedAnnotations = [\"io.agentcgroup.detect\"]\n[Policy]\ntool.memory.max = \"1Gi\"\n\"tool.memory.high\" = \"512Mi\"\ntool.pids.max = 128\npriority = \"low\"\n",
	"AllowedAnnotations = [\"io.agentcgroup.detect\", \"io.agentcgroup.tool.stall-timeout\"]\nPool = \"/kubepods.slice\"\n\n[Policy]\ntool.memory.max = \"1536Mi\"\npriority = \"normal\"\n",
	"AllowedAnnotations = []\n",
	"[Policy.tool.memory]\nhigh = \"75%\"\nmax = \"90%\"\n[Policy.agent]\nmemory = { low = \"256Mi\", high = \"max\" }\n",
	"[Policy]\ntool.stall-timeout = \"24h\"\ndetect = \"fork+exec\"\ntool.pids.max = \"max\"\n",
	"BinaryNmae = \"crun\"\n",
	"BinaryName = \n",
	"SystemdCgroup = \"yes\"\n",
	"[Policy]\ntool.memory.max = \"12X\"\n",
	"[Policy]\npriorty = \"low\"\n",
	"AllowedAnnotations = [\"io.agentcgroup.prio\"]\n",
	"[Policy]\ntool.memory.max = 1536\n",
	"[Policy]\ntool.pids.max = 128.0\n",
	"[Policy]\ntool.pids.max = 5000000\n",
	"[Policy]\npriority = true\n",
	"[Policy]\ndetect = [\"exec\"]\n",
	"[Policy]\ntool.stall-timeout = 1979-05-27\n",
	"[Policy]\ntool.memory.max = \"1Gi\"\n\"tool.memory.max\" = \"2Gi\"\n",
	"Pool = \"/../../etc\"\n",
	"Pool = \"kubepods.slice\"\n",
	"Policy = \"x\"\n",
	"[Policy]\n\"\" = \"1\"\n",
	"IoUid = -1\n",
}

// checkPolicy fails t unless p is within what the policy package accepts.
func checkPolicy(t *testing.T, p policy.Policy) {
	t.Helper()
	for _, l := range []policy.Limit{p.ToolMemoryHigh, p.ToolMemoryMax, p.AgentMemoryHigh, p.AgentMemoryMax, p.AgentMemoryLow} {
		if !l.IsMax() && !(l.Bytes >= policy.MinLimitBytes && l.Bytes <= policy.MaxLimitBytes && l.Percent == 0) &&
			!(l.Percent > 0 && l.Percent <= 100 && l.Bytes == 0) {
			t.Fatalf("limit %+v out of bounds in %+v", l, p)
		}
	}
	if p.ToolPidsMax != 0 && (p.ToolPidsMax < 8 || p.ToolPidsMax > policy.MaxToolPids) {
		t.Fatalf("ToolPidsMax %d", p.ToolPidsMax)
	}
	if p.StallTimeout < time.Second || p.StallTimeout > 24*time.Hour {
		t.Fatalf("StallTimeout %v", p.StallTimeout)
	}
	if !slices.Contains([]policy.Priority{policy.PriorityHigh, policy.PriorityNormal, policy.PriorityLow}, p.Priority) ||
		!slices.Contains([]policy.Detect{policy.DetectForkExec, policy.DetectExec, policy.DetectOff}, p.Detect) {
		t.Fatalf("priority %q, detect %q", p.Priority, p.Detect)
	}
}

// FuzzRuntimeOptions fuzzes what the shim makes of a create request's
// runtime options: a TOML config body, parsed alone and sent in
// runtimeoptions.v1.Options, and runtime options of any type and bytes.
func FuzzRuntimeOptions(f *testing.F) {
	dir := f.TempDir()
	def := filepath.Join(dir, "none.toml")
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(configSeeds[4]), 0o644); err != nil {
		f.Fatal(err)
	}
	anys := []*anypb.Any{
		{},
		{TypeUrl: "example.com/Nope", Value: []byte{1}},
	}
	for _, v := range []any{
		&options.Options{BinaryName: "runc", ShimCgroup: "/s"},
		&options.Options{BinaryName: "crun", SystemdCgroup: true, IoUid: 1000},
		&runtimeoptions.Options{ConfigPath: path},
		&runtimeoptions.Options{TypeUrl: "x", ConfigBody: []byte(configSeeds[3])},
		&runtimeoptions.Options{},
		&emptypb.Empty{},
	} {
		a, err := typeurl.MarshalAnyToProto(v)
		if err != nil {
			f.Fatal(err)
		}
		anys = append(anys, a)
	}
	for i, body := range configSeeds {
		a := anys[i%len(anys)]
		f.Add([]byte(body), a.GetTypeUrl(), a.GetValue())
	}

	f.Fuzz(func(t *testing.T, body []byte, typeURL string, value []byte) {
		// The body alone.
		c, err := parseConfig("body", body)
		var pol policy.Policy
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "config body: ") {
				t.Fatalf("%q: error %v is not an InvalidArgument naming the config", body, err)
			}
		} else {
			if pol, err = c.policy(nil); err != nil {
				t.Fatalf("%q: parsed, but its policy fails: %v", body, err)
			}
			checkPolicy(t, pol)
			// Written back as TOML, the config reads as the same config.
			out, err := toml.Marshal(c)
			if err != nil {
				t.Fatalf("%q: marshal %+v: %v", body, c, err)
			}
			c2, err := parseConfig("again", out)
			if err != nil {
				t.Fatalf("%q written as %q does not parse: %v", body, out, err)
			}
			pol2, err := c2.policy(nil)
			if err != nil || pol2 != pol || !proto.Equal(c2.runcOptions(), c.runcOptions()) || c2.Pool != c.Pool ||
				(c.AllowedAnnotations == nil) != (c2.AllowedAnnotations == nil) ||
				(c.AllowedAnnotations != nil && !slices.Equal(*c.AllowedAnnotations, *c2.AllowedAnnotations)) {
				t.Fatalf("%q written as %q reads as another config: %+v, %v", body, out, c2, err)
			}
		}

		// The body as CRI sends it: the same config, or the same error.
		ro, cfg, rerr := runtimeOptions(mustAny(t, &runtimeoptions.Options{ConfigBody: body}), def)
		switch empty := len(strings.TrimSpace(string(body))) == 0; {
		case empty && (rerr != nil || !proto.Equal(ro, &options.Options{})):
			t.Fatalf("%q: an empty body without a default file: %v, %v", body, ro, rerr)
		case !empty && (rerr == nil) != (c != nil):
			t.Fatalf("%q: parseConfig %v, runtimeOptions %v", body, err, rerr)
		case !empty && rerr == nil && !proto.Equal(ro, c.runcOptions()):
			t.Fatalf("%q: runc options %v, want %v", body, ro, c.runcOptions())
		}
		if rerr == nil {
			if p, err := cfg.policy(nil); err != nil || (c != nil && p != pol) {
				t.Fatalf("%q: policy %+v, %v", body, p, err)
			}
		}

		// Runtime options of any type and content.
		a := &anypb.Any{TypeUrl: typeURL, Value: value}
		if v, err := typeurl.UnmarshalAny(a); err == nil {
			// Read no file of this host but the one made above.
			if o, ok := v.(*runtimeoptions.Options); ok && len(strings.TrimSpace(string(o.ConfigBody))) == 0 && o.ConfigPath != "" && o.ConfigPath != path {
				return
			}
		}
		ro, cfg, err = runtimeOptions(a, def)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("options %q %x: error %v is not InvalidArgument", typeURL, value, err)
			}
			return
		}
		if ro == nil || cfg == nil {
			t.Fatalf("options %q %x: runc options %v, config %v", typeURL, value, ro, cfg)
		}
		p, err := cfg.policy(nil)
		if err != nil {
			t.Fatalf("options %q %x: accepted, but the policy fails: %v", typeURL, value, err)
		}
		checkPolicy(t, p)
	})
}
