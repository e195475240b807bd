package shim

import (
	"context"
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

// wrap runs call with container id's runtime link on the wrapper.
func (l *runtimeLinks) wrap(ctx context.Context, id string, call func()) {
	l.mu.Lock()
	rl := l.links[id]
	if rl != nil {
		if rl.wrapped == 0 {
			l.relink(ctx, rl.dir, l.wrapper)
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
			l.relink(ctx, rl.dir, rl.runtime)
		}
	}()
	call()
}

func (l *runtimeLinks) relink(ctx context.Context, dir, target string) {
	if err := state.LinkRuntime(dir, target); err != nil {
		log.G(ctx).WithError(err).WithField("runtime", filepath.Base(target)).Warn("relink the container's OCI runtime")
	}
}

// needsWrapperForPs says whether the runtime's `ps` must go through the
// wrapper (crun, see runtimewrapper).
func needsWrapperForPs(runtime string) bool { return filepath.Base(runtime) == "crun" }
