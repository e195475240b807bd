package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// forkCall is a tool call the detector found: the agent forked it and it
// executed a new program.
type forkCall struct {
	*call
	pid    uint32
	status uint32
	exited chan struct{} // closed with the leader's exit, as the detector saw it
	// leader is the leader's pidfd: it says the leader is gone even when
	// the detector cannot (killed while held, before it was claimed; an
	// exit event lost), and it names this process, not a later one that
	// reuses its pid.
	leader *os.File
}

// exitGrace bounds the wait for the detector's events once a leader is
// gone: the kernel wrote its exit event before the leader was gone, so only
// a detector that stopped reading leaves the wait to end here.
const exitGrace = 10 * time.Second

// errExitUnseen: the leader is gone and its exit status is unknown.
var errExitUnseen = errors.New("the leader's exit was not seen")

// wait waits for the leader's exit. Its pidfd can say it is gone before the
// event handler has reached its exit event, on a busy host by seconds;
// flush waits until the handler has.
func (fc *forkCall) wait(ctx context.Context, flush func(context.Context, *forkCall)) (uint32, time.Time, error) {
	defer fc.leader.Close()
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		if rc, err := fc.leader.SyscallConn(); err == nil {
			_ = rc.Read(func(fd uintptr) bool { // in Go's poller: no thread waits
				p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, err := unix.Poll(p, 0)
				return err != nil || n > 0
			})
		}
	}()
	select {
	case <-fc.exited:
		return fc.status, time.Now(), nil
	case <-ctx.Done():
		return 0, time.Time{}, ctx.Err()
	case <-gone:
	}
	flush(ctx, fc)
	select {
	case <-fc.exited:
		return fc.status, time.Now(), nil
	default:
		return 0, time.Time{}, errExitUnseen
	}
}

