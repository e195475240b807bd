package shim

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
)

// The task plugin replaces the runc shim's own (whose package is not
// imported): the same runc task service, decorated.
func init() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			sd := ss.(shutdown.Service)
			publisher := pp.(shim.Publisher)
			filter := &oomFilter{Publisher: publisher}
			inner, err := task.NewTaskService(ic.Context, filter, sd)
			if err != nil {
				return nil, err
			}
			// The inner service removes the socket named in the bundle's
			// address file if it was there when it started; the start action
			// may write it a moment later, and names the debug socket too.
			sd.RegisterCallback(func(context.Context) error { return removeSockets(".") })
			svc, err := newService(inner, publisher)
			if err != nil {
				return nil, err
			}
			filter.container = svc.container
			sd.RegisterCallback(svc.detector.wait)
			return svc, nil
		},
	})
}
