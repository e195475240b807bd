// Package cgroupfs has the small cgroup v2 file operations that
// containerd/cgroups/v3 lacks, for agentcgroup's use; everything else (child
// cgroups, resources, kill, memory events) goes through v3's cgroup2.Manager.
// What is here: cgroup.events read without v3's errors-as-empty (Populated,
// Frozen), a freeze that does not wait for the kernel to finish (v3's Freeze
// spins until it has, which a frozen-while-allocating call can take seconds
// to reach), waiting for a cgroup to empty, cgroup IDs as BPF sees them, PSI
// totals and triggers, and kernfs notifications in one epoll set (Poller).
// It imports nothing of the project.
package cgroupfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is where the unified hierarchy is mounted on a cgroup v2 host.
const Root = "/sys/fs/cgroup"

// Unlimited is a limit file's "max".
const Unlimited int64 = -1

// Path joins a group path such as /default/t1 to the mount point.
func Path(group string) string { return filepath.Join(Root, group) }

func readFile(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return bytes.TrimSpace(b), err
}

// ReadUint reads a file holding one unsigned number, such as memory.peak.
func ReadUint(dir, name string) (uint64, error) {
	b, err := readFile(dir, name)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", filepath.Join(dir, name), err)
	}
	return v, nil
}

// ReadLimit reads a limit file such as memory.max: Unlimited for "max".
func ReadLimit(dir, name string) (int64, error) {
	b, err := readFile(dir, name)
	if err != nil {
		return 0, err
	}
	if string(b) == "max" {
		return Unlimited, nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", filepath.Join(dir, name), err)
	}
	return v, nil
}

// WriteLimit writes a limit file; Unlimited is written as "max".
func WriteLimit(dir, name string, v int64) error {
	s := "max"
	if v != Unlimited {
		s = strconv.FormatInt(v, 10)
	}
	return WriteString(dir, name, s)
}

// WriteString writes v to a cgroup file such as memory.oom.group.
func WriteString(dir, name, v string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0); err != nil {
		return fmt.Errorf("write %s=%s: %w", filepath.Join(dir, name), v, err)
	}
	return nil
}

// ReadKV reads a flat keyed file ("key value" lines) such as memory.events.
func ReadKV(dir, name string) (map[string]uint64, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[string]uint64)
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse %s line %q: %w", filepath.Join(dir, name), s.Text(), err)
		}
		out[k] = n
	}
	return out, s.Err()
}

// Populated reports cgroup.events "populated": whether any process is in the
// cgroup or below it.
func Populated(dir string) (bool, error) {
	kv, err := ReadKV(dir, "cgroup.events")
	if err != nil {
		return false, err
	}
	return kv["populated"] == 1, nil
}

// SetFrozen freezes or thaws every process in dir (cgroup.freeze). The
// kernel completes the freeze asynchronously; cgroup.events "frozen 1" says
// when it has.
func SetFrozen(dir string, frozen bool) error {
	v := "0"
	if frozen {
		v = "1"
	}
	return WriteString(dir, "cgroup.freeze", v)
}

// Frozen reports cgroup.events "frozen".
func Frozen(dir string) (bool, error) {
	kv, err := ReadKV(dir, "cgroup.events")
	if err != nil {
		return false, err
	}
	return kv["frozen"] == 1, nil
}

// Controllers lists cgroup.controllers: what the parent made available.
func Controllers(dir string) ([]string, error) {
	b, err := readFile(dir, "cgroup.controllers")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// HasController reports whether controller is available in dir.
func HasController(dir, controller string) bool {
	cs, err := Controllers(dir)
	return err == nil && slices.Contains(cs, controller)
}

// RemoveTree removes dir and every cgroup below it, deepest first. The
// cgroups must be empty. A missing dir is not an error.
func RemoveTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := RemoveTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}

// ID is the cgroup's ID, the one BPF's bpf_get_current_cgroup_id() returns:
// the kernfs node ID in the file handle of its directory.
func ID(dir string) (uint64, error) {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, err)
	}
	if h.Size() != 8 {
		return 0, fmt.Errorf("cgroup id of %s: unexpected handle size %d", dir, h.Size())
	}
	return binary.NativeEndian.Uint64(h.Bytes()), nil
}

// fileIDKernfs is the file handle type of a kernfs node, which a cgroup's
// directory is (FILEID_KERNFS).
const fileIDKernfs = 0xfe

// Exists reports whether a cgroup with the given ID is still alive under the
// hierarchy mounted at mount. IDs are never reused, so a gone one is gone
// for good. It needs CAP_DAC_READ_SEARCH, as open_by_handle_at(2) does.
func Exists(mount string, id uint64) (bool, error) {
	m, err := os.Open(mount)
	if err != nil {
		return false, err
	}
	defer m.Close()
	h := unix.NewFileHandle(fileIDKernfs, binary.NativeEndian.AppendUint64(nil, id))
	fd, err := unix.OpenByHandleAt(int(m.Fd()), h, unix.O_RDONLY|unix.O_CLOEXEC)
	if errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cgroup %d: %w", id, err)
	}
	unix.Close(fd)
	return true, nil
}
