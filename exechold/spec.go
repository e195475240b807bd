// Package exechold holds a container's execve calls in the kernel, through
// seccomp user notification, until the shim has decided where the caller
// belongs: a process the agent forked is moved into its tool call's cgroup
// before the program it executes has run at all. Nothing is signalled and
// nothing stops, so a job-control shell sees no stopped job; the task sleeps
// in the system call.
//
// The OCI runtime installs the filter (spec.go adds the rule to the
// container's seccomp profile) and sends its listener to a unix socket the
// shim serves (listener.go).
package exechold

import (
	"fmt"
	"slices"
	"sync"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// heldSyscalls are the system calls that start a new program.
var heldSyscalls = []string{"execve", "execveat"}

// Configure adds the hold to a container's spec: execve and execveat notify
// listenerPath, everything else stays as the profile says. A container
// without a profile gets one that allows everything else, on every
// architecture the host runs. It refuses, and
// leaves the spec as it was, where the hold would change what the profile
// means: execve not plainly allowed (denied, or allowed only for some
// arguments), or another listener already configured.
func Configure(spec *specs.Spec, listenerPath string) error {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	sc := spec.Linux.Seccomp
	if sc == nil {
		spec.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: hostArches(),
			Syscalls:      []specs.LinuxSyscall{{Names: heldSyscalls, Action: specs.ActNotify}},
			ListenerPath:  listenerPath,
		}
		return nil
	}
	// A profile's architectures, listed or not, stay as they are: without
	// the hold it was already applied to those only.
	if sc.ListenerPath != "" {
		return fmt.Errorf("the seccomp profile has a listener already (%s)", sc.ListenerPath)
	}
	for _, name := range heldSyscalls {
		if err := plainlyAllowed(sc, name); err != nil {
			return err
		}
	}
	var rules []specs.LinuxSyscall
	for _, r := range sc.Syscalls {
		r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return slices.Contains(heldSyscalls, n) })
		if len(r.Names) > 0 {
			rules = append(rules, r)
		}
	}
	sc.Syscalls = append(rules, specs.LinuxSyscall{Names: heldSyscalls, Action: specs.ActNotify})
	sc.ListenerPath = listenerPath
	return nil
}

// plainlyAllowed says whether the profile allows every call of name: by a
// rule without argument conditions, or by its default action where no rule
// names it.
func plainlyAllowed(sc *specs.LinuxSeccomp, name string) error {
	action, named := sc.DefaultAction, false
	for _, r := range sc.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		if len(r.Args) > 0 {
			return fmt.Errorf("the seccomp profile allows %s only for some arguments", name)
		}
		if named && r.Action != action {
			return fmt.Errorf("the seccomp profile has rules with different actions for %s", name)
		}
		action, named = r.Action, true
	}
	if action != specs.ActAllow {
		return fmt.Errorf("the seccomp profile does not allow %s (%s)", name, action)
	}
	return nil
}

// hostArches are the architectures whose system calls the host runs: a
// filter that lists none covers only the native one, and the runtime's
// filter kills every system call of another (int 0x80, i386 and -m32
// programs), which the container ran without a profile. libseccomp resolves
// the held calls by name for each, so 32-bit execve is held too. The list is
// that of containerd's default profile.
var hostArches = sync.OnceValue(func() []specs.Arch {
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	return seccomp.DefaultProfile(spec).Architectures
})
