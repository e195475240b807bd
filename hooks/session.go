package hooks

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf"
	"github.com/agentcgroup/agentcgroup/toolcall"
	"github.com/agentcgroup/agentcgroup/tree/layout"
	"github.com/containerd/log"
)

// A session is a program the agent keeps in C/agent and feeds commands to:
// a shell that reads its commands (on a pipe or a terminal), tmux, screen.
// Each command it runs is then a fresh child of C/agent, and so a tool call
// of its own. A session is told by the file that runs, by inode, from the
// configured session programs (io.agentcgroup.sessions) as the container's
// root has them, never by argv[0], which the caller chooses; argv[0] only
// narrows a file that serves many programs (busybox: sh, but also cat)
// to the one that runs. And only while its options say it reads commands
// (no -c command, no script). A session
// stays pending in the detector, so that the program it is replaced by
// (`exec CMD`) is a tool call.

// isSession reports whether pid, a fresh child of C/agent running prog, is
// a session.
func (c *Container) isSession(prog program) bool {
	if len(prog.shebang) > 0 || prog.exe == (fileID{}) {
		return false
	}
	names := c.sessionFiles()[prog.exe]
	if len(prog.argv) == 0 {
		return false
	}
	name := strings.TrimPrefix(path.Base(prog.argv[0]), "-") // a login shell's "-bash"
	return slices.Contains(names, name) && readsCommands(name, prog.argv)
}

// sessionFiles resolves the session programs in the container's root, once
// (it does not change): a name is looked up where a shell is installed, a
// path taken as it is.
func (c *Container) sessionFiles() map[fileID][]string {
	c.sessionsOnce.Do(func() {
		c.sessions = make(map[fileID][]string)
		if c.policy.Sessions == "" {
			return
		}
		for _, s := range strings.Split(c.policy.Sessions, ",") {
			paths := []string{s}
			if !strings.HasPrefix(s, "/") {
				paths = paths[:0]
				for _, dir := range defaultPath {
					paths = append(paths, path.Join(dir, s))
				}
			}
			for _, p := range paths {
				f, err := resolveIn(c.initPid, p)
				if name := path.Base(p); err == nil && f.regular && !slices.Contains(c.sessions[f.id], name) {
					c.sessions[f.id] = append(c.sessions[f.id], name)
				}
			}
		}
	})
	return c.sessions
}

// readsCommands reports whether a session program, started with argv, reads
// the commands it runs: no -c command and no script operand, by the
// program's own option grammar.
func readsCommands(name string, argv []string) bool {
	switch name {
	case "fish":
		return fishReadsCommands(argv)
	case "tmux":
		return tmuxReadsCommands(argv)
	case "screen":
		return true
	}
	_, reads := parseShell(argv)
	return reads
}

// shellLongValues are the long options of bash that take the next word.
var shellLongValues = []string{"--rcfile", "--init-file"}

// parseShell parses a POSIX shell's options (bash, dash, ash, ksh, zsh):
// -c takes the commands from the command line; each o or O in an option
// word takes a value, the rest of the word (zsh's -oerrexit) or else the
// next word (-o pipefail, -euo pipefail, +O extglob); the first operand is
// a script, unless -s reads standard input. It returns the script, and
// whether the shell reads its commands (a session).
func parseShell(argv []string) (script string, reads bool) {
	stdin := false
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "--" || a == "-":
			if i+1 < len(argv) && !stdin {
				return argv[i+1], false
			}
			return "", true
		case strings.HasPrefix(a, "--"):
			if slices.Contains(shellLongValues, a) {
				i++
			}
		case len(a) > 1 && (a[0] == '-' || a[0] == '+'):
			for k := 1; k < len(a); k++ {
				switch a[k] {
				case 'c':
					return "", false
				case 's':
					stdin = true
				case 'o', 'O':
					if k == len(a)-1 {
						i++ // its value is the next word
					}
					k = len(a) // or the rest of this one
				}
			}
		default:
			if stdin {
				return "", true // -s's positional parameters
			}
			return a, false
		}
	}
	return "", true
}

