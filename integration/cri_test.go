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
	"strings"
	"testing"
	"time"
)

// criConfig is containerd 2.4 with its CRI plugin, the runc handler and a
// pinned sandbox image (no registry is reached); the agentcgroup handler is
// deploy/kubernetes/containerd-config-v3.toml, as shipped.
const criConfig = `version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = 'agentcgroup.test/pause:1'
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'
`

// TestCRI: Kubernetes through the CRI, driven by crictl: a pod under the
// agentcgroup handler with two containers (one shim per pod), the sandbox
// not carved, ExecSync and a background job, a pod annotation through the
// handler's pod_annotations and the shim's AllowedAnnotations, a tool call
// past its limit dying with 137 while the container's CRI status does not
// say OOMKilled, stats and inspect as under the runc handler, and nothing
// left after stopp and rmp.
func TestCRI(t *testing.T) {
	s := stacks()[0]
	crictlBin := cachedTool(t, "crictl")
	dir := testTmpfsDir(t, "agentcgroup-cri")
	sock := filepath.Join(dir, "containerd.sock")
	handler, err := os.ReadFile(filepath.Join(projectRoot, "deploy/kubernetes/containerd-config-v3.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(criConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc") + string(handler)
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
		pods, _ := filepath.Glob("/sys/fs/cgroup/kubepods/pod*")
		for _, p := range pods {
			os.Remove(p)
		}
		os.Remove("/sys/fs/cgroup/kubepods")
	})
	crictl := func(args ...string) (string, string, int) {
		c := exec.Command(crictlBin, append([]string{"--runtime-endpoint", "unix://" + sock, "--image-endpoint", "unix://" + sock, "--timeout", "120s"}, args...)...)
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
		c := exec.Command(cachedTool(t, "ctr"), "--address", sock, "-n", "k8s.io", "images", "import", tarball)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("import %s: %v: %s", name, err, out)
		}
	}

	podConfig := func(name, uid string, annotations map[string]string) string {
		p := map[string]any{
			"metadata":      map[string]any{"name": name, "namespace": "default", "uid": uid},
			"log_directory": filepath.Join(dir, "logs", uid),
			"linux": map[string]any{"cgroup_parent": "/kubepods/pod" + uid,
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
	podCgroup := "/sys/fs/cgroup/kubepods/podagents1"
	for _, id := range []string{a, b} {
		if _, err := os.Stat(filepath.Join(podCgroup, id, "agent")); err != nil {
			t.Errorf("container %s not carved: %v", id, err)
		}
	}
	if _, err := os.Stat(filepath.Join(podCgroup, podID, "agent")); err == nil {
		t.Errorf("the sandbox container %s was carved", podID)
	}
	if n := len(shimPids(podID)); n != 1 {
		t.Errorf("%d shims for the pod, want 1", n)
	}

	// ExecSync, and one that starts a background job: back at once.
	if out := must("exec", a, "/bin/sh", "-c", "echo hi; cat /proc/self/cgroup"); !strings.HasPrefix(out, "hi") || !strings.Contains(out, "/tools/") {
		t.Errorf("exec: %q; want hi and a tools cgroup", out)
	}
	start := time.Now()
	if out := must("exec", a, "/bin/sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo started"); out != "started" || time.Since(start) > 20*time.Second {
		t.Errorf("exec with a background job: %q after %s", out, time.Since(start))
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

	// Deleting one container leaves the other working.
	must("rm", "-f", b)
	if out := must("exec", a, "/bin/sh", "-c", "echo still"); out != "still" {
		t.Errorf("after the other container's removal: %q", out)
	}

	// The same pod under runc: stats and inspect say the same kinds of thing.
	runcPod := podConfig("plain", "plain1", nil)
	runcPodID := must("runp", "--runtime", "runc", runcPod)
	r := must("create", runcPodID, ctrConfig("plain"), runcPod)
	must("start", r)
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
	for _, c := range []string{filepath.Join(podCgroup, a), filepath.Join(podCgroup, podID)} {
		if _, err := os.Stat(c); !os.IsNotExist(err) {
			t.Errorf("%s left behind", c)
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
