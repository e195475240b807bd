package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/governor"
	"github.com/agentcgroup/agentcgroup/hooks"
	"github.com/agentcgroup/agentcgroup/policy"
	"github.com/agentcgroup/agentcgroup/state"
)

// service decorates the runc shim's task service: every call goes to it, and
// Create, Exec, Start and Delete also shape the container's cgroup tree.
type service struct {
	taskAPI.TTRPCTaskService

	configPath string
	stateRoot  string
	// links is each carved container's runtime link: the real runtime,
	// the wrapper while an exec starts.
	links *runtimeLinks
	// output runs a command and returns its stdout (reaped, in the shim).
	output    func(*exec.Cmd) ([]byte, error)
	publisher events.Publisher

	warnOnce     sync.Once
	holdWarnOnce sync.Once
	mu           sync.Mutex
	tasks        map[string]*hooks.Container
	// detector is loaded for the first container that asks for fork+exec
	// detection and closed when the last of its users (by container ID) is
	// deleted; a failure to load it is said in the log and tried again
	// after detectorRetry.
	detector       *bpf.Detector
	detectorUsers  map[string]bool
	detectorFailed time.Time
	// releasing counts the detectors still closing in the background; the
	// shim exits after them (waitReleases).
	releasing sync.WaitGroup
	// pinRoot is where the host's shared detector is pinned (bpf.PinRoot).
	pinRoot string
	// governor is the graduated response of every container of the shim,
	// started with the first one.
	governor *governor.Watcher
}

// WrapperName is the OCI runtime wrapper's program, installed beside the
// shim. It runs for every runtime call, and starts in a fraction of the
// time the shim binary takes; without it the shim binary is the wrapper.
const WrapperName = "agentcgroup-oci-runtime"

// wrapperBeside returns the wrapper installed beside the shim binary self,
// else self.
func wrapperBeside(self string) string {
	w := filepath.Join(filepath.Dir(self), WrapperName)
	if fi, err := os.Stat(w); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return w
	}
	return self
}

func newService(inner taskAPI.TTRPCTaskService, publisher events.Publisher) (*service, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return &service{
		TTRPCTaskService: inner,
		configPath:       DefaultConfigPath,
		stateRoot:        state.DefaultRoot,
		pinRoot:          bpf.PinRoot,
		links:            newRuntimeLinks(wrapperBeside(self)),
		output:           reaped,
		publisher:        publisher,
		tasks:            make(map[string]*hooks.Container),
		detectorUsers:    make(map[string]bool),
	}, nil
}

// RegisterTTRPC serves the decorated service under both task API names.
func (s *service) RegisterTTRPC(srv *ttrpc.Server) error {
	return registerTaskService(srv, s)
}

func (s *service) container(id string) *hooks.Container {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tasks[id]
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

// Create validates the annotations and options before anything exists, runs
// the inner create (init waits in `runc init`), then carves the tree while
// nothing of the container has run yet.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	opts, config, err := runtimeOptions(r.Options, s.configPath)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if !opts.SystemdCgroup && spec.Linux != nil && systemdCgroupsPath(spec.Linux.CgroupsPath) {
		opts.SystemdCgroup = true
	}
	pol, err := config.policy(spec.Annotations)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	// A pod's sandbox (pause) container runs no agent: it is run as under
	// the runc shim.
	carve := pol.Detect != policy.DetectOff && !isSandbox(spec)
	if err := hooks.Available(); carve && err != nil {
		s.warnOnce.Do(func() {
			log.G(ctx).WithError(err).Warn("agentcgroup features are off on this host: containers run as under the runc shim")
		})
		carve = false
	}

	var dir string
	var st state.Container
	if carve {
		ns, err := namespaces.NamespaceRequired(ctx)
		if err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		if st, err = s.prepareRuntime(ns, r.ID, opts.BinaryName); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		st.Pool = config.Pool
		dir = state.Dir(s.stateRoot, ns, r.ID)
		opts.BinaryName = filepath.Join(dir, state.RuntimeLink)
		defer func() {
			if retErr != nil {
				s.links.remove(r.ID)
				_ = state.Remove(dir)
			}
		}()
	}
	// Where the detector loaded before on this host, it loads while the
	// runtime creates the container (loading its BPF programs is the
	// longest step of a create) and the hold is prepared meanwhile: until
	// the detector watches the container the hold lets every execve
	// continue, and so it does for good should the load fail after all.
	// Elsewhere the hold waits for the detector, which may not load.
	var d *bpf.Detector
	var hold *exechold.Listener
	var loaded chan struct{}
	if carve && pol.Detect == policy.DetectForkExec {
		switch mayLoad, before := s.detectorMayLoad(); {
		case mayLoad && before:
			loaded = make(chan struct{})
			go func() {
				defer close(loaded)
				d = s.acquireDetector(ctx, r.ID)
			}()
			hold = s.prepareHold(ctx, spec, r.Bundle, dir, st.Runtime)
		case mayLoad:
			if d = s.acquireDetector(ctx, r.ID); d != nil {
				hold = s.prepareHold(ctx, spec, r.Bundle, dir, st.Runtime)
			}
		}
	}
	defer func() {
		if retErr != nil {
			if loaded != nil {
				<-loaded
			}
			if hold != nil {
				hold.Close()
			}
			s.releaseDetector(ctx, r.ID)
		}
	}()
	if r.Options, err = typeurl.MarshalAnyToProto(opts); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp, err := s.TTRPCTaskService.Create(ctx, r)
	if err != nil || !carve {
		return resp, err
	}
	if loaded != nil {
		<-loaded
	}
	env := hooks.Env{Detector: d, Publisher: s.publisher, Hold: hold, Governor: s.loadGovernor(ctx), StateRoot: s.stateRoot}
	c, err := hooks.Create(ctx, dir, st, resp.Pid, pol, env)
	if err != nil {
		// Create's cleanup killed init; remove the container as runc knows it.
		if _, derr := s.TTRPCTaskService.Delete(ctx, &taskAPI.DeleteRequest{ID: r.ID}); derr != nil {
			log.G(ctx).WithError(derr).Warn("delete container after failed carve")
		}
		return nil, errgrpc.ToGRPC(fmt.Errorf("carve cgroup tree: %w", err))
	}
	s.mu.Lock()
	s.tasks[r.ID] = c
	s.mu.Unlock()
	return resp, nil
}