// tmuxReadsCommands: tmux's own -c, before its command, runs a shell
// command; after it (new-session -c DIR) -c is a directory.
func tmuxReadsCommands(argv []string) bool {
	for _, a := range argv[min(1, len(argv)):] {
		switch {
		case a == "-c":
			return false
		case !strings.HasPrefix(a, "-"):
			return true // the command
		}
	}
	return true
}

// fishReadsCommands parses fish's options: -c/--command takes the commands
// from the command line; -C/--init-command, -d/--debug, -o/--debug-output,
// -p/--profile, -f/--features and -D/--debug-stack-frames take a value;
// the first operand is a script.
func fishReadsCommands(argv []string) bool {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		long, _, hasValue := strings.Cut(a, "=")
		switch {
		case a == "-c" || long == "--command" || strings.HasPrefix(a, "-c"):
			return false
		case a == "--":
			return i+1 == len(argv)
		case slices.Contains([]string{"--init-command", "--debug", "--debug-output", "--profile", "--features", "--debug-stack-frames"}, long):
			if !hasValue {
				i++
			}
		case a == "-C" || a == "-d" || a == "-o" || a == "-p" || a == "-f" || a == "-D":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return false // a script
		}
	}
	return true
}

// keepSession runs session who in a cgroup of its own, bounded as a tool
// call is and watched as C/agent is: each command it runs is a call of its
// own, and what it does itself (builtins, subshells, command
// substitutions, a fork bomb typed into it) is held to its limits, never
// charged to C/agent. It stays pending in the detector, so that the
// program it is replaced by (exec CMD) is seen.
func (c *Container) keepSession(ctx context.Context, who proc, prog program, forked time.Duration) {
	if fc := c.place(ctx, who, forked, toolcall.KindSession); fc != nil {
		fc.Named(prog.argv, false)
		c.calls.save()
		log.G(ctx).WithFields(log.Fields{"pid": who.pid, "command": prog.argv, "session": fc.ID()}).Debug("session: its commands are the tool calls")
	}
}

// watchSession makes call cgroup id a session's for the detector (or a
// call's again), before a process runs there as such.
func (c *Container) watchSession(id string, session bool) error {
	c.mu.Lock()
	cg, ok := c.callCgroups[id]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("cgroup of %s: not watched", id)
	}
	var err error
	if session {
		err = c.detector.AddSession(cg, c.agentID)
	} else {
		err = c.detector.AddCall(cg, c.agentID)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	if session {
		c.sessionCalls[id] = true
	} else {
		delete(c.sessionCalls, id)
	}
	c.mu.Unlock()
	return nil
}

// sessionReplaced makes a session that executed another program (exec CMD)
// a tool call running it: what it forks from then on is the call's.
func (c *Container) sessionReplaced(ctx context.Context, fc *forkCall, ev bpf.Event) {
	l := log.G(ctx).WithFields(log.Fields{"pid": ev.Pid, "call": fc.ID()})
	if err := c.watchSession(fc.ID(), false); err != nil {
		l.WithError(err).Warn("watch a replaced session as a tool call")
	}
	if err := c.detector.Claim(ev.Pid, c.agentID); err != nil {
		l.WithError(err).Warn("claim a replaced session as a tool call")
	}
	fc.Became(toolcall.KindFork, fc.command(ev))
	c.calls.save()
	if c.governor != nil {
		c.governor.Watch(c.st.ID, fc.Call)
	}
	l.WithField("command", ev.Args).Debug("a session replaced by a program: a tool call")
}

// inSession reports whether group (relative to the cgroup2 mount) is a
// session's cgroup of the container.
func (c *Container) inSession(group string) bool {
	dir, id := path.Split(group)
	if path.Clean(dir) != path.Join(c.tree.Group, layout.Tools) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessionCalls[id]
}

// unwatchSession makes call cgroup id a call's again for the detector,
// where a session could not be placed there.
func (c *Container) unwatchSession(id string) {
	c.mu.Lock()
	session := c.sessionCalls[id]
	c.mu.Unlock()
	if session {
		_ = c.watchSession(id, false)
	}
}
