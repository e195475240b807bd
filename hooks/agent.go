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
	start uint64 // its start time: a reused pid is another process
	// wrapper, where it joined as an init wrapper, is the file the
	// wrapper runs: it wraps the agent while it still runs that file, and
	// an exec into the agent's program (exec "$@") ends it.
	wrapper fileID
}

// program is what a process runs: its argv and the file it executes.
type program struct {
	argv []string
	exe  fileID
	// shebang is the interpreter line where exe is a script.
	shebang []string
}

// interpreted returns argv as the kernel runs it: a script's interpreter
// line first, and a `#!/usr/bin/env PROG` (or `env -S "PROG ARGS"`) unwrapped.
func (p program) interpreted() []string {
	argv := append(slices.Clone(p.shebang), p.argv...)
	if len(argv) > 1 && path.Base(argv[0]) == "env" {
		if rest, ok := strings.CutPrefix(argv[1], "-S"); ok {
			return append(strings.Fields(rest), argv[2:]...)
		}
		return argv[1:]
	}
	return argv
}

// isWrapper reports whether prog starts the container's main program.
func (p program) isWrapper() bool {
	argv := p.interpreted()
	if len(argv) == 0 {
		return false
	}
	switch name := path.Base(argv[0]); {
	case slices.Contains(initWrappers, name):
		return true
	case slices.Contains(shells, name):
		script, _ := parseShell(argv)
		return script != ""
	}
	return false
}

// wrapperFile returns the file a wrapper that joined with prog runs once its
// execve is done: a script's interpreter, as pid sees it.
func wrapperFile(pid uint32, prog program) fileID {
	if len(prog.shebang) == 0 {
		return prog.exe
	}
	if f, err := resolveProgram(pid, prog.interpreted()[0]); err == nil {
		return f.id
	}
	return fileID{}
}

// trackInit takes init for the agent, and for a wrapper where the OCI spec
// runs one.
func (c *Container) trackInit(ctx context.Context, pid uint32) {
	a := agentProc{}
	if len(c.st.Init) > 0 {
		// The spec's program, resolved in the container's root (init
		// waits there in `runc init`): a script's interpreter says
		// whether it is an entrypoint script.
		if f, err := resolveProgram(pid, c.st.Init[0]); err == nil {
			if p := (program{argv: c.st.Init, exe: f.id, shebang: f.shebang}); p.isWrapper() {
				a.wrapper = wrapperFile(pid, p)
			}
		}
	}
	var err error
	if a.start, err = startTime(pid); err != nil {
		log.G(ctx).WithError(err).Warn("read the start time of init")
	}
	c.agentMu.Lock()
	c.agents[pid] = a
	c.initPid = pid
	c.agentMu.Unlock()
}

// agent returns the process pid taken for the agent, if it is one and still
// the same process.
func (c *Container) agent(pid uint32) (agentProc, bool) {
	c.agentMu.Lock()
	a, ok := c.agents[pid]
	c.agentMu.Unlock()
	if !ok {
		return agentProc{}, false
	}
	start, err := startTime(pid)
	return a, err == nil && start == a.start
}

// isAgent reports whether pid is a process taken for the agent.
func (c *Container) isAgent(pid uint32) bool {
	_, ok := c.agent(pid)
	return ok
}

// agentChild decides whether pid, which parent forked in C/agent and which
// is about to run (or runs) prog, is the agent, and says why. Only what an
// agent process forks can be; the parent is the one that forked it, not
// one that adopted it since.
func (c *Container) agentChild(pid, parent uint32, prog program) (string, bool) {
	a, ok := c.agent(parent)
	if !ok {
		return "", false // no agent process, or the pid names another one now
	}
	pexe, err := exeOf(parent)
	if err != nil {
		return "", false
	}
	if a.wrapper != (fileID{}) && a.wrapper == pexe {
		return fmt.Sprintf("started by the agent's wrapper (pid %d)", parent), true
	}
	if pargv, err := cmdline(parent); err == nil && prog.exe == pexe {
		if ps, ok := relaunchScript(parent, program{argv: pargv, exe: pexe}); ok {
			if cs, ok := relaunchScript(pid, prog); ok && cs == ps {
				return fmt.Sprintf("relaunch of the agent (pid %d)", parent), true
			}
		}
	}
	if named := c.policy.Agent; named != "" && prog.exe != (fileID{}) {
		if f, err := resolveIn(pid, named); err == nil {
			if cs, ok := relaunchScript(pid, prog); f.id == prog.exe || ok && cs == f.id {
				return "named by io.agentcgroup.agent", true
			}
		}
	}
	return "", false
}

// relaunchOptions are the interpreter options a relaunch may add before
// its main script: the heap and stack sizes Node is relaunched for, and
// options that run no code of their own.
var relaunchOptions = []string{"--max-old-space-size=", "--max-semi-space-size=", "--stack-size=",
	"--expose-gc", "--no-warnings", "--enable-source-maps", "--no-deprecation"}

// relaunchScript returns the main script of a program run by an
// interpreter: its first operand, a regular file, where every option
// before it is a relaunchOptions one. A program given code on its command
// line (-e, --eval, -r, -c), or any other option, has none.
func relaunchScript(pid uint32, p program) (fileID, bool) {
	for _, a := range p.argv[min(1, len(p.argv)):] {
		if strings.HasPrefix(a, "-") {
			if slices.ContainsFunc(relaunchOptions, func(o string) bool {
				return a == o || strings.HasSuffix(o, "=") && strings.HasPrefix(a, o)
			}) {
				continue
			}
			return fileID{}, false
		}
		f, err := resolveIn(pid, a)
		return f.id, err == nil && f.regular
	}
	return fileID{}, false
}

// joinAgent takes pid, running prog, for the agent.
func (c *Container) joinAgent(ctx context.Context, pid uint32, prog program, why string) {
	a := agentProc{}
	var err error
	if a.start, err = startTime(pid); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.G(ctx).WithError(err).WithField("pid", pid).Warn("read the start time of an agent process")
	}
	if prog.isWrapper() {
		a.wrapper = wrapperFile(pid, prog)
	}
	c.detector.Forget(pid, c.agentID)
	c.agentMu.Lock()
	c.agents[pid] = a
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
