//go:build linux

package bpf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// The host's shared detector: one program set, pinned in bpffs under
// PinRoot/<version>, whose maps every shim opens. Its lifecycle is two lock
// files in the state root (lockDir):
//   - detector-<version>.lock, held exclusively while a process loads,
//     opens, unpins or sweeps the set;
//   - detector-<version>.users, held shared by every shim that has the set
//     open. The kernel drops a killed shim's hold with its files, so the
//     process that can take it exclusively knows that no shim uses the set,
//     and unpins it (a shim's last Close, or containerd's delete action
//     after a killed shim: Sweep). Unpinned, the links close and the
//     programs detach: nothing stays.
// A third file, detector-<version>.loaded, says that the set has loaded on
// this host since boot (LoadedBefore).
// The version is a hash of the programs' object, so that shims of two
// releases (an upgrade with containers running) never share maps whose
// layout differs.

// PinRoot is where shared detectors are pinned, on the host's bpffs.
const PinRoot = "/sys/fs/bpf/agentcgroup"

// ErrNoBPFFS is returned by Open where no bpffs is mounted to pin in.
var ErrNoBPFFS = errors.New("no bpffs mounted")

// pinned names the maps and links of a pinned set, in pinning order.
var (
	pinnedMaps  = []string{detectorMapCalls, detectorMapDropped, detectorMapPendingOf, detectorMapRings, detectorMapToolsOf}
	pinnedLinks = []string{"on_fork", "on_exec", "on_exit"}
)

// version names this build's program set.
var version = func() string {
	h := sha256.Sum256(_DetectorBytes)
	return hex.EncodeToString(h[:6])
}()

// share is a process's use of a pinned set.
type share struct {
	pinRoot, lockDir, version string
	// users is this process's shared hold on the users file.
	users *os.File
}

func lockFile(lockDir, version, kind string) string {
	return filepath.Join(lockDir, "detector-"+version+"."+kind)
}

// lock takes a lock file as how says (exclusive or shared, blocking or
// not); it is released when the returned file closes.
func lock(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// unused reports whether no process holds the users file of a version;
// the caller holds its lock file.
func unused(lockDir, version string) (bool, error) {
	f, err := os.OpenFile(lockFile(lockDir, version, "users"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// Open returns the host's shared detector pinned under pinRoot, loading,
// attaching and pinning it if no shim has; lockDir keeps its lock files.
// It returns ErrNoBPFFS where pinRoot's parent is not a bpffs.
func Open(pinRoot, lockDir string) (_ *Detector, retErr error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(pinRoot), &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		return nil, fmt.Errorf("%s: %w", filepath.Dir(pinRoot), ErrNoBPFFS)
	}
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, err
	}
	l, err := lock(lockFile(lockDir, version, "lock"), unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	users, err := lock(lockFile(lockDir, version, "users"), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			users.Close()
		}
	}()
	spec, err := loadDetector()
	if err != nil {
		return nil, fmt.Errorf("load tool-call detector: %w", err)
	}
	dir := filepath.Join(pinRoot, version)
	maps, err := openPinned(dir)
	if errors.Is(err, os.ErrNotExist) {
		// None, or what cannot be a whole set (pinned sets are renamed
		// into place complete): load it again.
		if err = os.RemoveAll(dir); err == nil {
			maps, err = loadPinned(spec, pinRoot, dir)
		}
	}
	if err != nil {
		return nil, err
	}
	MarkLoaded(lockDir)
	d := newDetector(maps, spec)
	d.shared = &share{pinRoot: pinRoot, lockDir: lockDir, version: version, users: users}
	go d.reportDrops()
	return d, nil
}

// LoadedBefore reports whether this build's detector was loaded or opened
// on this host before (since boot, where lockDir is on a tmpfs such as
// /run), so that a caller may expect the next Open or Load to succeed.
func LoadedBefore(lockDir string) bool {
	_, err := os.Stat(lockFile(lockDir, version, "loaded"))
	return err == nil
}

// MarkLoaded notes in lockDir that this build's detector loads on this
// host (LoadedBefore); Open does so itself, a caller of Load after it.
func MarkLoaded(lockDir string) {
	if err := os.WriteFile(lockFile(lockDir, version, "loaded"), nil, 0o600); err != nil {
		log.L.WithError(err).Warn("note that the tool-call detector loads on this host")
	}
}

// openPinned opens the maps of a pinned set; os.ErrNotExist if there is none,
// or only part of one (its programs' links missing).
func openPinned(dir string) (detectorMaps, error) {
	for _, name := range pinnedLinks {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return detectorMaps{}, err
		}
	}
	var m detectorMaps
	for _, name := range pinnedMaps {
		pm, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			m.Close()
			if errors.Is(err, os.ErrNotExist) {
				return detectorMaps{}, err
			}
			return detectorMaps{}, fmt.Errorf("open the shared tool-call detector: %w", err)
		}
		switch name {
		case detectorMapCalls:
			m.Calls = pm
		case detectorMapDropped:
			m.Dropped = pm
		case detectorMapPendingOf:
			m.PendingOf = pm
		case detectorMapRings:
			m.Rings = pm
		case detectorMapToolsOf:
			m.ToolsOf = pm
		}
	}
	return m, nil
}

