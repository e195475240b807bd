package shim

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

func testService(t *testing.T) *service {
	root := t.TempDir()
	return &service{
		configPath: filepath.Join(t.TempDir(), "none.toml"),
		stateRoot:  root,
		links:      newRuntimeLinks("/usr/bin/agentcgroup-oci-runtime"),
		detector:   newSharedDetector(t.TempDir(), root),
	}
}

// writeBundle writes spec as a bundle's config.json.
func writeBundle(t *testing.T, spec *specs.Spec) string {
	bundle := t.TempDir()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}

// TestNewCreationNotCarved: a pod's sandbox and a container with detect=off
// are validated and created as under the runc shim, with nothing of
// agentcgroup prepared; a systemd cgroupsPath turns SystemdCgroup on. An
// invalid annotation fails before anything exists.
func TestNewCreationNotCarved(t *testing.T) {
	s := testService(t)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	for _, annotations := range []map[string]string{
		{criContainerType: "sandbox"},
		{policy.AnnotationDetect: string(policy.DetectOff)},
	} {
		spec := &specs.Spec{Annotations: annotations, Linux: &specs.Linux{CgroupsPath: "system.slice:docker:c1"}}
		c, err := s.newCreation(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: writeBundle(t, spec)})
		if err != nil {
			t.Fatalf("%v: %v", annotations, err)
		}
		if c.dir != "" || c.det.hold != nil || c.det.loaded != nil {
			t.Errorf("%v: carved (%+v)", annotations, c)
		}
		if !c.opts.SystemdCgroup {
			t.Errorf("%v: SystemdCgroup off for a systemd cgroupsPath", annotations)
		}
	}
	spec := &specs.Spec{Annotations: map[string]string{policy.AnnotationPriority: "urgent"}}
	if _, err := s.newCreation(ctx, &taskAPI.CreateTaskRequest{ID: "c2", Bundle: writeBundle(t, spec)}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("invalid annotation: error %v, want InvalidArgument", err)
	}
	if entries, _ := os.ReadDir(s.stateRoot); len(entries) != 0 {
		t.Errorf("state left for containers not carved: %v", entries)
	}
}

// TestCreationAborted: a carved container's state folder and runtime link
// are prepared before the inner create, and a failed create removes them
// and releases its use of the detector only once its load is over.
func TestCreationAborted(t *testing.T) {
	runtime, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	s := testService(t)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	c := &creation{id: "c1", opts: &options.Options{BinaryName: "true"}}
	if err := s.prepareState(ctx, c, "/pool"); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(c.dir, state.RuntimeLink)
	if target, err := os.Readlink(link); err != nil || target != runtime {
		t.Fatalf("runtime link: %q, %v; want %s", target, err, runtime)
	}
	if c.opts.BinaryName != link || c.st.Runtime != runtime || c.st.Pool != "/pool" {
		t.Fatalf("inner create's runtime %s, state %+v", c.opts.BinaryName, c.st)
	}

	// A detector load still under way when the create fails.
	c.det.loaded = make(chan struct{})
	go func() {
		defer close(c.det.loaded)
		time.Sleep(10 * time.Millisecond)
		s.detector.mu.Lock()
		s.detector.users[c.id] = true // as acquire does
		s.detector.mu.Unlock()
	}()
	s.abortCreation(ctx, c)
	select {
	case <-c.det.loaded:
	default:
		t.Fatal("the create's cleanup did not wait for the detector's load")
	}
	if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state folder left: %v", err)
	}
	if rt := s.links.runtime(c.id); rt != "" {
		t.Errorf("runtime link %s left", rt)
	}
	if len(s.detector.users) != 0 {
		t.Errorf("detector users left: %v", s.detector.users)
	}
}
