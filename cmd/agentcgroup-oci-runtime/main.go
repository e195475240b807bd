// Command agentcgroup-oci-runtime is the OCI runtime wrapper that
// containerd-shim-agentcgroup-v1 links into each container's state folder
// (as oci-runtime) and gives the runc shim it wraps: it runs the real runc
// or crun, adding to `exec` the tool call's cgroup (package
// runtimewrapper). Installed beside the shim; without it the shim binary
// does the same, at the cost of its larger start on every runtime call.
package main

import (
	"fmt"
	"os"

	"github.com/agentcgroup/agentcgroup/runtimewrapper"
)

func main() {
	if err := runtimewrapper.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "agentcgroup runtime wrapper: %v\n", err)
		os.Exit(1)
	}
}
