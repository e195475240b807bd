package shim

import (
	"context"
	"encoding/json"
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
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/governor"
	"github.com/agentcgroup/agentcgroup/hooks"
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
	// detector is the host's tool-call detector, shared by the containers
	// that detect fork+exec.
	detector *sharedDetector
	mu       sync.Mutex
	tasks    map[string]*hooks.Container
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
		detector:         newSharedDetector(bpf.PinRoot, state.DefaultRoot),
		links:            newRuntimeLinks(wrapperBeside(self)),
		output:           reaped,
		publisher:        publisher,
		tasks:            make(map[string]*hooks.Container),
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

// Create validates the annotations and options before anything exists, runs
// the inner create (init waits in `runc init`), then carves the tree while
// nothing of the container has run yet.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	c, err := s.newCreation(ctx, r)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	defer func() {
		if retErr != nil {
			s.abortCreation(ctx, c)
		}
	}()
	if r.Options, err = typeurl.MarshalAnyToProto(c.opts); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp, err := s.TTRPCTaskService.Create(ctx, r)
	if err != nil || c.dir == "" {
		return resp, err
	}
	if err := s.carve(ctx, c, resp.Pid); err != nil {
		return nil, err
	}
	return resp, nil
}

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
	s.detector.release(context.WithoutCancel(ctx), r.ID)
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
