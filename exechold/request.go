package exechold

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Request is a held execve or execveat.
type Request struct {
	// Pid is the caller, a thread, in the shim's pid namespace.
	Pid uint32
	// Exec says the caller descends from a process the runtime exec'd into
	// the running container, not from the container's init.
	Exec bool
	n    notif
	rc   syscall.RawConn // the listener's
}

// Valid reports whether the caller still waits in its execve: then Pid
// still names it, and a pidfd or /proc file opened before names it too. A
// Request made outside a Listener (a test's) has nothing to check.
func (r *Request) Valid() bool { return r.rc == nil || valid(r.rc, r.n.ID) }

// Limits of what Command reads of the caller's memory.
const (
	maxArgs   = 64
	maxString = 4096
)

// nativeArch is the audit architecture of the shim's own system calls; a
// 32-bit execve (int 0x80) has another, and other pointer sizes.
var nativeArch = map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}[runtime.GOARCH]

// Command reads the program path and argv the caller passed, from its
// memory while it waits (up to 64 arguments of up to 4 KiB). The caller's
// other threads could change them before the kernel reads them: what it
// says is a hint about what the process is, never a security decision.
func (r *Request) Command() (string, []string, error) {
	if nativeArch == 0 || r.n.Data.Arch != nativeArch {
		return "", nil, fmt.Errorf("execve of architecture %#x: not read", r.n.Data.Arch)
	}
	var pathAt, argvAt uint64
	switch int(r.n.Data.Nr) {
	case unix.SYS_EXECVE:
		pathAt, argvAt = r.n.Data.Args[0], r.n.Data.Args[1]
	case unix.SYS_EXECVEAT:
		pathAt, argvAt = r.n.Data.Args[1], r.n.Data.Args[2]
	default:
		return "", nil, fmt.Errorf("system call %d is no execve", r.n.Data.Nr)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", r.Pid))
	if err != nil {
		return "", nil, err
	}
	defer mem.Close()
	if !r.Valid() { // the file may be a later process's with the pid
		return "", nil, fmt.Errorf("execve of %d: %w", r.Pid, os.ErrProcessDone)
	}
	path, err := readString(mem, pathAt)
	if err != nil {
		return "", nil, fmt.Errorf("read execve path: %w", err)
	}
	var argv []string
	ptrs := make([]byte, 8*maxArgs)
	n, err := mem.ReadAt(ptrs, int64(argvAt))
	if n == 0 {
		return path, nil, fmt.Errorf("read execve argv: %w", err)
	}
	for i := 0; i+8 <= n && len(argv) < maxArgs; i += 8 {
		at := binary.NativeEndian.Uint64(ptrs[i:])
		if at == 0 {
			break
		}
		s, err := readString(mem, at)
		if err != nil {
			return path, argv, fmt.Errorf("read execve argv[%d]: %w", len(argv), err)
		}
		argv = append(argv, s)
	}
	return path, argv, nil
}

// readString reads a NUL-terminated string at addr.
func readString(mem *os.File, addr uint64) (string, error) {
	buf := make([]byte, maxString)
	n, err := mem.ReadAt(buf, int64(addr))
	if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
		return string(buf[:i]), nil
	}
	if err == nil {
		err = errors.New("no NUL within 4 KiB")
	}
	return "", err
}
