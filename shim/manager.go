// Package shim is the containerd shim v2 of agentcgroup: the runc shim's
// manager and task service, wrapped so that containers get an agent cgroup
// and one cgroup per tool call, and served to containerd 1.6 to 2.x alike.
package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	runcmanager "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/hooks"
	"github.com/agentcgroup/agentcgroup/state"
)

// RuntimeName is the containerd runtime type of this shim.
const RuntimeName = "io.containerd.agentcgroup.v1"

type manager struct {
	shim.Shim // the runc shim's manager
}

// NewManager returns the shim manager: the runc shim's, with options
// translation and agentcgroup's own crash cleanup.
func NewManager() shim.Shim {
	return manager{Shim: runcmanager.NewShimManager(RuntimeName)}
}

// Start launches the shim server. The runtime options (an extension of the
// bootstrap parameters) are translated first, so that runc's ShimCgroup
// option works from a config file too.
func (m manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (*bootapi.BootstrapResult, error) {
	for _, ext := range params.GetExtensions() {
		if ext.GetValue() == nil || ext.GetValue().MessageIs(&options.Options{}) {
			continue
		}
		opts, _, err := runtimeOptions(ext.GetValue(), DefaultConfigPath)
		if err != nil {
			return nil, err
		}
		if ext.Value, err = anypb.New(opts); err != nil {
			return nil, err
		}
	}
	// The server reads containerd's ttrpc address for events from its
	// environment; 2.x daemons plan to stop setting it.
	if a := params.GetContainerdTtrpcAddress(); a != "" {
		os.Setenv("TTRPC_ADDRESS", a)
	}
	return m.Shim.Start(ctx, params)
}

// Stop is containerd's cleanup of a container whose shim is gone: kill and
// remove the tool and agent cgroups from the state on disk, let runc delete
// the container, then remove the dead server's socket and the state.
func (m manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return shim.StopStatus{}, err
	}
	dir := state.Dir(state.DefaultRoot, ns, id)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		// The container was deleted through its shim, which removed the
		// state last. The runc shim's cleanup still runs the runtime link
		// for a `delete --force` that can only find nothing: the link
		// answers as the runtime would, at the cost of /bin/true.
		nothing, err := exec.LookPath("true")
		if err == nil {
			err = state.LinkRuntime(dir, nothing)
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("link the runtime for cleanup")
		}
		defer state.Remove(dir)
	} else if err := hooks.Cleanup(ctx, dir); err != nil {
		log.G(ctx).WithError(err).Warn("clean up agent/tools cgroups")
	}
	// Last, after the container's own leftovers, also where removing them
	// failed: the dead shim's use of the shared detector (its agent cgroup
	// forgotten, the detector unpinned if no shim is left).
	defer func() {
		if err := bpf.Sweep(bpf.PinRoot, state.DefaultRoot, cgroupfs.Root); err != nil {
			log.G(ctx).WithError(err).Warn("sweep the shared tool-call detector")
		}
	}()
	status, err := m.Shim.Stop(ctx, id)
	// A killed server could not remove its sockets; the bundle names them.
	// Also where the runc shim's cleanup failed (a server killed while it
	// wrote its options leaves them unreadable): nothing of ours stays.
	if rerr := removeSockets(bundlePath(ctx, id)); rerr != nil {
		log.G(ctx).WithError(rerr).Warn("remove sockets of the exited shim")
	}
	if serr := state.Remove(dir); err == nil {
		err = serr
	}
	return status, err
}

// bundlePath is the bundle of the `delete` action: its -bundle flag, else
// the runc manager's guess from the working directory.
func bundlePath(ctx context.Context, id string) string {
	if opts, ok := ctx.Value(shim.OptsKey{}).(shim.Opts); ok && opts.BundlePath != "" {
		return opts.BundlePath
	}
	cwd, _ := os.Getwd()
	return filepath.Join(filepath.Dir(cwd), id)
}

// Info answers `-info` (CRI's runtime introspection) with translated options.
func (m manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	in, err := io.ReadAll(optionsR)
	if err != nil {
		return nil, err
	}
	var a *anypb.Any
	if len(in) > 0 {
		a = &anypb.Any{}
		if err := proto.Unmarshal(in, a); err != nil {
			return nil, fmt.Errorf("parse runtime options: %w", err)
		}
	}
	opts, _, err := runtimeOptions(a, DefaultConfigPath)
	if err != nil {
		return nil, err
	}
	oa, err := typeurl.MarshalAnyToProto(opts)
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(oa)
	if err != nil {
		return nil, err
	}
	return m.Shim.Info(ctx, bytes.NewReader(b))
}
