//go:build integration

package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/toolcall"
)

// TestSwap: on a host with swap (a zram device, as Fedora and ChromeOS set
// up by default; the lab guest's root cannot hold a swap file), three tool calls that together need more than the
// container's memory.max all finish and none is killed: what does not fit
// goes to swap (the agent's memory.low keeps it in memory), a frozen
// call's pages first. The same three calls run first without swap, as the
// control; what they cost there is logged (the README quotes it).
func TestSwap(t *testing.T) {
	d := getDaemon(t, stacks()[0])
	killed, freezes, _ := overcommit(t, d, "noswap")
	t.Logf("without swap: %d of 3 calls killed, %d freezes", killed, freezes)

	zramSwap(t, 512<<20)
	killed, freezes, swapPeak := overcommit(t, d, "swap")
	if killed != 0 {
		t.Errorf("with swap %d of 3 calls were killed; want none", killed)
	}
	if swapPeak == 0 {
		t.Error("with swap the container's memory.swap.peak is 0: want swap used")
	}
	t.Logf("with swap: no call killed, %d freezes, swap peak %d MiB", freezes, swapPeak>>20)
}

// overcommit runs three calls of 100 MiB for 3 s each, 0.7 s apart, in a
// container whose memory.max is 200 MiB, and returns how many were killed,
// how often calls were frozen and the container's swap peak. The agent
// must survive, and a call that was not killed must exit 0.
func overcommit(t *testing.T, d *daemon, name string) (killed, freezes int, swapPeak uint64) {
	id := newID(name)
	d.start(t, d.agentcgroup(), id, []string{"--memory-limit", strconv.Itoa(200 << 20)}, "/bin/agentsim")
	agent := d.pid(t, id)
	results := make([]result, 3)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 700 * time.Millisecond)
			results[i], _ = d.run(nil, "task", "exec", "--exec-id", fmt.Sprintf("call-%d", i), id, "/bin/agentsim", "-alloc", "100", "-hold", "3s")
		}()
	}
	wg.Wait()
	for i, r := range results {
		rec := endedRecord(t, id, fmt.Sprintf("call-%d", i))
		freezes += rec.Freezes
		switch {
		case rec.State == toolcall.OOMKilled || rec.State == toolcall.Killed:
			killed++
		case r.code != 0 || rec.State != toolcall.Exited:
			t.Errorf("%s call %d: %v, record %+v; want exit 0 or a kill", name, i, r, rec)
		}
	}
	swapPeak, err := cgroupfs.ReadUint(containerCgroup(id), "memory.swap.peak")
	if err != nil {
		t.Errorf("memory.swap.peak of %s: %v", id, err)
	}
	if p := d.pid(t, id); p != agent || d.status(t, id) != "RUNNING" {
		t.Errorf("%s: the agent is %s (pid %d, was %d)", name, d.status(t, id), p, agent)
	}
	d.remove(id)
	assertGone(t, id)
	return killed, freezes, swapPeak
}

// zramSwap turns on a zram swap device of size bytes for the test, loading
// the module from the guest kernel's tree in the cache (lab.sh's guest has
// no /lib/modules of its own); a host with swap already keeps its own.
func zramSwap(t *testing.T, size int64) {
	swaps, err := os.ReadFile("/proc/swaps")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(strings.TrimSpace(string(swaps)), "\n") > 0 {
		t.Logf("using the host's swap:\n%s", swaps)
		return
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	var loaded []string // to unload, last first
	if _, err := os.Stat("/sys/block/zram0"); os.IsNotExist(err) {
		// zram and the modules it depends on (lz4 is its default
		// compressor), in load order.
		for _, m := range []string{"lib/lz4/lz4_compress", "lib/lz4/lz4hc_compress", "drivers/block/zram/zram"} {
			ko := filepath.Join(projectRoot, ".cache/kernel/lib/modules", release, "kernel", m+".ko.xz")
			image, err := exec.Command("xz", "-dc", ko).Output()
			if err != nil {
				t.Fatalf("decompress %s: %v", ko, err)
			}
			params := ""
			if filepath.Base(m) == "zram" {
				params = "num_devices=1"
			}
			switch err := unix.InitModule(image, params); {
			case err == nil:
				loaded = append(loaded, filepath.Base(m))
			case !errors.Is(err, unix.EEXIST):
				t.Fatalf("load %s: %v", m, err)
			}
		}
	}
	dev := "/sys/block/zram0"
	for _, step := range []func() error{
		func() error { return os.WriteFile(dev+"/disksize", []byte(strconv.FormatInt(size, 10)), 0) },
		func() error { return exec.Command("mkswap", "/dev/zram0").Run() },
		func() error { return exec.Command("swapon", "/dev/zram0").Run() },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up zram swap: %v", err)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("swapoff", "/dev/zram0").CombinedOutput(); err != nil {
			t.Errorf("swapoff: %v %s", err, out)
		}
		_ = os.WriteFile(dev+"/reset", []byte("1"), 0)
		for i := len(loaded) - 1; i >= 0; i-- {
			if err := unix.DeleteModule(loaded[i], 0); err != nil {
				t.Errorf("unload %s: %v", loaded[i], err)
			}
		}
	})
}
