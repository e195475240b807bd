//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	_ "github.com/containerd/containerd/v2/core/runtime" // registers the runtime-spec types with typeurl
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
)

// taskCall calls a method of a container's shim over ttrpc, as containerd
// does for task API calls that ctr has no command for (Update). containerd
// 1.6 speaks containerd.task.v2.Task, which is all its runc shim serves.
func (d *daemon) taskCall(t *testing.T, id, method string, req, resp any) {
	t.Helper()
	bundle := filepath.Join(d.dir, "state", "io.containerd.runtime.v2.task", namespace, id)
	// containerd 2.3+ keeps the address in bootstrap.json; older ones and
	// this shim write it to the address file.
	var boot struct{ Address string }
	b, err := os.ReadFile(filepath.Join(bundle, "address"))
	if err != nil {
		b, err = os.ReadFile(filepath.Join(bundle, "bootstrap.json"))
		if err == nil {
			err = json.Unmarshal(b, &boot)
			b = []byte(boot.Address)
		}
	}
	if err != nil {
		t.Fatalf("shim address of %s: %v", id, err)
	}
	conn, err := net.Dial("unix", strings.TrimPrefix(strings.TrimSpace(string(b)), "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	service := "containerd.task.v3.Task"
	if d.configVersion == 2 {
		service = "containerd.task.v2.Task"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Call(ctx, service, method, req, resp); err != nil {
		t.Fatalf("%s/%s on %s: %v", service, method, id, err)
	}
}

func (d *daemon) updateMemory(t *testing.T, id string, limit int64) {
	res, err := typeurl.MarshalAnyToProto(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	if err != nil {
		t.Fatal(err)
	}
	d.taskCall(t, id, "Update", &taskAPI.UpdateTaskRequest{ID: id, Resources: res}, &emptypb.Empty{})
}