// loadPinned loads and attaches the programs and pins maps and links into
// dir, through a temporary folder renamed last, so that a process killed
// meanwhile leaves no set that looks complete (its leftovers go with the
// version's next Open, or a Sweep once nothing uses the version).
func loadPinned(spec *ebpf.CollectionSpec, pinRoot, dir string) (_ detectorMaps, retErr error) {
	if err := removeTemporaries(pinRoot, version); err != nil {
		return detectorMaps{}, err
	}
	var objs detectorObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return detectorMaps{}, fmt.Errorf("load tool-call detector: %w", err)
	}
	defer objs.detectorPrograms.Close()
	defer func() {
		if retErr != nil {
			objs.detectorMaps.Close()
		}
	}()
	links, err := attach(&objs.detectorPrograms)
	if err != nil {
		return detectorMaps{}, err
	}
	// Pinned, the links hold the programs attached; this process's handles
	// are not needed.
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	tmp := dir + tmpInfix + strconv.Itoa(os.Getpid())
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return detectorMaps{}, fmt.Errorf("pin the tool-call detector: %w", err)
	}
	defer os.RemoveAll(tmp) // left only on failure: renamed otherwise
	maps := map[string]*ebpf.Map{detectorMapCalls: objs.Calls, detectorMapDropped: objs.Dropped,
		detectorMapPendingOf: objs.PendingOf, detectorMapRings: objs.Rings, detectorMapToolsOf: objs.ToolsOf}
	for _, name := range pinnedMaps {
		if err := maps[name].Pin(filepath.Join(tmp, name)); err != nil {
			return detectorMaps{}, fmt.Errorf("pin the tool-call detector: %w", err)
		}
	}
	for i, l := range links {
		if err := l.Pin(filepath.Join(tmp, pinnedLinks[i])); err != nil {
			return detectorMaps{}, fmt.Errorf("pin the tool-call detector: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return detectorMaps{}, fmt.Errorf("pin the tool-call detector: %w", err)
	}
	return objs.detectorMaps, nil
}

// tmpInfix joins a version and a pid in the name of a set being pinned
// (bpffs refuses dots in names).
const tmpInfix = "-tmp-"

// removeTemporaries unpins what a process killed while pinning a version's
// set left; the caller holds the version's lock file.
func removeTemporaries(pinRoot, version string) error {
	tmps, _ := filepath.Glob(filepath.Join(pinRoot, version+tmpInfix+"*"))
	for _, t := range tmps {
		if err := os.RemoveAll(t); err != nil {
			return fmt.Errorf("remove a partly pinned tool-call detector: %w", err)
		}
	}
	return nil
}

// release drops this process's use of the shared set, and unpins it if no
// other process uses it.
func (s *share) release() error {
	l, err := lock(lockFile(s.lockDir, s.version, "lock"), unix.LOCK_EX)
	if err != nil {
		s.users.Close()
		return err
	}
	defer l.Close()
	s.users.Close()
	return unpinUnused(s.pinRoot, s.lockDir, s.version)
}

// unpinUnused unpins a version's set if no process uses it; the caller
// holds its lock file.
func unpinUnused(pinRoot, lockDir, version string) error {
	free, err := unused(lockDir, version)
	if err != nil || !free {
		return err
	}
	if err := os.RemoveAll(filepath.Join(pinRoot, version)); err != nil {
		return fmt.Errorf("unpin the tool-call detector: %w", err)
	}
	return removeTemporaries(pinRoot, version)
}

// Sweep is the cleanup after shims that were killed: every pinned set that
// no process uses is unpinned (and so detached), whatever its version; in
// this version's set still in use, the agent cgroups that no longer exist
// (under the cgroup v2 mount cgroupMount) are forgotten, with their ring
// buffers. containerd's delete action runs it after removing the dead
// shim's cgroups. A version whose lock another process holds is skipped:
// that process is a live shim loading, opening or closing the set, whose
// own Close unpins it when it is the last, and the next Sweep forgets what
// this one did not; waiting for it could outlast containerd's bound on the
// delete action.
func Sweep(pinRoot, lockDir, cgroupMount string) error {
	entries, err := os.ReadDir(pinRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	versions := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() {
			v, _, _ := strings.Cut(e.Name(), tmpInfix) // a set, or one being pinned
			versions[v] = true
		}
	}
	var errs []error
	for v := range versions {
		errs = append(errs, sweep(pinRoot, lockDir, v, cgroupMount))
	}
	return errors.Join(errs...)
}

func sweep(pinRoot, lockDir, v, cgroupMount string) error {
	l, err := lock(lockFile(lockDir, v, "lock"), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil
	}
	if err != nil {
		return err
	}
	defer l.Close()
	if free, err := unused(lockDir, v); err != nil || free {
		if err == nil {
			err = unpinUnused(pinRoot, lockDir, v)
		}
		return err
	}
	if v != version {
		return nil
	}
	maps, err := openPinned(filepath.Join(pinRoot, v))
	if errors.Is(err, os.ErrNotExist) {
		return nil // in use, yet not pinned: its user will load it
	}
	if err != nil {
		return err
	}
	d := &Detector{maps: maps}
	defer maps.Close()
	// Every map keyed by agent cgroup: a shim killed in Watch or in forget
	// can leave an entry in some and not in rings.
	var agents []uint64
	for _, m := range []*ebpf.Map{maps.Rings, maps.PendingOf, maps.ToolsOf, maps.Dropped} {
		ks, err := keys(m)
		if err != nil {
			return fmt.Errorf("sweep the tool-call detector: %w", err)
		}
		for _, k := range ks {
			if !slices.Contains(agents, k) {
				agents = append(agents, k)
			}
		}
	}
	var gone []uint64
	for _, agent := range agents {
		if ok, err := cgroupfs.Exists(cgroupMount, agent); err != nil {
			log.L.WithError(err).Warn("sweep the tool-call detector")
		} else if !ok {
			gone = append(gone, agent)
		}
	}
	for _, a := range gone {
		d.forget(a)
	}
	return nil
}

// keys lists the agent cgroups a map keyed by them holds.
func keys(m *ebpf.Map) ([]uint64, error) {
	var out []uint64
	var k uint64
	v := make([]byte, m.ValueSize()) // an inner map's ID, or a count
	it := m.Iterate()
	for it.Next(&k, &v) {
		out = append(out, k)
	}
	return out, it.Err()
}