// flushEvents returns once the event handler has handled every event the
// detector had for the container when it was called, or after exitGrace.
// In the container's teardown (the watch is gone) it waits for the exit
// event already on its way, for up to a second.
func (c *Container) flushEvents(ctx context.Context, fc *forkCall) {
	n, err := c.detector.Flush(c.agentID)
	if err != nil {
		if !errors.Is(err, bpf.ErrNotWatched) {
			log.G(ctx).WithError(err).Warn("flush the tool-call detector's events")
		}
		select {
		case <-fc.exited:
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		return
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.flushes[n] = append(c.flushes[n], done)
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(exitGrace):
		log.G(ctx).Warn("the tool-call detector's events were not flushed in time")
	}
}

// flushed releases the calls waiting for the flushes up to n.
func (c *Container) flushed(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, waiters := range c.flushes {
		if k <= n {
			for _, w := range waiters {
				close(w)
			}
			delete(c.flushes, k)
		}
	}
}

// watch starts detecting the tool calls that processes in C/agent fork.
// With a hold, their first execve waits until they are placed.
func (c *Container) watch(ctx context.Context, d *bpf.Detector) error {
	id, err := cgroupfs.ID(c.tree.AgentDir())
	if err != nil {
		return err
	}
	// Buffered: a burst of calls waits here rather than in the ring buffer.
	events := make(chan bpf.Event, 1024)
	if err := d.Watch(id, events); err != nil {
		return err
	}
	c.detector, c.agentID = d, id
	c.refill(ctx)
	go c.handleEvents(ctx, events)
	return nil
}

// startWatch has the detector watch the container. With the hold, the watch
// runs in the background: every held execve waits for it, init's into the
// agent's program first, so no agent code runs unwatched; the watch's cost,
// an RCU grace period per map-of-maps update in the kernel, then overlaps
// the container's start instead of adding to its create. A watch that fails
// there leaves the container with its exec'd calls detected only, said in
// the log.
func (c *Container) startWatch(ctx context.Context, d *bpf.Detector) error {
	if c.hold == nil {
		return c.watch(ctx, d)
	}
	ctx = context.WithoutCancel(ctx) // the create's request ends first
	done := make(chan struct{})
	c.watching = done
	c.hold.Handle(func(r *exechold.Request) {
		<-done
		if c.detector != nil {
			c.placeHeld(ctx, r)
		}
	})
	go func() {
		defer close(done)
		if err := c.watch(ctx, d); err != nil {
			log.G(ctx).WithError(err).Warn("no tool-call detection for this container: only exec'd tool calls get their own cgroup")
		}
	}()
	return nil
}

// waitWatch waits for a watch started in the background; detector and
// agentID are then final.
func (c *Container) waitWatch() {
	if c.watching != nil {
		<-c.watching
	}
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
			case bpf.Escape:
				c.escaped(ctx, ev)
			case bpf.Flushed:
				c.flushed(ev.Flushes)
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
		err := c.newCall(id)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			log.G(ctx).WithError(err).Warn("create a tool-call cgroup")
			return "", false
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
func (c *Container) placeHeld(ctx context.Context, r *exechold.Request) {
	if r.Exec {
		// An exec's processes are in its own call's cgroup: none is a
		// fresh child of C/agent, and nothing needs asking.
		return
	}
	pid := r.Pid
	forked, ok := c.detector.Pending(pid, c.agentID)
	if !ok && !isLeader(pid) {
		// A thread other than its process's leader; the detector knows
		// processes.
		if tgid, err := threadGroup(pid); err == nil {
			pid = tgid
			forked, ok = c.detector.Pending(pid, c.agentID)
		}
	}
	if !ok {
		return
	}
	c.mu.Lock()
	_, placed := c.forks[pid]
	c.mu.Unlock()
	if placed {
		return // the same call's next execve: a PATH search, or one a signal restarted
	}
	if path, argv, err := r.Command(); err == nil && c.policy.IsSession(path, argv) {
		// A session shell stays with the agent: the commands it forks are
		// fresh children of C/agent, each a tool call.
		c.detector.Forget(pid)
		log.G(ctx).WithFields(log.Fields{"pid": pid, "command": argv}).Debug("session: its commands are the tool calls")
		return
	}
	c.place(ctx, pid, forked, true)
}

// detected handles a new tool call's exec: it names a call placed while
// held, or places one now (no hold: the program has started in C/agent),
// and has the governor hold it back where there is no room for it.
func (c *Container) detected(ctx context.Context, ev bpf.Event) {
	c.mu.Lock()
	fc := c.forks[ev.Pid]
	c.mu.Unlock()
	if fc == nil {
		if c.policy.IsSession(ev.Filename, ev.Args) { // no hold: seen after its exec
			c.detector.Forget(ev.Pid)
			return
		}
		if fc = c.place(ctx, ev.Pid, ev.Forked, false); fc == nil {
			return
		}
	}
	fc.Named(ev.Args, ev.Unplaced)
	c.calls.save()
	if c.governor != nil {
		// Its program has just started: where it would start into an OOM
		// kill, it waits for room instead.
		c.governor.FreezeAtStart(c.st.ID, fc.Call, time.Now())
	}
}

// place moves a new tool call's leader into a ready cgroup first, and does
// everything else after: until it is moved, what the leader charges stays
// with C/agent. held: its execve is held, and the detector learns only
// from here that it is a call.
func (c *Container) place(ctx context.Context, pid uint32, forked time.Duration, held bool) *forkCall {
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
	// The pidfd first: from here on it is this process that is followed.
	leader, err := pidfd(pid)
	if err != nil {
		c.placeMu.Lock()
		if len(c.spare) < spares && !c.closing {
			c.spare = append(c.spare, id) // unused
			id = ""
		}
		c.placeMu.Unlock()
		if id != "" {
			_ = c.removeCall(id)
		}
		c.placing.Done()
		if !errors.Is(err, syscall.ESRCH) {
			log.G(ctx).WithError(err).WithField("pid", pid).Warn("open the pidfd of a tool call")
		}
		return nil
	}
	dir := c.tree.CallDir(id)
	if err := c.tree.Move(id, pid); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.G(ctx).WithError(err).WithField("call", id).Warn("move tool call into its cgroup")
	}
	placed := bpf.Since(forked)
	// Before its program runs: a burst of a call still at the agent's
	// oom_score_adj would be an OOM killer's equal choice with the agent.
	c.raiseCallOOMScore(ctx, id, pid)
	// The call's stderr as the agent gave it, to say why the call died
	// before the agent reads the end of it; closed when the leader exits.
	stderr, err := stderrOf(leader)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		log.G(ctx).WithError(err).WithField("call", id).Debug("no stderr to tell the agent on")
	}
	fc := &forkCall{pid: pid, leader: leader, exited: make(chan struct{}), call: &call{
		dir:  dir,
		tell: &teller{w: stderr},
		Call: toolcall.New(toolcall.Record{
			ID: id, Kind: toolcall.KindFork, Pid: pid, PlacedAfterUs: placed.Microseconds(),
			Cgroup: c.tree.CallGroup(id), Start: time.Now().Add(-placed).UTC(),
		}),
	}}
	c.mu.Lock()
	c.forks[pid] = fc
	c.mu.Unlock()
	if held {
		// Before it is followed: a leader killed while held then has
		// its exit reported, and the entry goes with it.
		if err := c.detector.Claim(pid, c.agentID); err != nil {
			log.G(ctx).WithError(err).Warn("claim a held tool call")
		}
	}
	go func() { // off the placement path: a held exec goes on meanwhile
		defer c.placing.Done()
		c.track(ctx, fc.call, func(ctx context.Context) (uint32, time.Time, error) {
			status, at, err := fc.wait(ctx, c.flushEvents)
			c.forget(fc, errors.Is(err, errExitUnseen))
			return status, at, err
		})
		c.refill(ctx)
	}()
	return fc
}

