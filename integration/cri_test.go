//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// criConfigs are the CRI plugin's settings by config version, after the
// daemon's head (daemonConfig): the runc handler and a pinned sandbox image
// (no registry is reached). The agentcgroup handler is
// deploy/kubernetes/containerd-config-v<N>.toml, as shipped.
var criConfigs = map[int]string{
	3: `[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = 'agentcgroup.test/pause:1'
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'
`,
	2: `[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "agentcgroup.test/pause:1"
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
`,
}

// TestCRI: Kubernetes through the CRI, driven by crictl, on containerd 2.4
// (config version 3) and 1.7 (version 2): a pod under the agentcgroup
// handler with two containers (one shim per pod), the sandbox not carved,
// streaming Exec and ExecSync with the runc handler's transcript, a
// background job, a pod annotation through the handler's pod_annotations
// and the shim's AllowedAnnotations, a tool call past its limit dying with
// 137 while the container's CRI status does not say OOMKilled, stats and
// inspect as under the runc handler, and nothing left after stopp and rmp.
func TestCRI(t *testing.T) {
	for _, s := range stacks() {
		if s.name != "containerd-2.4+runc-1.5" && s.name != "containerd-1.7+runc-1.5" {
			continue
		}
		t.Run(s.name, func(t *testing.T) { testCRI(t, s, false) })
	}
}

var (
	criLogTime = regexp.MustCompile(`time="[^"]*" |(?m)^[IWEF]\d{4} [0-9:.]+ +\d+ `) // logrus's and klog's
	criIDs     = regexp.MustCompile(`[0-9a-f]{64}`)
)

// criRuncSystemd turns on the systemd cgroup driver for the runc handler, by
// config version; the agentcgroup snippets carry the same line commented out.
var criRuncSystemd = map[int]string{
	3: "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = true\n",
	2: "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n",
}

