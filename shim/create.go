package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/hooks"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

// creation is a container being created: what Create validated and prepared
// before the inner create, which the carve uses and a failed create undoes.
type creation struct {
	id, bundle string
	spec       *specs.Spec
	opts       *options.Options // for the inner create
	pol        policy.Policy
	// dir is the container's state folder, "" where its tree is not carved.
	dir string
	st  state.Container
	det detection
}

// detection is a container's fork+exec detection: the shared detector, which
// may still be loading, and the exec hold.
type detection struct {
	detector *bpf.Detector
	hold     *exechold.Listener
	// loaded is closed once the load in the background has set detector;
	// nil where the detector was acquired before the inner create.
	loaded chan struct{}
}

// wait returns the detector once its load is over; nil if it did not load.
func (d *detection) wait() *bpf.Detector {
	if d.loaded != nil {
		<-d.loaded
	}
	return d.detector
}

// newCreation validates container r's spec, runtime options and policy
// before anything of it exists and, where its tree is carved, saves its
// state, links its runtime and prepares its detection.
func (s *service) newCreation(ctx context.Context, r *taskAPI.CreateTaskRequest) (*creation, error) {
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, err
	}
	opts, config, err := runtimeOptions(r.Options, s.configPath)
	if err != nil {
		return nil, err
	}
	if !opts.SystemdCgroup && spec.Linux != nil && systemdCgroupsPath(spec.Linux.CgroupsPath) {
		opts.SystemdCgroup = true
	}
	pol, err := config.policy(spec.Annotations)
	if err != nil {
		return nil, err
	}
	c := &creation{id: r.ID, bundle: r.Bundle, spec: spec, opts: opts, pol: pol}
	if !s.carves(ctx, spec, pol) {
		return c, nil
	}
	if err := s.prepareState(ctx, c, config.Pool); err != nil {
		return nil, err
	}
	if pol.Detect == policy.DetectForkExec {
		s.prepareDetection(ctx, c)
	}
	return c, nil
}

func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("parse %s/config.json: %w", bundle, err)
	}
	return &spec, nil
}

// carves reports whether the container's tree is carved. A pod's sandbox
// (pause) container runs no agent: it is run as under the runc shim, as is
// every container on a host without agentcgroup's features.
func (s *service) carves(ctx context.Context, spec *specs.Spec, pol policy.Policy) bool {
	if pol.Detect == policy.DetectOff || isSandbox(spec) {
		return false
	}
	if err := hooks.Available(); err != nil {
		s.warnOnce.Do(func() {
			log.G(ctx).WithError(err).Warn("agentcgroup features are off on this host: containers run as under the runc shim")
		})
		return false
	}
	return true
}

// criContainerType is the annotation by which containerd's CRI plugin tells
// a pod's sandbox container ("sandbox") from its containers; its own
// package is internal to containerd.
const criContainerType = "io.kubernetes.cri.container-type"

func isSandbox(spec *specs.Spec) bool { return spec.Annotations[criContainerType] == "sandbox" }

// prepareState saves the state of container c, whose tree is carved, and
// has the inner create run its runtime through the link in its state folder.
func (s *service) prepareState(ctx context.Context, c *creation, pool string) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if c.st, err = s.prepareRuntime(ns, c.id, c.opts.BinaryName); err != nil {
		return err
	}
	c.st.Pool = pool
	c.dir = state.Dir(s.stateRoot, ns, c.id)
	c.opts.BinaryName = filepath.Join(c.dir, state.RuntimeLink)
	return nil
}

// prepareRuntime saves the container's state with the real OCI runtime and
// links that runtime into its state folder.
func (s *service) prepareRuntime(ns, id, binaryName string) (state.Container, error) {
	if binaryName == "" {
		binaryName = "runc"
	}
	runtime, err := exec.LookPath(binaryName)
	if err != nil {
		return state.Container{}, fmt.Errorf("OCI runtime BinaryName=%q: %v: %w", binaryName, err, errdefs.ErrInvalidArgument)
	}
	if runtime, err = filepath.Abs(runtime); err != nil {
		return state.Container{}, err
	}
	st := state.Container{Namespace: ns, ID: id, Runtime: runtime}
	dir := state.Dir(s.stateRoot, ns, id)
	if err := state.Save(dir, &st); err != nil {
		return st, err
	}
	if err := s.links.add(id, dir, runtime); err != nil {
		_ = state.Remove(dir)
		return st, err
	}
	return st, nil
}

// prepareDetection acquires the detector and prepares the hold for container
// c. Where the detector loaded before on this host, it loads while the
// runtime creates the container (loading its BPF programs is the longest
// step of a create) and the hold is prepared meanwhile: until the detector
// watches the container the hold lets every execve continue, and so it does
// for good should the load fail after all. Elsewhere the hold waits for the
// detector, which may not load.
func (s *service) prepareDetection(ctx context.Context, c *creation) {
	d := &c.det
	switch mayLoad, before := s.detector.mayLoad(); {
	case mayLoad && before:
		d.loaded = make(chan struct{})
		go func() {
			defer close(d.loaded)
			d.detector = s.detector.acquire(ctx, c.id)
		}()
		d.hold = s.prepareHold(ctx, c.spec, c.bundle, c.dir, c.st.Runtime)
	case mayLoad:
		if d.detector = s.detector.acquire(ctx, c.id); d.detector != nil {
			d.hold = s.prepareHold(ctx, c.spec, c.bundle, c.dir, c.st.Runtime)
		}
	}
}

// carve carves container c's tree while its init waits in `runc init`, and
// adds the container to the shim's. Where it fails, init is killed and the
// container deleted as runc knows it.
func (s *service) carve(ctx context.Context, c *creation, pid uint32) error {
	env := hooks.Env{Publisher: s.publisher, StateRoot: s.stateRoot}
	// Only parts that exist go in: a nil pointer in an interface is not nil.
	if d := c.det.wait(); d != nil {
		env.Detector = d
	}
	if c.det.hold != nil {
		env.Hold = c.det.hold
	}
	if g := s.loadGovernor(ctx); g != nil {
		env.Governor = g
	}
	if c.spec.Process != nil {
		c.st.Init = c.spec.Process.Args // whether init wraps the agent
	}
	hc, err := hooks.Create(ctx, c.dir, c.st, pid, c.pol, env)
	if err != nil {
		// Create's cleanup killed init; remove the container as runc knows it.
		if _, derr := s.TTRPCTaskService.Delete(ctx, &taskAPI.DeleteRequest{ID: c.id}); derr != nil {
			log.G(ctx).WithError(derr).Warn("delete container after failed carve")
		}
		return errgrpc.ToGRPC(fmt.Errorf("carve cgroup tree: %w", err))
	}
	s.mu.Lock()
	s.tasks[c.id] = hc
	s.mu.Unlock()
	return nil
}

// abortCreation undoes what a failed create left of container c: its hold,
// its use of the detector (once the load is over), its runtime link and its
// state.
func (s *service) abortCreation(ctx context.Context, c *creation) {
	c.det.wait()
	if c.det.hold != nil {
		c.det.hold.Close()
	}
	s.detector.release(ctx, c.id)
	if c.dir != "" {
		s.links.remove(c.id)
		_ = state.Remove(c.dir)
	}
}
