package hooks

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStderrOfNeverWaits: the writer on a forked call's stderr delivers the
// line to a pipe or socket that has room, and fails at once, without
// waiting, on one the agent does not drain; the call's own fd stays
// blocking.
func TestStderrOfNeverWaits(t *testing.T) {
	for _, kind := range []string{"pipe", "socket", "terminal"} {
		t.Run(kind, func(t *testing.T) {
			var r, w *os.File
			switch kind {
			case "pipe":
				var err error
				if r, w, err = os.Pipe(); err != nil {
					t.Fatal(err)
				}
			case "terminal":
				r, w = openPty(t)
			default:
				fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
				if err != nil {
					t.Fatal(err)
				}
				r, w = os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
			}
			defer r.Close()
			// The "call": a process whose fd 2 is w.
			cmd := exec.Command("sleep", "60")
			cmd.Stderr = w
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			w.Close()
			pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			leader := os.NewFile(uintptr(pidfd), "pidfd")
			defer leader.Close()

			sw, err := stderrOf(leader)
			if err != nil {
				t.Fatal(err)
			}
			defer sw.Close()
			if _, err := io.WriteString(sw, "told\n"); err != nil {
				t.Fatalf("write with room: %v", err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "told\n" {
				t.Fatalf("read %q, %v", buf, err)
			}
			// Fill the stream as an agent that stops reading would leave it.
			filler := strings.Repeat("x", 4096)
			done := make(chan error, 1)
			go func() {
				for {
					if _, err := io.WriteString(sw, filler); err != nil {
						done <- err
						return
					}
				}
			}()
			select {
			case err := <-done:
				if !errors.Is(err, syscall.EAGAIN) {
					t.Errorf("write to a full %s: %v, want EAGAIN", kind, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("a write to a full %s waited", kind)
			}
			// The call's own stderr is still blocking.
			fd, err := unix.PidfdGetfd(pidfd, 2, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
				t.Errorf("the call's stderr flags %#x (%v): made non-blocking", fl, err)
			}
		})
	}
}

// openPty opens a pseudo-terminal in raw mode: its master, to read, and
// its slave, the call's stderr.
func openPty(t *testing.T) (master, slave *os.File) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST // no \n -> \r\n
	tio.Lflag &^= unix.ECHO | unix.ICANON
	if err := unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	return m, s
}

// TestStderrOfDevice: a device that is not a terminal (/dev/null here) is
// not written: a write to it may block.
func TestStderrOfDevice(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	cmd.Stderr = null
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	null.Close()
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	leader := os.NewFile(uintptr(pidfd), "pidfd")
	defer leader.Close()
	if sw, err := stderrOf(leader); !errors.Is(err, errMayBlock) {
		t.Errorf("stderr on /dev/null: %T, %v; want errMayBlock", sw, err)
	}
}

// TestStreamOf: how each kind of stderr is written; a file only on a local
// filesystem, never on FUSE or NFS, whose writes can wait on a server.
func TestStreamOf(t *testing.T) {
	const ext4, fuse, nfs, tmpfs = 0xef53, 0x65735546, 0x6969, 0x01021994
	for _, tc := range []struct {
		name     string
		mode     uint32
		terminal bool
		fs       int64
		want     stderrKind
	}{
		{"socket", unix.S_IFSOCK, false, 0, stream},
		{"pipe", unix.S_IFIFO, false, 0, reopened},
		{"terminal", unix.S_IFCHR, true, 0, reopened},
		{"other device", unix.S_IFCHR, false, 0, unwritable},
		{"block device", unix.S_IFBLK, false, 0, unwritable},
		{"file on ext4", unix.S_IFREG, false, ext4, localFile},
		{"file on tmpfs", unix.S_IFREG, false, tmpfs, localFile},
		{"file on FUSE", unix.S_IFREG, false, fuse, unwritable},
		{"file on NFS", unix.S_IFREG, false, nfs, unwritable},
	} {
		if got := streamOf(tc.mode, tc.terminal, tc.fs); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
