package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/state"
)

// forkCall is a tool call the detector found: the agent forked it and it
// executed a new program.
type forkCall struct {
	*call
	status uint32
	exited chan struct{} // closed with the leader's exit
}

// watch starts detecting the tool calls that processes in C/agent fork.
// With a hold, their first execve waits until they are placed.
func (c *Container) watch(ctx context.Context, d *bpf.Detector) error {
	id, err := cgroupfs.ID(filepath.Join(c.path, agentDir))
	if err != nil {
		return err
	}
	// Buffered so that a burst of calls does not stall the shared reader.
	events := make(chan bpf.Event, 1024)
	if err := d.Watch(id, events); err != nil {
		return err
	}
	c.detector, c.agentID = d, id
	c.refill(ctx)
	go c.handleEvents(ctx, events)
	if c.hold != nil {
		c.hold.Handle(func(pid uint32) { c.placeHeld(ctx, pid) })
	}
	return nil
}

func (c *Container) handleEvents(ctx context.Context, events <-chan bpf.Event) {
	for {
		select {
		case <-c.ctx.Done():
			return
		case ev := <-events:
			switch ev.Kind {
			case bpf.Tool:
				c.detected(ctx, ev)
			case bpf.Child:
				c.placeChild(ctx, ev)
			case bpf.Exit:
				c.callExited(ev)
			}
		}
	}
}

// forkPrefix starts the ID of every fork-detected call.
const forkPrefix = "fork-"

// spares is how many ready tool-call cgroups a container keeps, so that a
// short burst of calls is placed without waiting for a cgroup to be made.
const spares = 2

// makeSpare makes a ready cgroup for a detected call, named fork-<n>
// (cgroup v2 cannot rename a cgroup once the program is known; the record's
// command names it), with the tool-call limits applied. A name an exec
// already took is skipped. It takes no lock for the slow part: a held exec
// is placed meanwhile into a spare made earlier.
func (c *Container) makeSpare(ctx context.Context) (string, bool) {
	for {
		c.mu.Lock()
		c.seq++
		id := forkPrefix + strconv.FormatUint(c.seq, 10)
		c.mu.Unlock()
		dir := filepath.Join(c.path, toolsDir, id)
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("create a tool-call cgroup")
			return "", false
		}
		if err := c.setToolLimits(dir); err != nil {
			log.G(ctx).WithError(err).Warn("set tool-call limits")
		}
		return id, true
	}
}

// refill makes spare cgroups up to spares, one refill at a time.
func (c *Container) refill(ctx context.Context) {
	c.placeMu.Lock()
	if c.refilling {
		c.placeMu.Unlock()
		return
	}
	c.refilling = true
	defer func() { c.refilling = false; c.placeMu.Unlock() }()
	for !c.closing && len(c.spare) < spares {
		c.placeMu.Unlock()
		id, ok := c.makeSpare(ctx)
		c.placeMu.Lock()
		if !ok {
			return
		}
		c.spare = append(c.spare, id)
	}
}

// placeHeld places a tool call while its first execve waits in the kernel:
// the program starts in the call's cgroup, having charged nothing to
// C/agent. Anything else the caller execs continues at once.
func (c *Container) placeHeld(ctx context.Context, pid uint32) {
	forked, ok := c.detector.Pending(pid, c.agentID)
	if !ok {
		return
	}
	c.mu.Lock()
	_, placed := c.forks[pid]
	c.mu.Unlock()
	if placed {
		return // the same call's next execve: a PATH search, or one a signal restarted
	}
	if c.place(ctx, pid, forked) == nil {
		return
	}
	if err := c.detector.Claim(pid, c.agentID); err != nil {
		log.G(ctx).WithError(err).Warn("claim a held tool call")
	}
}

// detected handles a new tool call's exec: it names a call placed while
// held, or places one now (no hold: the program has started in C/agent).
func (c *Container) detected(ctx context.Context, ev bpf.Event) {
	c.mu.Lock()
	fc := c.forks[ev.Pid]
	c.mu.Unlock()
	if fc == nil {
		if fc = c.place(ctx, ev.Pid, ev.Forked); fc == nil {
			return
		}
	}
	c.mu.Lock()
	fc.rec.Command, fc.rec.StartedUnplaced = ev.Args, ev.Unplaced
	c.calls.save(ctx)
	c.mu.Unlock()
}

// place moves a new tool call's leader into a ready cgroup first, and does
// everything else after: until it is moved, what the leader charges stays
// with C/agent.
func (c *Container) place(ctx context.Context, pid uint32, forked time.Duration) *forkCall {
	c.placeMu.Lock()
	if c.closing {
		c.placeMu.Unlock()
		return nil
	}
	var id string
	if len(c.spare) > 0 {
		id, c.spare = c.spare[0], c.spare[1:]
	}
	c.placing.Add(1)
	c.placeMu.Unlock()
	if id == "" { // calls came faster than spares were made
		var ok bool
		if id, ok = c.makeSpare(ctx); !ok {
			c.placing.Done()
			return nil
		}
	}
	dir := filepath.Join(c.path, toolsDir, id)
	if err := movePid(dir, pid); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.G(ctx).WithError(err).WithField("call", id).Warn("move tool call into its cgroup")
	}
	placed := bpf.Since(forked)
	fc := &forkCall{exited: make(chan struct{}), call: &call{
		dir: dir,
		rec: &state.Record{
			ID: id, Kind: "fork", Pid: pid, PlacedAfterUs: placed.Microseconds(),
			Cgroup: path.Join(c.st.Cgroup, toolsDir, id), Start: time.Now().Add(-placed).UTC(), State: state.Running,
		},
	}}
	c.mu.Lock()
	c.forks[pid] = fc
	c.mu.Unlock()
	go func() { // off the placement path: a held exec goes on meanwhile
		defer c.placing.Done()
		c.track(ctx, fc.call, func(ctx context.Context) (uint32, time.Time, error) {
			select {
			case <-fc.exited:
				return fc.status, time.Now(), nil
			case <-ctx.Done():
				return 0, time.Time{}, ctx.Err()
			}
		})
		c.refill(ctx)
	}()
	return fc
}

// placeChild moves a process that a call forked before it was moved.
func (c *Container) placeChild(ctx context.Context, ev bpf.Event) {
	c.mu.Lock()
	fc := c.forks[ev.Leader]
	c.mu.Unlock()
	if fc == nil {
		return
	}
	if err := movePid(fc.dir, ev.Pid); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.G(ctx).WithError(err).WithField("call", fc.rec.ID).Warn("move a tool call's child")
	}
}

func (c *Container) callExited(ev bpf.Event) {
	c.mu.Lock()
	fc := c.forks[ev.Pid]
	delete(c.forks, ev.Pid)
	c.mu.Unlock()
	if fc != nil {
		fc.status = ev.ExitCode()
		close(fc.exited)
	}
}

// unwatch stops detection for the container.
func (c *Container) unwatch() {
	if c.detector != nil {
		c.detector.Unwatch(c.agentID)
	}
}

func movePid(dir string, pid uint32) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.FormatUint(uint64(pid), 10)), 0); err != nil {
		return fmt.Errorf("move %d into %s: %w", pid, dir, err)
	}
	return nil
}
