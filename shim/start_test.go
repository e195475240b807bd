package shim

import (
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestParseFlags(t *testing.T) {
	f, err := ParseFlags([]string{"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock",
		"-publish-binary", "/usr/bin/containerd", "-id", "abc", "-debug", "start"})
	if err != nil {
		t.Fatal(err)
	}
	if f != (Flags{Namespace: "k8s.io", ID: "abc", Address: "/run/containerd/containerd.sock", Debug: true, Action: "start"}) {
		t.Errorf("got %+v", f)
	}
	if f, _ := ParseFlags([]string{"-namespace", "n", "-id", "x", "-address", "a"}); f.Action != "" {
		t.Errorf("serve mode parsed as action %q", f.Action)
	}
}

func TestBootstrapParams(t *testing.T) {
	f := Flags{Namespace: "default", ID: "t1", Address: "/c.sock"}
	opts, _ := anypb.New(&options.Options{BinaryName: "crun"})

	// containerd 2.3+: protobuf BootstrapParams.
	want := &bootapi.BootstrapParams{InstanceID: "t1", Namespace: "default", ContainerdGrpcAddress: "/g.sock",
		ContainerdTtrpcAddress: "/t.sock", SocketDir: proto.String("/run/s")}
	_ = want.AddExtension(opts)
	in, _ := proto.Marshal(want)
	got, err := bootstrapParams(f, in, "/ignored")
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("bootstrap: %v, %v", got, err)
	}

	// containerd 1.6-2.2: the options Any on stdin, addresses from flag and env.
	in, _ = proto.Marshal(opts)
	got, err = bootstrapParams(f, in, "/t.sock")
	if err != nil {
		t.Fatal(err)
	}
	var o options.Options
	if found, err := got.FindExtension(&o); !found || err != nil || o.BinaryName != "crun" {
		t.Errorf("legacy options extension: %v %v %+v", found, err, &o)
	}
	if got.InstanceID != "t1" || got.Namespace != "default" || got.ContainerdGrpcAddress != "/c.sock" || got.ContainerdTtrpcAddress != "/t.sock" {
		t.Errorf("legacy params %+v", got)
	}

	// Nothing on stdin (ctr, nerdctl).
	if got, err = bootstrapParams(f, nil, "/t.sock"); err != nil || len(got.Extensions) != 0 || got.InstanceID != "t1" {
		t.Errorf("empty stdin: %+v, %v", got, err)
	}

	// Bootstrap parameters for another container are not taken as ours.
	other := &bootapi.BootstrapParams{InstanceID: "t2", Namespace: "default"}
	in, _ = proto.Marshal(other)
	if got, err = bootstrapParams(f, in, ""); err != nil || got.InstanceID != "t1" {
		t.Errorf("mismatched bootstrap params: %+v, %v", got, err)
	}

	if _, err := bootstrapParams(f, []byte{0xff, 0xff}, ""); err == nil {
		t.Error("garbage stdin accepted")
	}
}
