package shim

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
)

// detectorRetry is how long a shim whose detector failed to load waits
// before it tries again for a new container.
const detectorRetry = time.Minute

// sharedDetector is the shim's use of the host's tool-call detector: loaded
// (or opened where another shim pinned it) for the first container that asks
// for fork+exec detection, and closed when the last of its users (by
// container ID) is deleted. A failure to load it is said in the log and
// tried again after detectorRetry.
type sharedDetector struct {
	// pinRoot is where the host's shared detector is pinned (bpf.PinRoot);
	// stateRoot is where a load is remembered (bpf.LoadedBefore).
	pinRoot, stateRoot string

	mu       sync.Mutex
	detector *bpf.Detector
	users    map[string]bool
	failed   time.Time
	// closing counts the detectors still closing in the background; the
	// shim exits after them (wait).
	closing sync.WaitGroup
}

func newSharedDetector(pinRoot, stateRoot string) *sharedDetector {
	return &sharedDetector{pinRoot: pinRoot, stateRoot: stateRoot, users: make(map[string]bool)}
}

// mayLoad reports whether the detector is loaded or may be tried (it did not
// fail to load within detectorRetry), and whether it loaded before, in this
// shim or another of the host.
func (d *sharedDetector) mayLoad() (mayLoad, before bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detector != nil {
		return true, true
	}
	return time.Since(d.failed) >= detectorRetry, bpf.LoadedBefore(d.stateRoot)
}

// acquire returns the detector for container id, loading it on first use.
// Where the kernel lacks BTF, tp_btf or ring buffers it returns nil and the
// shim detects exec'd tool calls only, saying so.
func (d *sharedDetector) acquire(ctx context.Context, id string) *bpf.Detector {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detector == nil && time.Since(d.failed) >= detectorRetry {
		det, err := d.open(ctx)
		if err != nil {
			d.failed = time.Now()
			log.G(ctx).WithError(err).Warn("no eBPF tool-call detector: only exec'd tool calls get their own cgroup")
			return nil
		}
		d.detector = det
	}
	if d.detector != nil {
		d.users[id] = true
	}
	return d.detector
}

// open opens the host's shared detector; where bpffs is missing it loads one
// of the shim's own.
func (d *sharedDetector) open(ctx context.Context) (*bpf.Detector, error) {
	det, err := bpf.Open(d.pinRoot, d.stateRoot)
	if !errors.Is(err, bpf.ErrNoBPFFS) {
		return det, err
	}
	log.G(ctx).WithError(err).Warn("the tool-call detector cannot be shared: this shim loads its own")
	if det, err = bpf.Load(); err != nil {
		return nil, err
	}
	bpf.MarkLoaded(d.stateRoot)
	return det, nil
}

// release drops container id's use of the detector, if it has one, and
// detaches and frees the detector once no container uses it; the lock is not
// held while the detector closes.
func (d *sharedDetector) release(ctx context.Context, id string) {
	d.mu.Lock()
	var idle *bpf.Detector
	if d.users[id] {
		delete(d.users, id)
		if len(d.users) == 0 {
			idle, d.detector = d.detector, nil
		}
	}
	d.mu.Unlock()
	if idle == nil {
		return
	}
	// Closing waits for the kernel (an RCU grace period per container the
	// detector watched): in the background; the shim's shutdown waits for
	// it, and the delete action after the shim's exit sweeps what a shim
	// cut off there left.
	d.closing.Add(1)
	go func() {
		defer d.closing.Done()
		if err := idle.Close(); err != nil {
			log.G(ctx).WithError(err).Warn("close the tool-call detector")
		}
	}()
}

// wait waits, at shutdown, for the detectors still closing (within
// containerd's shutdown timeout).
func (d *sharedDetector) wait(context.Context) error {
	d.closing.Wait()
	return nil
}
