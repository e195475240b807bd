// Package holdtest does in a test process what an OCI runtime does for a
// container with the hold: install a filter that notifies on execve and
// execveat, send its listener to the socket, and execute the program. The
// test binary itself is that process: Command runs it again with the
// socket in its environment, and Run, first in TestMain, takes over.
package holdtest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	envSocket = "HOLDTEST_SOCKET"
	envExec   = "HOLDTEST_EXEC"
)

// Command runs argv under the hold's filter, its listener sent to socket
// with the state runc sends for a container's init.
func Command(socket string, argv ...string) *exec.Cmd {
	self, _ := os.Executable()
	cmd := exec.Command(self, argv...)
	cmd.Env = append(os.Environ(), envSocket+"="+socket)
	return cmd
}

// ExecCommand is Command with the state runc sends for a process exec'd
// into a running container.
func ExecCommand(socket string, argv ...string) *exec.Cmd {
	cmd := Command(socket, argv...)
	cmd.Env = append(cmd.Env, envExec+"=1")
	return cmd
}

// Run, in TestMain, makes the test binary the held process when Command
// started it; it then does not return.
func Run() {
	socket := os.Getenv(envSocket)
	if socket == "" {
		return
	}
	st := specs.ContainerProcessState{
		Version: specs.Version, Fds: []string{specs.SeccompFdName}, Pid: os.Getpid(),
		State: specs.State{Version: specs.Version, ID: "holdtest", Status: specs.StateCreating, Pid: os.Getpid()},
	}
	if os.Getenv(envExec) != "" {
		st.State.Status, st.State.Pid = specs.StateRunning, os.Getppid()
	}
	state, err := json.Marshal(st)
	if err != nil {
		fmt.Fprintln(os.Stderr, "holdtest:", err)
		os.Exit(111)
	}
	err = execHeld(socket, state, os.Args[1:], os.Environ())
	fmt.Fprintln(os.Stderr, "holdtest:", err)
	os.Exit(111)
}

// auditArch is the seccomp_data arch of this build's system calls.
var auditArch = map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}

// execHeld installs the filter on the calling thread, sends its listener to
// socket and replaces the process with argv; it returns only on error.
func execHeld(socket string, state []byte, argv []string, env []string) error {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("no seccomp arch for %s", runtime.GOARCH)
	}
	runtime.LockOSThread() // the filter is this thread's, and this thread executes argv
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: arch},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 2, K: unix.SYS_EXECVE},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: unix.SYS_EXECVEAT},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_USER_NOTIF},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return err
	}
	if _, _, err := conn.WriteMsgUnix(state, unix.UnixRights(int(fd)), nil); err != nil {
		return fmt.Errorf("send seccomp listener: %w", err)
	}
	conn.Close()
	unix.Close(int(fd))
	return syscall.Exec(argv[0], argv, env)
}
