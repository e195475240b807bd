// Command containerd-shim-agentcgroup-v1 is the containerd shim of runtime
// io.containerd.agentcgroup.v1. Run as <state>/oci-runtime it is instead the
// OCI runtime wrapper that the wrapped runc shim calls (package
// runtimewrapper), where agentcgroup-oci-runtime is not installed beside it.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	pkgshim "github.com/containerd/containerd/v2/pkg/shim"

	"github.com/agentcgroup/agentcgroup/runtimewrapper"
	"github.com/agentcgroup/agentcgroup/shim"
	"github.com/agentcgroup/agentcgroup/state"
)

func main() {
	if filepath.Base(os.Args[0]) == state.RuntimeLink {
		if err := runtimewrapper.Run(os.Args); err != nil {
			fmt.Fprintf(os.Stderr, "agentcgroup runtime wrapper: %v\n", err)
			os.Exit(1)
		}
		return
	}
	ctx := context.Background()
	// The start action is ours, to speak every containerd's start protocol;
	// delete, serve, -info and -version are pkg/shim's.
	if f, err := shim.ParseFlags(os.Args[1:]); err == nil && f.Action == "start" {
		if err := shim.Start(ctx, shim.NewManager(), f, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %s", shim.RuntimeName, err)
			os.Exit(1)
		}
		return
	}
	pkgshim.RunShim(ctx, shim.NewManager())
}