// testCRI runs the CRI test on stack s, with the cgroupfs or, as kubelet's
// cgroupDriver: systemd sets it, the systemd cgroup driver.
func testCRI(t *testing.T, s stack, systemd bool) {
	crictlBin := cachedTool(t, "crictl")
	dir := testTmpfsDir(t, "agentcgroup-cri")
	sock := filepath.Join(dir, "containerd.sock")
	handler, err := os.ReadFile(filepath.Join(projectRoot, fmt.Sprintf("deploy/kubernetes/containerd-config-v%d.toml", s.configVersion)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := daemonConfig(s.configVersion, dir, sock, `["io.containerd.nri.v1.nri"]`) + criConfigs[s.configVersion] + string(handler)
	if systemd {
		const off = "# SystemdCgroup = true"
		if !strings.Contains(cfg, off) {
			t.Fatalf("the shipped handler snippet has no %q line to turn on", off)
		}
		cfg = strings.Replace(cfg, off, off[2:], 1) + criRuncSystemd[s.configVersion]
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.containerd, "--config", filepath.Join(dir, "config.toml"))
	cmd.Env = append(os.Environ(), "PATH="+s.path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		// The pod cgroups are kubelet's to remove; here there is none.
		if systemd { // only this test's pods: on a real node others may run
			exec.Command("systemctl", "stop", "kubepods-podagents1.slice", "kubepods-podplain1.slice").Run()
		}
		pods, _ := filepath.Glob("/sys/fs/cgroup/kubepods/pod*")
		for _, p := range pods {
			os.Remove(p)
		}
		os.Remove("/sys/fs/cgroup/kubepods")
	})
	// An empty crictl config: without one crictl warns on every call.
	crictlConfig := filepath.Join(dir, "crictl.yaml")
	if err := os.WriteFile(crictlConfig, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	crictl := func(args ...string) (string, string, int) {
		c := exec.Command(crictlBin, append([]string{"--config", crictlConfig, "--runtime-endpoint", "unix://" + sock, "--image-endpoint", "unix://" + sock, "--timeout", "120s"}, args...)...)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	must := func(args ...string) string {
		out, errs, code := crictl(args...)
		if code != 0 {
			log, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("crictl %v: exit %d: %s\n%s\ncontainerd log tail:\n%s", args, code, out, errs, tail(string(log), 30))
		}
		return strings.TrimSpace(out)
	}
	eventually(t, "the CRI up", func() bool { _, _, code := crictl("info"); return code == 0 })

	// Images, no registry: the test rootfs (busybox, the simulator) as the
	// pause image and the workload image.
	for _, name := range []string{"agentcgroup.test/pause:1", "agentcgroup.test/agent:1"} {
		tarball := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(name)+".tar")
		writeImage(t, tarball, name, rootfs)
		c := exec.Command(s.ctrBin, "--address", sock, "-n", "k8s.io", "images", "import", tarball)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("import %s: %v: %s", name, err, out)
		}
	}

	// Pod and container cgroups as kubelet and containerd name them.
	podParent := func(uid string) string { return "/kubepods/pod" + uid }
	ctrCgroup := func(uid, id string) string { return filepath.Join("/sys/fs/cgroup/kubepods/pod"+uid, id) }
	if systemd {
		podParent = func(uid string) string { return "kubepods-pod" + uid + ".slice" }
		ctrCgroup = func(uid, id string) string {
			return filepath.Join("/sys/fs/cgroup/kubepods.slice", podParent(uid), "cri-containerd-"+id+".scope")
		}
	}
	podConfig := func(name, uid string, annotations map[string]string) string {
		p := map[string]any{
			"metadata":      map[string]any{"name": name, "namespace": "default", "uid": uid},
			"log_directory": filepath.Join(dir, "logs", uid),
			"linux": map[string]any{"cgroup_parent": podParent(uid),
				"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
			"annotations": annotations,
		}
		return writeJSON(t, dir, name+"-pod.json", p)
	}
	ctrConfig := func(name string) string {
		return writeJSON(t, dir, name+".json", map[string]any{
			"metadata": map[string]any{"name": name},
			"image":    map[string]any{"image": "agentcgroup.test/agent:1"},
			"command":  []string{"/bin/agentsim"},
			"log_path": name + ".log",
			"linux":    map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 512 << 20}},
		})
	}
	type inspected struct {
		Status struct {
			State, Reason string
		}
	}
	inspect := func(id string) inspected {
		var v inspected
		if err := json.Unmarshal([]byte(must("inspect", id)), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	// A pod under agentcgroup: two containers, one shim.
	pod := podConfig("agents", "agents1", map[string]string{"io.agentcgroup.tool.memory.max": "64Mi"})
	podID := must("runp", "--runtime", "agentcgroup", pod)
	a := must("create", podID, ctrConfig("agent-a"), pod)
	must("start", a)
	b := must("create", podID, ctrConfig("agent-b"), pod)
	must("start", b)
	for _, id := range []string{a, b} {
		if _, err := os.Stat(filepath.Join(ctrCgroup("agents1", id), "agent")); err != nil {
			t.Errorf("container %s not carved: %v", id, err)
		}
	}
	if _, err := os.Stat(filepath.Join(ctrCgroup("agents1", podID), "agent")); err == nil {
		t.Errorf("the sandbox container %s was carved", podID)
	}
	if n := len(shimPids(podID)); n != 1 {
		t.Errorf("%d shims for the pod, want 1", n)
	}
	// The same pod under runc, for the transcripts below.
	runcPod := podConfig("plain", "plain1", nil)
	runcPodID := must("runp", "--runtime", "runc", runcPod)
	r := must("create", runcPodID, ctrConfig("plain"), runcPod)
	must("start", r)

	// Streaming Exec and ExecSync (-s): what crictl prints and its exit code
	// are the runc handler's, for output on both streams, exit codes, death
	// by a signal, a missing binary, a background job, a setsid daemon,
	// 4 MB of output, 1000 children and a 32-bit system call (Unconfined).
	cases := [][]string{
		{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"},
		{"/bin/sh", "-c", "kill -9 $$"},
		{"/bin/no-such-binary"},
		{"/bin/sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo started"},
		{"/bin/sh", "-c", "setsid sh -c 'sleep 30' </dev/null >/dev/null 2>&1 & echo daemonised"},
		{"/bin/sh", "-c", "yes 0123456789abcdef | head -c 4000000"},
		{"/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true & i=$((i+1)); done; wait; echo forked"},
		{"/bin/agentsim", "-int80"},
	}
	for _, sync := range []bool{false, true} {
		for _, c := range cases {
			args := []string{"exec"}
			if sync {
				args = append(args, "-s")
			}
			var got [2]string
			for i, id := range []string{r, a} {
				start := time.Now()
				out, errs, code := crictl(append(append(args, id), c...)...)
				if time.Since(start) > 30*time.Second {
					t.Errorf("crictl %v in %s took %s", args, id, time.Since(start))
				}
				// Container and exec IDs and log headers differ; the rest must not.
				errs = criIDs.ReplaceAllString(criLogTime.ReplaceAllString(errs, ""), "ID")
				if len(out) > 1000 {
					out = fmt.Sprintf("%d bytes, sha256 %x", len(out), sha256.Sum256([]byte(out)))
				}
				got[i] = fmt.Sprintf("exit %d, stdout %q, stderr %q", code, out, errs)
			}
			if got[0] != got[1] {
				t.Errorf("crictl %v %v:\n  runc:        %s\n  agentcgroup: %s", args, c, got[0], got[1])
			}
		}
	}
	if out := must("exec", "-s", a, "/bin/cat", "/proc/self/cgroup"); !strings.Contains(out, "/tools/") {
		t.Errorf("ExecSync ran in %q; want a tools cgroup", out)
	}

	// Past the pod annotation's tool.memory.max: 137, told, not OOMKilled.
	// crictl exec says the status on stderr and exits 1, as under runc.
	out, errs, code := crictl("exec", a, "/bin/agentsim", "-alloc", "128")
	if code == 0 || !strings.Contains(errs, "exit code 137") || !strings.Contains(out+errs, "agentcgroup: tool call killed: out of memory at its own limit memory.max=64.0 MiB") {
		t.Errorf("exec past its limit: exit %d, %q %q", code, out, errs)
	}
	time.Sleep(2 * time.Second) // time for a /tasks/oom to reach the CRI, if one were sent
	if st := inspect(a); st.Status.State != "CONTAINER_RUNNING" || st.Status.Reason == "OOMKilled" {
		t.Errorf("container after its tool call's OOM: %+v; want running, not OOMKilled", st.Status)
	}

	// Hostile tool calls in a container without a seccomp profile (the CRI's
	// Unconfined, crictl's default): a child cloned into C/agent (clone3
	// CLONE_INTO_CGROUP, with an fd on the read-only cgroupfs the CRI mounts)
	// is killed; the tree's files cannot be written from inside.
	out, errs, _ = crictl("exec", a, "/bin/agentsim", "-escape", "agent", "/bin/sh", "-c", "sleep 5; echo survived")
	if strings.Contains(out, "survived") || !strings.Contains(out, "escapee: signal: killed") {
		t.Errorf("escape into C/agent from a CRI exec: %q %q; want the escapee killed", out, errs)
	}
	for _, f := range []string{"agent/memory.max", "memory.max", "agent/cgroup.procs"} {
		if _, errs, code := crictl("exec", a, "/bin/sh", "-c", "echo max > /sys/fs/cgroup/"+f); code == 0 || !strings.Contains(errs, "Read-only file system") {
			t.Errorf("write to %s from inside: exit %d, %q; want refused (read-only)", f, code, errs)
		}
	}

	// Deleting one container leaves the other working.
	must("rm", "-f", b)
	if out := must("exec", a, "/bin/sh", "-c", "echo still"); out != "still" {
		t.Errorf("after the other container's removal: %q", out)
	}

	// stats and inspect say the same kinds of thing as under runc.
	for _, id := range []string{a, r} {
		var stats struct {
			Stats []struct {
				Memory struct {
					WorkingSetBytes struct{ Value string } `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"stats"`
		}
		if err := json.Unmarshal([]byte(must("stats", "-o", "json", id)), &stats); err != nil || len(stats.Stats) != 1 || stats.Stats[0].Memory.WorkingSetBytes.Value == "" {
			t.Errorf("crictl stats %s: %+v, %v", id, stats, err)
		}
		if st := inspect(id); st.Status.State != "CONTAINER_RUNNING" {
			t.Errorf("inspect %s: %+v", id, st.Status)
		}
	}

	// stopp, rmp: nothing left.
	for _, p := range []string{podID, runcPodID} {
		must("stopp", p)
		must("rmp", p)
	}
	eventually(t, "no shim left", func() bool { return len(shimPids(podID)) == 0 && len(shimPids(a)) == 0 })
	for _, id := range []string{a, b, podID} {
		if c := ctrCgroup("agents1", id); !isGone(c) {
			t.Errorf("%s left behind", c)
		}
		if systemd {
			assertNoUnit(t, "cri-containerd-"+id+".scope")
		}
	}
	for _, id := range []string{a, b, podID} {
		if _, err := os.Stat(filepath.Join("/run/agentcgroup/k8s.io", id)); !os.IsNotExist(err) {
			t.Errorf("state of %s left behind", id)
		}
	}
	assertQuietCleanup(t, filepath.Join(dir, "containerd.log"))
}

// assertQuietCleanup: containerd's cleanup of the shims it ran logs nothing
// of agentcgroup's where the runc shim's logs nothing.
func assertQuietCleanup(t *testing.T, logPath string) {
	t.Helper()
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(log), "\n") {
		for _, noise := range []string{"oci-runtime: no such file", "remove sockets of the exited shim", "agentcgroup runtime wrapper:"} {
			if strings.Contains(line, noise) {
				t.Errorf("containerd logged a cleanup warning: %s", line)
			}
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func writeJSON(t *testing.T, dir, name string, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeImage writes a Docker archive of one layer, dir, named name, which
// `ctr images import` reads.
func writeImage(t *testing.T, path, name, dir string) {
	layer := tarDir(t, dir)
	sum := sha256.Sum256(layer)
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/bin/agentsim"}, "Env": []string{"PATH=/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(sum[:])}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{name}, "Layers": []string{"layer.tar"}}})
	var archive bytes.Buffer
	aw := tar.NewWriter(&archive)
	for _, f := range []struct {
		name string
		data []byte
	}{{"layer.tar", layer}, {"config.json", config}, {"manifest.json", manifest}} {
		if err := aw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := aw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, archive.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarDir is dir as a tar archive, symlinks kept.
func tarDir(t *testing.T, dir string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(dir, p)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err == nil {
				_, err = tw.Write(data)
			}
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