// detectorRetry is how long a shim whose detector failed to load waits
// before it tries again for a new container.
const detectorRetry = time.Minute

// detectorMayLoad reports whether the detector is loaded or may be tried
// (it did not fail to load within detectorRetry), and whether it loaded
// before, in this shim or another of the host.
func (s *service) detectorMayLoad() (mayLoad, before bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detector != nil {
		return true, true
	}
	return time.Since(s.detectorFailed) >= detectorRetry, bpf.LoadedBefore(s.stateRoot)
}

// acquireDetector returns the tool-call detector for container id, loading
// it on first use. Where the kernel lacks BTF, tp_btf or ring buffers it
// returns nil and the shim detects exec'd tool calls only, saying so.
func (s *service) acquireDetector(ctx context.Context, id string) *bpf.Detector {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detector == nil && time.Since(s.detectorFailed) >= detectorRetry {
		d, err := bpf.Open(s.pinRoot, s.stateRoot)
		if errors.Is(err, bpf.ErrNoBPFFS) {
			log.G(ctx).WithError(err).Warn("the tool-call detector cannot be shared: this shim loads its own")
			if d, err = bpf.Load(); err == nil {
				bpf.MarkLoaded(s.stateRoot)
			}
		}
		if err != nil {
			s.detectorFailed = time.Now()
			log.G(ctx).WithError(err).Warn("no eBPF tool-call detector: only exec'd tool calls get their own cgroup")
			return nil
		}
		s.detector = d
	}
	if s.detector != nil {
		s.detectorUsers[id] = true
	}
	return s.detector
}

// waitReleases waits, at shutdown, for the detectors still closing (within
// containerd's shutdown timeout).
func (s *service) waitReleases(context.Context) error {
	s.releasing.Wait()
	return nil
}

// releaseDetector drops container id's use of the detector and detaches and
// frees it once no container uses it; the shim's lock is not held while
// the detector closes.
func (s *service) releaseDetector(ctx context.Context, id string) {
	s.mu.Lock()
	var idle *bpf.Detector
	if s.detectorUsers[id] {
		delete(s.detectorUsers, id)
		if len(s.detectorUsers) == 0 {
			idle, s.detector = s.detector, nil
		}
	}
	s.mu.Unlock()
	if idle == nil {
		return
	}
	// Closing waits for the kernel (an RCU grace period per container the
	// detector watched): in the background; the shim's shutdown waits for
	// it, and the delete action after the shim's exit sweeps what a shim
	// cut off there left.
	s.releasing.Add(1)
	go func() {
		defer s.releasing.Done()
		if err := idle.Close(); err != nil {
			log.G(ctx).WithError(err).Warn("close the tool-call detector")
		}
	}()
}

// criContainerType is the annotation by which containerd's CRI plugin tells
// a pod's sandbox container ("sandbox") from its containers; its own
// package is internal to containerd.
const criContainerType = "io.kubernetes.cri.container-type"

func isSandbox(spec *specs.Spec) bool { return spec.Annotations[criContainerType] == "sandbox" }

// loadGovernor returns the shim's governor, starting it on first use; nil,
// said in the log, where it cannot start.
func (s *service) loadGovernor(ctx context.Context) *governor.Watcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.governor == nil {
		g, err := governor.New(context.WithoutCancel(ctx))
		if err != nil {
			log.G(ctx).WithError(err).Warn("no memory pressure watch: tool calls are throttled and OOM-killed by the kernel's limits only, never frozen")
			return nil
		}
		s.governor = g
	}
	return s.governor
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

