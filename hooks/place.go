package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/exechold"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// placeHeld places a tool call while its first execve waits in the kernel:
// the program starts in the call's cgroup, having charged nothing to
// C/agent. Anything else the caller execs continues at once. It says whose
// hold budget the execve is charged to: a call's process pays its own.
func (c *Container) placeHeld(ctx context.Context, r *exechold.Request) exechold.Payer {
	if r.Exec {
		// An exec's processes are in its own call's cgroup: none is a
		// fresh child of C/agent, and nothing needs asking.
		return exechold.Call
	}
	pid, fork, ok := c.pendingProcess(r.Pid)
	who := proc{pid: pid, held: r}
	if !ok {
		return c.heldMiss(ctx, who)
	}
	c.mu.Lock()
	_, placed := c.forks[pid]
	c.mu.Unlock()
	if placed {
		return exechold.Call // the same call's next execve: a PATH search, or one a signal restarted
	}
	prog, err := heldProgram(pid, r)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// A PATH search's miss: this execve fails, and the next is held
		// in turn. Placed now, a session found further on the PATH
		// would be a call.
		return exechold.Agent
	}
	// A session replaced by another program (exec CMD) is never the
	// agent: what a session runs is the model's.
	if !fork.Session {
		if why, ok := c.agentChild(pid, fork.Parent, prog); ok {
			c.joinAgent(ctx, pid, prog, why)
			return exechold.Agent
		}
	}
	if c.isSession(prog) {
		// Its exec is seen again once done, from the file it runs.
		c.keepSession(ctx, who, prog, fork.At)
		return exechold.Agent
	}
	c.place(ctx, who, fork.At, toolcall.KindFork)
	return exechold.Agent
}

// heldProgram returns what a held execve is about to run, as far as the
// caller's memory and root say; the error says why the file is unknown
// (os.ErrNotExist: there is none, and the execve fails).
func heldProgram(pid uint32, r *exechold.Request) (program, error) {
	path, argv, err := r.Command()
	if err != nil {
		return program{}, err
	}
	p := program{argv: argv}
	f, err := resolveIn(pid, path)
	if err == nil {
		p.exe, p.shebang = f.id, f.shebang
	}
	return p, err
}

// pendingProcess returns the process of thread tid, held in execve, and
// whether the detector has it as a fresh child of C/agent, and how.
func (c *Container) pendingProcess(tid uint32) (uint32, bpf.Fork, bool) {
	if f, ok := c.detector.Pending(tid, c.agentID); ok {
		return tid, f, true
	}
	if isLeader(tid) {
		return tid, bpf.Fork{}, false
	}
	// A thread other than its process's leader; the detector knows
	// processes.
	pid, err := threadGroup(tid)
	if err != nil {
		return tid, bpf.Fork{}, false
	}
	f, ok := c.detector.Pending(pid, c.agentID)
	return pid, f, ok
}

// heldMiss fails closed on a held execve the detector has no fresh child
// for: a process in C/agent that is not the agent (init, a process taken
// for it, their re-execs) is placed as a tool call, never left to run its
// program in C/agent. The detector misses a fresh child where its maps
// were full or its events lost; a session whose rearm failed lands here
// too, and what replaces it is a call.
func (c *Container) heldMiss(ctx context.Context, who proc) exechold.Payer {
	if c.isAgent(who.pid) {
		return exechold.Agent
	}
	p, err := c.agentPidfd(who)
	if err != nil {
		return exechold.Call // not in C/agent: an exec's, a call's, or gone
	}
	p.Close()
	if m, ok := c.detector.Member(who.pid, c.agentID); ok {
		// A call's process not moved yet: into its call, before its
		// program runs; an escapee's child dies.
		if m.Leader == 0 {
			c.killEscapee(ctx, who, 0)
			return exechold.Call
		}
		if err := c.reclaim(who, m); err == nil || errors.Is(err, syscall.ESRCH) {
			return exechold.Call
		}
	}
	log.G(ctx).WithField("pid", who.pid).Warn("a process in the agent's cgroup that the detector missed is placed as a tool call")
	c.place(ctx, who, bpf.Since(0), toolcall.KindFork)
	return exechold.Agent
}

