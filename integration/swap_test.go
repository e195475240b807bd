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
// control; what they cost there is logged (docs/configuration.md, "Swap", quotes it).
func TestSwap(t *testing.T) {
	d := getDaemon(t, stacks()[0])
	if hostSwap(t) == "" {
		killed, freezes, _ := overcommit(t, d, "noswap")
		t.Logf("without swap: %d of 3 calls killed, %d freezes", killed, freezes)
		zramSwap(t, 512<<20)
	} else {
		t.Logf("the host has swap: no control run without it\n%s", hostSwap(t))
	}
	killed, freezes, swapPeak := overcommit(t, d, "swap")
	if killed != 0 {
		t.Errorf("with swap %d of 3 calls were killed; want none", killed)
	}
	if swapPeak == 0 {
		t.Error("with swap the container's memory.swap.peak is 0: want swap used")
	}
	t.Logf("with swap: no call killed, %d freezes, swap peak %d MiB", freezes, swapPeak>>20)
}

// hostSwap is /proc/swaps' devices, "" for none.
func hostSwap(t *testing.T) string {
	b, err := os.ReadFile("/proc/swaps")
	if err != nil {
		t.Fatal(err)
	}
	_, devices, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return devices
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

// zramSwap turns on a zram swap device of its own (hot_add) of size bytes
// for the test. The zram module comes from modprobe, else, in the lab guest
// (which has no /lib/modules of its own), from the guest kernel's tree in
// the cache, with the modules it depends on.
func zramSwap(t *testing.T, size int64) {
	if _, err := os.Stat("/sys/class/zram-control"); os.IsNotExist(err) && exec.Command("modprobe", "zram", "num_devices=0").Run() != nil {
		loadZramFromCache(t)
	}
	b, err := os.ReadFile("/sys/class/zram-control/hot_add")
	if err != nil {
		t.Fatalf("add a zram device: %v", err)
	}
	n := strings.TrimSpace(string(b))
	dev, sys := "/dev/zram"+n, "/sys/block/zram"+n
	t.Cleanup(func() {
		_ = exec.Command("swapoff", dev).Run() // not on if a step below failed
		if err := os.WriteFile(sys+"/reset", []byte("1"), 0); err != nil {
			t.Errorf("reset %s: %v", dev, err)
		}
		if err := os.WriteFile("/sys/class/zram-control/hot_remove", []byte(n), 0); err != nil {
			t.Errorf("remove %s: %v", dev, err)
		}
	})
	if err := os.WriteFile(sys+"/disksize", []byte(strconv.FormatInt(size, 10)), 0); err != nil {
		t.Fatalf("size %s: %v", dev, err)
	}
	for _, cmd := range [][]string{{"mkswap", dev}, {"swapon", dev}} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", strings.Join(cmd, " "), err, out)
		}
	}
}

// loadZramFromCache loads zram and the modules it depends on (lz4, its
// default compressor) from the cached guest kernel, and unloads them after
// the test (registered first, so that it runs after the device's cleanup).
func loadZramFromCache(t *testing.T) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	var loaded []string
	t.Cleanup(func() {
		for i := len(loaded) - 1; i >= 0; i-- {
			if err := unix.DeleteModule(loaded[i], 0); err != nil {
				t.Errorf("unload %s: %v", loaded[i], err)
			}
		}
	})
	for _, m := range []string{"lib/lz4/lz4_compress", "lib/lz4/lz4hc_compress", "drivers/block/zram/zram"} {
		ko := filepath.Join(projectRoot, ".cache/kernel/lib/modules", release, "kernel", m+".ko.xz")
		image, err := exec.Command("xz", "-dc", ko).Output()
		if err != nil {
			t.Fatalf("no zram module from modprobe, nor %s for kernel %s: %v", ko, release, err)
		}
		params := ""
		if filepath.Base(m) == "zram" {
			params = "num_devices=0"
		}
		switch err := unix.InitModule(image, params); {
		case err == nil:
			loaded = append(loaded, filepath.Base(m))
		case !errors.Is(err, unix.EEXIST):
			t.Fatalf("load %s: %v", m, err)
		}
	}
}