// Exec reserves the exec in the inner service, then creates the tool call's
// cgroup, which the runtime wrapper hands to `runc exec --cgroup`.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	resp, err := s.TTRPCTaskService.Exec(ctx, r)
	c := s.container(r.ID)
	if err != nil || c == nil {
		return resp, err
	}
	var argv []string
	if r.Spec != nil {
		var p specs.Process
		if json.Unmarshal(r.Spec.GetValue(), &p) == nil {
			argv = p.Args
		}
	}
	stderr := openStderr(ctx, r)
	if err := c.PrepareExec(ctx, r.ExecID, argv, stderr); err != nil {
		if stderr != nil {
			stderr.Close()
		}
		if _, derr := s.TTRPCTaskService.Delete(ctx, &taskAPI.DeleteRequest{ID: r.ID, ExecID: r.ExecID}); derr != nil {
			log.G(ctx).WithError(derr).Warn("delete exec after failed tool-call cgroup")
		}
		return nil, errgrpc.ToGRPC(err)
	}
	return resp, nil
}

// openStderr opens the writing end of an exec's stderr FIFO, on which the
// shim tells the agent why a tool call was killed. The open completes in the
// background once the client reads; nil where stderr is no FIFO (a terminal,
// a binary:// or file:// logger, none).
func openStderr(ctx context.Context, r *taskAPI.ExecProcessRequest) io.WriteCloser {
	if r.Terminal || r.Stderr == "" || strings.Contains(r.Stderr, "://") {
		return nil
	}
	if fi, err := os.Stat(r.Stderr); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return nil
	}
	w, err := fifo.OpenFifo(context.WithoutCancel(ctx), r.Stderr, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		log.G(ctx).WithError(err).WithField("exec", r.ExecID).Warn("open exec stderr")
		return nil
	}
	return w
}

// Start starts the container or an exec; a started exec becomes a running
// tool call whose end is watched.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (resp *taskAPI.StartResponse, err error) {
	c := s.container(r.ID)
	if c == nil || r.ExecID == "" {
		return s.TTRPCTaskService.Start(ctx, r)
	}
	if werr := s.links.wrap(ctx, r.ID, func() { resp, err = s.TTRPCTaskService.Start(ctx, r) }); werr != nil {
		err = errgrpc.ToGRPC(werr)
	}
	if err != nil {
		c.AbortExec(ctx, r.ExecID)
		return resp, err
	}
	c.StartedExec(ctx, r.ExecID, resp.Pid, func(wctx context.Context) (uint32, time.Time, error) {
		w, err := s.TTRPCTaskService.Wait(wctx, &taskAPI.WaitRequest{ID: r.ID, ExecID: r.ExecID})
		if err != nil {
			return 0, time.Time{}, err
		}
		return w.ExitStatus, w.ExitedAt.AsTime(), nil
	})
	return resp, nil
}

// Pids lists the container's processes; crun's `ps` goes through the
// runtime wrapper.
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (resp *taskAPI.PidsResponse, err error) {
	if !needsWrapperForPs(s.links.runtime(r.ID)) {
		return s.TTRPCTaskService.Pids(ctx, r)
	}
	if werr := s.links.wrap(ctx, r.ID, func() { resp, err = s.TTRPCTaskService.Pids(ctx, r) }); werr != nil {
		return nil, errgrpc.ToGRPC(werr)
	}
	return resp, err
}

// Update changes the container's resources; limits the policy gives as
// percentages of C's memory.max follow the new one.
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	resp, err := s.TTRPCTaskService.Update(ctx, r)
	if c := s.container(r.ID); err == nil && c != nil {
		if rerr := c.Resize(ctx); rerr != nil {
			log.G(ctx).WithError(rerr).Warn("resolve agent and tool-call limits after update")
		}
	}
	return resp, err
}

// Delete tears the tree down (cgroup.kill, wait until empty, remove the
// sub-cgroups) before the inner delete lets runc remove C.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c := s.container(r.ID)
	if c == nil {
		return s.TTRPCTaskService.Delete(ctx, r)
	}
	if r.ExecID != "" {
		resp, err := s.TTRPCTaskService.Delete(ctx, r)
		if err == nil {
			c.AbortExec(ctx, r.ExecID) // an exec deleted before it started
		}
		return resp, err
	}
	// A running or paused container is refused by the inner delete: leave it whole.
	if st, err := s.TTRPCTaskService.State(ctx, &taskAPI.StateRequest{ID: r.ID}); err == nil &&
		(st.Status == task.Status_RUNNING || st.Status == task.Status_PAUSED) {
		return s.TTRPCTaskService.Delete(ctx, r)
	}
	if err := c.Teardown(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("tear down agent/tools cgroups")
	}
	s.releaseDetector(context.WithoutCancel(ctx), r.ID)
	resp, err := s.TTRPCTaskService.Delete(ctx, r)
	if err != nil {
		return resp, err
	}
	s.mu.Lock()
	delete(s.tasks, r.ID)
	s.mu.Unlock()
	s.links.remove(r.ID)
	if err := c.RemoveState(); err != nil {
		log.G(ctx).WithError(err).Warn("remove state folder")
	}
	return resp, nil
}