// place moves a new tool call's leader (or a session) into a ready cgroup
// first, and does everything else after: until it is moved, what the
// leader charges stays with C/agent. who.held: its execve is held, and the
// detector learns only from here that it is a call. Nil where it is not
// placed: the container is going, the process is gone, or no cgroup could
// hold it; in the last case a call is killed, never left to run in
// C/agent, and a session is left with the agent (a kill would end the
// agent's session), said in the log.
func (c *Container) place(ctx context.Context, who proc, forked time.Duration, kind string) *forkCall {
	id, err := c.takeSpare(ctx)
	if err == nil {
		var fc *forkCall
		if fc, err = c.placeIn(ctx, id, who, forked, kind); err == nil {
			return fc
		}
		c.returnSpare(id)
	}
	switch {
	case errors.Is(err, errClosing), errors.Is(err, syscall.ESRCH):
	case kind == toolcall.KindSession:
		log.G(ctx).WithError(err).WithField("pid", who.pid).Warn("a session left unbounded with the agent")
	default:
		c.refuse(ctx, who, err)
	}
	return nil
}

// placeIn places who in spare cgroup id, and follows it to its end.
func (c *Container) placeIn(ctx context.Context, id string, who proc, forked time.Duration, kind string) (*forkCall, error) {
	session := kind == toolcall.KindSession
	if session {
		// Watched as C/agent before the session runs there, and pending
		// again, so that its commands and its replacement are seen.
		err := c.watchSession(id, true)
		if err == nil {
			err = c.detector.Rearm(who.pid, c.agentID)
		}
		if err != nil {
			c.unwatchSession(id)
			return nil, err
		}
	}
	fc, err := c.adopt(ctx, id, who, forked, kind)
	if err != nil {
		c.unwatchSession(id)
		return nil, err
	}
	c.mu.Lock()
	c.forks[who.pid] = fc
	c.mu.Unlock()
	if who.held != nil && !session {
		// Before it is followed: a leader killed while held then has
		// its exit reported, and the entry goes with it.
		if err := c.detector.Claim(who.pid, c.agentID); err != nil {
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
	return fc, nil
}

// refuse kills a process that is a tool call but that no cgroup could hold:
// left alone, its program would run in C/agent, outside every call's
// limits.
func (c *Container) refuse(ctx context.Context, who proc, why error) {
	l := log.G(ctx).WithFields(log.Fields{"pid": who.pid, "why": why.Error()})
	c.kill(who, c.agentWork, l, "kill a tool call that no cgroup could hold",
		"killed a tool call that no cgroup could hold: it would have run in the agent's cgroup")
}

// errNotInAgent: a pid the shim was told of names no process in C/agent
// (any more).
var errNotInAgent = fmt.Errorf("not in the agent's cgroup: %w", syscall.ESRCH)

// agentPidfd opens a pidfd on who, a process in C/agent or in a session's
// cgroup, where the agent's fresh children are: a pid reused by a process
// elsewhere (another container's, the host's) is refused.
func (c *Container) agentPidfd(who proc) (*os.File, error) {
	p, err := who.open(c.agentWork)
	if errors.Is(err, errElsewhere) {
		return nil, errNotInAgent
	}
	return p, err
}

// adopt makes process pid the leader of tool call id: it opens its pidfd
// (from then on it is this process that is followed, whatever reuses its
// pid), moves it into the call's cgroup and gives it the tool calls'
// oom_score_adj, before its program runs where it is held.
func (c *Container) adopt(ctx context.Context, id string, who proc, forked time.Duration, kind string) (*forkCall, error) {
	leader, err := c.agentPidfd(who)
	if err != nil {
		return nil, err
	}
	pid := who.pid
	if err := c.tree.Move(id, pid); err != nil {
		leader.Close()
		return nil, err
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
	return &forkCall{pid: pid, leader: leader, exited: make(chan struct{}), call: &call{
		dir:  c.tree.CallDir(id),
		tell: &teller{w: stderr},
		Call: toolcall.New(toolcall.Record{
			ID: id, Kind: kind, Pid: pid, PlacedAfterUs: placed.Microseconds(),
			Cgroup: c.tree.CallGroup(id), Start: time.Now().Add(-placed).UTC(),
		}),
	}}, nil
}
