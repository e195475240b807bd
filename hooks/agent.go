package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/containerd/log"

	"github.com/agentcgroup/agentcgroup/state"
)

// The agent is the container's main program, wherever its start puts it:
//   - init;
//   - what a wrapper in the agent runs: every program started by an agent
//     process that is an init wrapper (tini and docker-init, dumb-init,
//     catatonit, timeout) or a shell running a script file (an entrypoint
//     script without exec). A shell given -c, or reading its commands, is
//     the agent itself, and what it runs are tool calls;
//   - a relaunch: a program an agent process starts with the same main file
//     as its own (Node relaunching itself with a larger heap);
//   - the program the io.agentcgroup.agent annotation names, started by an
//     agent process.
// Everything else an agent process starts is a tool call, its own helpers
// included: each is memory the agent can lose without dying. Whether a
// process wraps the agent is decided once, from the program it ran when it
// joined (init's from the OCI spec, which the operator wrote), so that a
// later exec cannot make it one; files are compared by inode, never by the
// name a caller gives.

// initWrappers are the programs that start the container's main program as
// a child and wait for it.
var initWrappers = []string{"tini", "tini-static", "docker-init", "dumb-init", "catatonit", "timeout"}

// shells are the programs that run an entrypoint script.
var shells = []string{"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh"}

// agentProc is a process taken for the agent.
type agentProc struct {
	start   uint64 // its start time: a reused pid is another process
	wrapper bool   // what it starts is the agent too
}

// program is what a process runs: its argv and the file it executes.
type program struct {
	argv []string
	exe  fileID
	// shebang is the interpreter line where exe is a script.
	shebang []string
}

// isWrapper reports whether prog starts the container's main program.
func (p program) isWrapper() bool {
	argv := p.argv
	if len(p.shebang) > 0 {
		argv = append(slices.Clone(p.shebang), argv...) // as the kernel runs it
	}
	if len(argv) == 0 {
		return false
	}
	name := path.Base(argv[0])
	if name == "env" && len(argv) > 1 { // #!/usr/bin/env sh
		argv = argv[1:]
		name = path.Base(argv[0])
	}
	switch {
	case slices.Contains(initWrappers, name):
		return true
	case slices.Contains(shells, name):
		return scriptOperand(argv) != ""
	}
	return false
}

// scriptOperand returns the script a shell's argv runs, "" where it runs -c
// commands or reads them (a session).
func scriptOperand(argv []string) string {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--":
			if i+1 < len(argv) {
				return argv[i+1]
			}
			return ""
		case a == "-s" || strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.ContainsAny(a[1:], "cs"):
			return "" // commands from -c or standard input
		case a == "-o" || a == "+o" || a == "-O" || a == "+O" || a == "--rcfile" || a == "--init-file":
			i++
		case strings.HasPrefix(a, "-") || strings.HasPrefix(a, "+"):
		default:
			return a
		}
	}
	return ""
}

// trackInit takes init for the agent, and for a wrapper where the OCI spec
// runs one.
func (c *Container) trackInit(ctx context.Context, pid uint32) {
	p := program{argv: c.st.Init}
	if len(p.argv) > 0 {
		// The spec's program, resolved in the container's root (init
		// waits there in `runc init`): a script's interpreter says
		// whether it is an entrypoint script.
		if f, err := resolveProgram(pid, p.argv[0]); err == nil {
			p.shebang = f.shebang
		}
	}
	start, err := startTime(pid)
	if err != nil {
		log.G(ctx).WithError(err).Warn("read the start time of init")
	}
	c.agentMu.Lock()
	c.agents[pid] = agentProc{start: start, wrapper: p.isWrapper()}
	c.initPid = pid
	c.agentMu.Unlock()
}

// isAgent reports whether pid is a process taken for the agent, and still
// the same process.
func (c *Container) isAgent(pid uint32) bool {
	c.agentMu.Lock()
	a, ok := c.agents[pid]
	c.agentMu.Unlock()
	if !ok {
		return false
	}
	start, err := startTime(pid)
	return err == nil && start == a.start
}

// agentChild decides whether pid, a fresh child of C/agent about to run (or
// running) prog, is the agent, and says why. Only the children of agent
// processes can be.
func (c *Container) agentChild(pid uint32, prog program) (string, bool) {
	ppid, err := parentOf(pid)
	if err != nil {
		return "", false
	}
	if !c.isAgent(ppid) {
		return "", false // no agent process, or the pid names another one now
	}
	c.agentMu.Lock()
	parent := c.agents[ppid]
	c.agentMu.Unlock()
	if parent.wrapper {
		return fmt.Sprintf("started by the agent's wrapper (pid %d)", ppid), true
	}
	pargv, _ := cmdline(ppid)
	if ps, ok := scriptOf(ppid, program{argv: pargv}); ok {
		if cs, ok := scriptOf(pid, prog); ok && cs == ps {
			return fmt.Sprintf("relaunch of the agent (pid %d)", ppid), true
		}
	}
	if named := c.policy.Agent; named != "" && prog.exe != (fileID{}) {
		if f, err := resolveIn(pid, named); err == nil {
			if cs, ok := scriptOf(pid, prog); f.id == prog.exe || ok && cs == f.id {
				return "named by io.agentcgroup.agent", true
			}
		}
	}
	return "", false
}

// scriptOf returns the main script of a program run by an interpreter: the
// script it executes (a file with an interpreter line), else its first
// operand where that is a regular file. A program given its code on the
// command line (sh -c, python3 -c) has none, nor has a native program.
func scriptOf(pid uint32, p program) (fileID, bool) {
	if len(p.shebang) > 0 {
		return p.exe, p.exe != fileID{}
	}
	for _, a := range p.argv[min(1, len(p.argv)):] {
		switch {
		case a == "-c" || a == "-e" || a == "--eval" || a == "-p" || a == "--print":
			return fileID{}, false // code on the command line
		case strings.HasPrefix(a, "-"):
			continue
		}
		f, err := resolveIn(pid, a)
		return f.id, err == nil && f.regular
	}
	return fileID{}, false
}

// joinAgent takes pid, running prog, for the agent.
func (c *Container) joinAgent(ctx context.Context, pid uint32, prog program, why string) {
	start, err := startTime(pid)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).WithField("pid", pid).Warn("read the start time of an agent process")
	}
	c.detector.Forget(pid, c.agentID)
	c.agentMu.Lock()
	c.agents[pid] = agentProc{start: start, wrapper: prog.isWrapper()}
	c.st.Agent = append(c.st.Agent, state.AgentProcess{Pid: pid, Command: prog.argv, Why: why})
	err = state.Save(c.dir, &c.st) // under agentMu: a later list never loses to an earlier one
	c.agentMu.Unlock()
	if err != nil {
		log.G(ctx).WithError(err).Warn("save state")
	}
	log.G(ctx).WithFields(log.Fields{"pid": pid, "command": prog.argv, "why": why}).Info("taken for the agent, not a tool call")
}

// defaultPath is where a program named without a slash is looked up, as
// runc does with the PATH most images set.
var defaultPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// resolveProgram resolves a program as execvp would for process pid.
func resolveProgram(pid uint32, name string) (resolved, error) {
	if strings.Contains(name, "/") {
		return resolveIn(pid, name)
	}
	for _, dir := range defaultPath {
		if f, err := resolveIn(pid, path.Join(dir, name)); err == nil && f.regular {
			return f, nil
		}
	}
	return resolved{}, fmt.Errorf("%s: not found in %s", name, strings.Join(defaultPath, ":"))
}
