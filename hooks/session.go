package hooks

import (
	"context"
	"path"
	"slices"
	"strings"

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

// keepSession leaves session pid with the agent, pending in the detector.
func (c *Container) keepSession(ctx context.Context, pid uint32, prog program) {
	if err := c.detector.Rearm(pid, c.agentID); err != nil {
		log.G(ctx).WithError(err).WithField("pid", pid).Warn("a session's next program will not be seen")
	}
	log.G(ctx).WithFields(log.Fields{"pid": pid, "command": prog.argv}).Debug("session: its commands are the tool calls")
}
