// Package layout names the cgroups agentcgroup carves in a container's
// cgroup C (see package tree). It imports nothing, so that the OCI runtime
// wrapper, a small program run for every runtime call, can use it.
package layout

import "path"

// The names of C's two children.
const (
	Agent = "agent"
	Tools = "tools"
)

// CallCgroup is the cgroup of tool call id, relative to C: the OCI runtime
// wrapper passes it as `exec --cgroup`.
func CallCgroup(id string) string { return path.Join(Tools, id) }
