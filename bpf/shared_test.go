//go:build linux

package bpf

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/cgroupfs/cgrouptest"
	"golang.org/x/sys/unix"
)

// bpffs mounts a bpffs of the test's own and returns a pin root on it, and
// a lock folder.
func bpffs(t *testing.T) (pinRoot, lockDir string) {
	if os.Geteuid() != 0 {
		t.Fatal("pinning BPF programs needs root (make test runs as root)")
	}
	mnt := t.TempDir()
	if err := unix.Mount("bpf", mnt, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	return filepath.Join(mnt, "agentcgroup"), t.TempDir()
}

// detached waits for the kernel to free the detector's programs (after an
// RCU grace period) down to n sets.
func detached(t *testing.T, n int) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := attachedPrograms(t)
		if got <= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// attachedPrograms counts the detector's programs loaded in the kernel.
func attachedPrograms(t *testing.T) int {
	n := 0
	var id ebpf.ProgramID
	for {
		var err error
		if id, err = ebpf.ProgramGetNextID(id); err != nil {
			return n
		}
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && info.Name == "on_fork" {
			n++
		}
		p.Close()
	}
}

func open(t *testing.T, pinRoot, lockDir string) *Detector {
	d, err := Open(pinRoot, lockDir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestShared: two shims share one program set, each getting only its own
// container's events; it stays pinned while one of them uses it and is gone,
// programs detached, after the last closes.
func TestShared(t *testing.T) {
	pinRoot, lockDir := bpffs(t)
	before := detached(t, 0) // earlier tests' detectors freed
	if LoadedBefore(lockDir) {
		t.Error("LoadedBefore before any Open")
	}
	a, b := open(t, pinRoot, lockDir), open(t, pinRoot, lockDir)
	if !LoadedBefore(lockDir) {
		t.Error("not LoadedBefore after an Open")
	}
	if n := attachedPrograms(t) - before; n != 1 {
		t.Errorf("%d program sets attached for two shims, want 1", n)
	}
	dirA, idA := agentCgroup(t)
	dirB, idB := agentCgroup(t)
	chA, chB := make(chan Event, 64), make(chan Event, 64)
	if err := a.Watch(idA, chA); err != nil {
		t.Fatal(err)
	}
	if err := b.Watch(idB, chB); err != nil {
		t.Fatal(err)
	}
	runIn(t, dirA, `/bin/true`)
	runIn(t, dirB, `/bin/sh -c true; /bin/true`)
	if evs := collect(chA); len(evs) != 2 || evs[0].AgentCgroup != idA {
		t.Errorf("shim a got %+v, want its call's Tool and Exit", evs)
	}
	if evs := collect(chB); len(evs) != 4 || evs[0].AgentCgroup != idB {
		t.Errorf("shim b got %+v, want its two calls' Tool and Exit", evs)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pinRoot, version)); err != nil {
		t.Fatalf("unpinned while shim b uses it: %v", err)
	}
	runIn(t, dirB, `/bin/true`)
	if evs := collect(chB); len(evs) != 2 {
		t.Errorf("after shim a closed, shim b got %+v", evs)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(pinRoot); len(left) != 0 {
		t.Errorf("pinned after the last shim closed: %v", left)
	}
	if n := detached(t, before) - before; n != 0 {
		t.Errorf("%d program sets attached after the last shim closed", n)
	}
}

// TestSweep: a shim killed with the set open leaves it pinned; the delete
// action's Sweep forgets agent cgroups that are gone while another shim
// uses the set, and unpins it once none does.
func TestSweep(t *testing.T) {
	pinRoot, lockDir := bpffs(t)
	before := detached(t, 0) // earlier tests' detectors freed
	live := open(t, pinRoot, lockDir)
	defer live.Close()
	_, liveID := agentCgroup(t)
	if err := live.Watch(liveID, make(chan Event, 64)); err != nil {
		t.Fatal(err)
	}
	goneDir, err := os.MkdirTemp(cgrouptest.Mount(t), "agentcgroup-bpftest-")
	if err != nil {
		t.Fatal(err)
	}

	// The killed shim: a child process that opens the set and watches
	// goneDir, then is SIGKILLed.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BPFTEST_PIN="+pinRoot, "BPFTEST_LOCKS="+lockDir, "BPFTEST_CGROUP="+goneDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); !strings.HasPrefix(line, "watching") {
		t.Fatalf("helper: %q", line)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if k, _ := keys(live.maps.Rings); len(k) != 2 {
		t.Fatalf("agent cgroups watched: %v, want the live one and the killed shim's", k)
	}
	if err := os.Remove(goneDir); err != nil { // what the delete action removes
		t.Fatal(err)
	}
	// What a shim killed inside Watch, before its ring was added, leaves:
	// entries of a gone cgroup in the other maps keyed by agent cgroup.
	const half = 1<<62 + 7 // no cgroup has this ID
	if err := live.maps.Dropped.Put(uint64(half), uint64(0)); err != nil {
		t.Fatal(err)
	}
	w, err := live.newWatch()
	if err != nil {
		t.Fatal(err)
	}
	if err := live.maps.PendingOf.Put(uint64(half), w.pending); err != nil {
		t.Fatal(err)
	}
	w.closeMaps()
	if err := Sweep(pinRoot, lockDir, cgrouptest.Mount(t)); err != nil {
		t.Fatal(err)
	}
	if k, _ := keys(live.maps.Rings); len(k) != 1 || k[0] != liveID {
		t.Errorf("watched after the sweep: %v, want only %d", k, liveID)
	}
	for name, m := range map[string]*ebpf.Map{"pending_of": live.maps.PendingOf, "dropped": live.maps.Dropped} {
		if k, _ := keys(m); slices.Contains(k, uint64(half)) {
			t.Errorf("%s keeps a gone cgroup's entry after the sweep: %v", name, k)
		}
	}

	// The live shim killed too (its hold dropped without Close): the sweep
	// unpins.
	live.shared.users.Close()
	// And what a shim killed while pinning would leave.
	if err := os.Mkdir(filepath.Join(pinRoot, version+tmpInfix+"999"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Sweep(pinRoot, lockDir, cgrouptest.Mount(t)); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(pinRoot); len(left) != 0 {
		t.Errorf("pinned after every user was gone and the sweep ran: %v", left)
	}
	live.links, live.shared = nil, nil // already released above
	if n := detached(t, before) - before; n != 0 {
		t.Errorf("%d program sets attached after the sweep", n)
	}
}

// killedShim is TestSweep's shim: it opens the shared set, watches a cgroup
// and waits to be killed.
func killedShim() {
	d, err := Open(os.Getenv("BPFTEST_PIN"), os.Getenv("BPFTEST_LOCKS"))
	if err == nil {
		var id uint64
		if id, err = cgroupfs.ID(os.Getenv("BPFTEST_CGROUP")); err == nil {
			err = d.Watch(id, make(chan Event, 64))
		}
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("watching")
	time.Sleep(time.Minute)
	os.Exit(1)
}
