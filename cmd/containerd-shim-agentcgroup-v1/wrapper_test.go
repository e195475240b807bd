package main

import (
	"reflect"
	"strings"
	"testing"
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
