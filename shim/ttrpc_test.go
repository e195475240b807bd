package shim

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
)

// fakeTasks answers State and Create; every other method is the embedded nil
// interface, which is never called here.
type fakeTasks struct{ taskAPI.TTRPCTaskService }

func (fakeTasks) State(_ context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	return &taskAPI.StateResponse{ID: r.ID, ExecID: r.ExecID, Pid: 42, Bundle: "/b/" + r.ID}, nil
}

func (fakeTasks) Create(_ context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	return nil, errgrpc.ToGRPC(errdefs.ErrInvalidArgument)
}

// TestBothTaskAPIs serves one implementation and calls it through the real
// generated v2 and v3 ttrpc clients, as containerd 1.6/1.7 and 2.x do.
func TestBothTaskAPIs(t *testing.T) {
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	if err := registerTaskService(srv, fakeTasks{}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	defer srv.Close()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	ctx := context.Background()

	v3, err := taskAPI.NewTTRPCTaskClient(client).State(ctx, &taskAPI.StateRequest{ID: "c", ExecID: "e"})
	if err != nil || v3.Pid != 42 || v3.Bundle != "/b/c" || v3.ExecID != "e" {
		t.Fatalf("v3 State = %v, %v", v3, err)
	}
	v2c := taskv2.NewTTRPCTaskClient(client)
	v2, err := v2c.State(ctx, &taskv2.StateRequest{ID: "c", ExecID: "e"})
	if err != nil || v2.Pid != 42 || v2.Bundle != "/b/c" || v2.ExecID != "e" {
		t.Fatalf("v2 State = %v, %v", v2, err)
	}
	_, err = v2c.Create(ctx, &taskv2.CreateTaskRequest{ID: "c"})
	if !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		t.Errorf("v2 Create error = %v, want InvalidArgument through the v2 name", err)
	}
}