// forget drops a call's leader from the calls by pid, so that a later
// process with the same pid is a call of its own; a leader gone unseen (killed
// while held, as it was claimed) is dropped from the detector's calls too.
func (c *Container) forget(fc *forkCall, unseen bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forks[fc.pid] == fc {
		delete(c.forks, fc.pid)
		if unseen {
			c.detector.Forget(fc.pid)
		}
	}
}

// isLeader reports whether tid leads its thread group (is a process), in
// one system call: pidfd_open refuses other threads (EINVAL, or ENOENT on
// newer kernels). The common case of every held execve, so no /proc file
// is read for it. A task gone (ESRCH) counts as a leader: nothing to place.
func isLeader(tid uint32) bool {
	fd, err := unix.PidfdOpen(int(tid), 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH)
	}
	unix.Close(fd)
	return true
}

// threadGroup returns the process (thread group) of thread tid.
func threadGroup(tid uint32) (uint32, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", tid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return uint32(n), err
		}
	}
	return 0, fmt.Errorf("no Tgid in /proc/%d/status", tid)
}

// pidfd opens a non-blocking pidfd, which Go's poller can wait on.
func pidfd(pid uint32) (*os.File, error) {
	fd, err := unix.PidfdOpen(int(pid), unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	return os.NewFile(uintptr(fd), "pidfd"), nil
}

// placeChild moves a process that a call forked before it was moved.
func (c *Container) placeChild(ctx context.Context, ev bpf.Event) {
	c.mu.Lock()
	fc := c.forks[ev.Leader]
	c.mu.Unlock()
	if fc == nil {
		return
	}
	if err := c.tree.Move(fc.ID(), ev.Pid); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.G(ctx).WithError(err).WithField("call", fc.ID()).Warn("move a tool call's child")
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

// escaped kills a process that a tool call's process cloned into another
// cgroup (clone3 CLONE_INTO_CGROUP with an fd on C/agent, another call or a
// spare): it would live outside its call's limits, and in C/agent under the
// agent's protection.
func (c *Container) escaped(ctx context.Context, ev bpf.Event) {
	l := log.G(ctx).WithFields(log.Fields{"pid": ev.Pid, "parent": ev.Leader})
	p, err := pidfd(ev.Pid)
	if errors.Is(err, syscall.ESRCH) {
		return
	}
	if err == nil {
		err = unix.PidfdSendSignal(int(p.Fd()), unix.SIGKILL, nil, 0)
		p.Close()
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		l.WithError(err).Warn("kill a process that left its tool call's cgroup")
		return
	}
	l.Warn("killed a process that a tool call cloned into another cgroup (clone3 CLONE_INTO_CGROUP): it would have escaped the call's limits")
}

// unwatch stops detection for the container.
func (c *Container) unwatch() {
	c.waitWatch()
	if c.detector == nil {
		return
	}
	c.detector.Unwatch(c.agentID)
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, cg := range c.callCgroups {
		c.detector.RemoveCall(cg)
		delete(c.callCgroups, id)
	}
}
