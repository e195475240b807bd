package hooks

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/exechold"
)

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

// fileID names a file by device and inode, whatever path reaches it.
type fileID struct{ dev, ino uint64 }

func idOf(st *unix.Stat_t) fileID { return fileID{uint64(st.Dev), st.Ino} }

// resolved is a file a process names.
type resolved struct {
	id      fileID
	regular bool
	// shebang is the interpreter line of a script: the interpreter and its
	// optional argument.
	shebang []string
}

// resolveIn resolves path as process pid sees it: from its root, relative
// paths from its working directory, symbolic links inside its root. A
// process's own executable and open files in procfs (/proc/self/exe, which
// busybox runs its applets through; /proc/self/fd/N, /dev/fd/N where the
// container's /dev/fd is procfs's) are what the kernel gives pid.
func resolveIn(pid uint32, p string) (resolved, error) {
	if own, ok := ownFile(pid, p); ok {
		return resolveOwn(own)
	}
	if !filepath.IsAbs(p) {
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			return resolved{}, err
		}
		p = filepath.Join(cwd, p)
	}
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return resolved{}, err
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, p, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return resolved{}, fmt.Errorf("resolve %s in the root of %d: %w", p, pid, err)
	}
	defer unix.Close(fd)
	return resolvedOf(fd)
}

// ownFile maps the exact paths of a process's own files in procfs to the
// shim's view of them; nothing else under /proc or /dev is taken from the
// shim's root.
func ownFile(pid uint32, p string) (string, bool) {
	if p == "/proc/self/exe" {
		return fmt.Sprintf("/proc/%d/exe", pid), true
	}
	n, ok := strings.CutPrefix(p, "/proc/self/fd/")
	if !ok {
		if n, ok = strings.CutPrefix(p, "/dev/fd/"); ok {
			// Only where /dev/fd is procfs's link: /dev is the container's.
			ok = devFdIsProcs(pid)
		}
	}
	if !ok || n == "" || strings.Trim(n, "0123456789") != "" {
		return "", false
	}
	return fmt.Sprintf("/proc/%d/fd/%s", pid, n), true
}

// devFdIsProcs reports whether /dev/fd in pid's root links to procfs's
// /proc/self/fd, /dev resolved inside that root.
func devFdIsProcs(pid uint32) bool {
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(root)
	dev, err := unix.Openat2(root, "/dev", &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return false
	}
	defer unix.Close(dev)
	buf := make([]byte, 64)
	n, err := unix.Readlinkat(dev, "fd", buf)
	return err == nil && string(buf[:n]) == "/proc/self/fd"
}

// resolveOwn resolves a path of the shim's procfs, whose links the kernel
// follows to the process's files.
func resolveOwn(p string) (resolved, error) {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return resolved{}, fmt.Errorf("resolve %s: %w", p, err)
	}
	defer unix.Close(fd)
	return resolvedOf(fd)
}

// resolvedOf describes the file behind the O_PATH descriptor fd.
func resolvedOf(fd int) (resolved, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return resolved{}, err
	}
	r := resolved{id: idOf(&st), regular: st.Mode&unix.S_IFMT == unix.S_IFREG}
	if r.regular {
		r.shebang = readShebang(fd)
	}
	return r, nil
}

// readShebang returns the interpreter line of the regular file behind the
// O_PATH descriptor fd, nil where it has none.
func readShebang(fd int) []string {
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDONLY|unix.O_NONBLOCK, 0) // reopens the file fd names
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, 256) // the kernel reads no further either
	n, _ := f.Read(buf)
	line, ok := strings.CutPrefix(string(buf[:n]), "#!")
	if !ok {
		return nil
	}
	line, _, _ = strings.Cut(line, "\n")
	// As the kernel splits it: the interpreter up to a space or tab, then
	// the rest as one optional argument.
	line = strings.Trim(line, " \t")
	interp, arg := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		interp, arg = line[:i], strings.Trim(line[i:], " \t")
	}
	if interp == "" {
		return nil
	}
	if arg != "" {
		return []string{interp, arg}
	}
	return []string{interp}
}

// exeOf returns the file process pid executes.
func exeOf(pid uint32) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err != nil {
		return fileID{}, err
	}
	return idOf(&st), nil
}

// cmdline returns process pid's argv.
func cmdline(pid uint32) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}

// startTime returns when process pid started, in clock ticks after boot:
// with the pid, it names one process.
func startTime(pid uint32) (uint64, error) { return statField(pid, 22) }

// parentOf returns the parent of process pid.
func parentOf(pid uint32) (uint32, error) {
	n, err := statField(pid, 4)
	return uint32(n), err
}

// statField returns field n (from 1, as proc(5) numbers them; n > 2) of
// /proc/<pid>/stat.
func statField(pid uint32, n int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// After the command in parentheses, which may hold anything: field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < n-2 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[n-3], 10, 64)
}

// proc is a process the shim was told of, and what proves, when the shim
// acts on it, that its pid still names it: when it started (from the
// detector), or the execve it is held in. With pid_max at 32,768, pids wrap
// in seconds on a busy host.
type proc struct {
	pid   uint32
	start uint64            // boot time in ns, as the detector reports it; 0: unknown
	held  *exechold.Request // the execve it waits in; nil: none
}

// userHZ is the unit of /proc's times: USER_HZ, 100 on every Linux ABI.
const userHZ = 100

var (
	// errElsewhere: the pid names a process in a cgroup the caller does
	// not act on (moved, reused, or never the container's).
	errElsewhere = errors.New("in another cgroup")
	// errReused: the pid names a process other than the one meant.
	errReused = fmt.Errorf("pid reused: %w", syscall.ESRCH)
)

// open opens a pidfd on the process and checks, once it is open, that it is
// the process meant and that in accepts its cgroup (relative to the cgroup2
// mount): from then on the pidfd names it, whatever reuses the pid.
func (p proc) open(in func(cgroup string) bool) (*os.File, error) {
	fd, err := pidfd(p.pid)
	if err != nil {
		return nil, err
	}
	cg, err := p.check(fd)
	if err == nil && !in(cg) {
		err = errElsewhere
	}
	if err != nil {
		fd.Close()
		return nil, err
	}
	return fd, nil
}

// check returns the cgroup of the process behind pidfd fd, and an error
// where it is not p: the /proc files read after the pidfd is open and
// checked live after are its own, not a later process's with the pid.
func (p proc) check(fd *os.File) (string, error) {
	gone := fmt.Errorf("pid %d: %w", p.pid, syscall.ESRCH)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.pid))
	if err != nil {
		return "", gone
	}
	var start uint64
	if p.start != 0 {
		if start, err = startTime(p.pid); err != nil {
			return "", gone
		}
	}
	if err := unix.PidfdSendSignal(int(fd.Fd()), 0, nil, 0); err != nil {
		return "", gone
	}
	if p.start != 0 && start != p.start/(1e9/userHZ) || p.held != nil && !p.held.Valid() {
		return "", errReused
	}
	for _, line := range strings.Split(string(b), "\n") {
		if g, ok := strings.CutPrefix(line, "0::"); ok {
			return g, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 line in /proc/%d/cgroup", p.pid)
}
