package runtimewrapper

import (
	"reflect"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/state"
)

func TestExecArgs(t *testing.T) {
	has := func(id string) bool { return id == "e1" }
	for _, tc := range []struct{ in, want string }{
		{ // go-runc's exec, as the runc shim runs it
			"--root /run/containerd/runc/default --log /b/log.json --log-format json exec --process /tmp/p.json --detach --pid-file /b/e1.pid t1",
			"--root /run/containerd/runc/default --log /b/log.json --log-format json exec --cgroup tools/e1 --process /tmp/p.json --detach --pid-file /b/e1.pid t1",
		},
		{
			"--systemd-cgroup --root /r exec --pid-file=/b/e1.pid --console-socket /s t1",
			"--systemd-cgroup --root /r exec --cgroup tools/e1 --pid-file=/b/e1.pid --console-socket /s t1",
		},
		{"--root exec create --bundle /b --pid-file /b/init.pid t1", "--root exec create --bundle /b --pid-file /b/init.pid t1"},
		{"--root /r exec --pid-file /b/e2.pid t1", "--root /r exec --pid-file /b/e2.pid t1"}, // no cgroup for e2
		{"--root /r exec --cgroup x --pid-file /b/e1.pid t1", "--root /r exec --cgroup x --pid-file /b/e1.pid t1"},
		{"--root /r exec --process p t1", "--root /r exec --process p t1"}, // no pid file
		{"--root /r delete --force t1", "--root /r delete --force t1"},
		{"--version", "--version"},
	} {
		got := execArgs(strings.Fields(tc.in), has)
		if want := strings.Fields(tc.want); !reflect.DeepEqual(got, want) {
			t.Errorf("execArgs(%q)\n got %q\nwant %q", tc.in, got, want)
		}
	}
}

func TestCrunPsJSON(t *testing.T) {
	crun := &state.Container{Runtime: "/usr/bin/crun", Cgroup: "/default/t1"}
	runc := &state.Container{Runtime: "/usr/sbin/runc", Cgroup: "/default/t1"}
	ps := strings.Fields("--root /run/containerd/runc/default --log /b/log.json --log-format json ps --format json t1")
	if !crunPsJSON(ps, crun) {
		t.Error("crun ps --format json not answered by the wrapper")
	}
	if crunPsJSON(ps, runc) {
		t.Error("runc ps taken over")
	}
	if crunPsJSON(strings.Fields("--root /r ps t1"), crun) {
		t.Error("table ps taken over")
	}
	if crunPsJSON(ps, &state.Container{Runtime: "/usr/bin/crun"}) {
		t.Error("ps of an uncarved container taken over")
	}
}
