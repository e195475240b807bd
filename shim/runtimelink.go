package shim

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/state"
)

// runtimeLinks points each carved container's runtime link (the BinaryName
// the runc shim runs) at the real runtime, and at the wrapper only while a
// call that needs it is in flight: an exec's start (`exec --cgroup`) and,
// for crun, `ps` (runtimewrapper). Every other runtime call (create, start,
// state, kill, delete) then costs what it costs under the runc shim. A call
// that overlaps a wrapped one goes through the wrapper, which passes it on
// unchanged; the link is swapped by rename, so no call finds it missing.
type runtimeLinks struct {
	wrapper string

	mu    sync.Mutex
	links map[string]*runtimeLink
}

type runtimeLink struct {
	dir, runtime string
	wrapped      int // calls in flight that need the wrapper
}

func newRuntimeLinks(wrapper string) *runtimeLinks {
	return &runtimeLinks{wrapper: wrapper, links: make(map[string]*runtimeLink)}
}

// add links container id's real runtime into its state folder dir.
func (l *runtimeLinks) add(id, dir, runtime string) error {
	if err := state.LinkRuntime(dir, runtime); err != nil {
		return err
	}
	l.mu.Lock()
	l.links[id] = &runtimeLink{dir: dir, runtime: runtime}
	l.mu.Unlock()
	return nil
}

func (l *runtimeLinks) remove(id string) {
	l.mu.Lock()
	delete(l.links, id)
	l.mu.Unlock()
}

// runtime is container id's real runtime; "" for a container not carved.
func (l *runtimeLinks) runtime(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rl := l.links[id]; rl != nil {
		return rl.runtime
	}
	return ""
}

// wrap runs call with container id's runtime link on the wrapper; if the
// link cannot be pointed there, call does not run (an exec would start
// outside its tool call's cgroup).
func (l *runtimeLinks) wrap(ctx context.Context, id string, call func()) error {
	l.mu.Lock()
	rl := l.links[id]
	if rl != nil {
		if rl.wrapped == 0 {
			if err := state.LinkRuntime(rl.dir, l.wrapper); err != nil {
				l.mu.Unlock()
				return fmt.Errorf("link the runtime wrapper: %w", err)
			}
		}
		rl.wrapped++
	}
	l.mu.Unlock()
	defer func() {
		if rl == nil {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if rl.wrapped--; rl.wrapped == 0 {
			if err := state.LinkRuntime(rl.dir, rl.runtime); err != nil {
				// Harmless: the wrapper passes calls on unchanged.
				log.G(ctx).WithError(err).Warn("link the container's OCI runtime back")
			}
		}
	}()
	call()
	return nil
}

// needsWrapperForPs says whether the runtime's `ps` must go through the
// wrapper (crun, see runtimewrapper).
func needsWrapperForPs(runtime string) bool { return filepath.Base(runtime) == "crun" }
