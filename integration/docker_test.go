//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// dockerDaemon is dockerd against the 2.4 stack's containerd, with the
// agentcgroup runtime named in daemon.json as the README shows it.
type dockerDaemon struct {
	sock    string
	dir     string
	systemd bool // native.cgroupdriver=systemd
}

// cgroup is the cgroup of container id under the daemon's cgroup driver.
func (dd *dockerDaemon) cgroup(id string) string {
	if dd.systemd {
		return cgroupfs.Path("/system.slice/docker-" + id + ".scope")
	}
	return cgroupfs.Path("/docker/" + id)
}

func startDocker(t *testing.T, d *daemon, systemd bool) *dockerDaemon {
	t.Helper()
	dockerd := cachedTool(t, "dockerd")
	dir := testTmpfsDir(t, "agentcgroup-docker")
	dd := &dockerDaemon{sock: filepath.Join(dir, "docker.sock"), dir: dir, systemd: systemd}
	driver := "cgroupfs"
	if systemd {
		driver = "systemd"
	}
	cfg := map[string]any{
		"iptables": false, "ip6tables": false, "bridge": "none", "userland-proxy": false,
		"containerd": d.sock, "data-root": filepath.Join(dir, "data"), "exec-root": filepath.Join(dir, "exec"),
		"pidfile": filepath.Join(dir, "docker.pid"), "hosts": []string{"unix://" + dd.sock},
		"exec-opts": []string{"native.cgroupdriver=" + driver},
		"runtimes":  map[string]any{"agentcgroup": map[string]any{"runtimeType": "io.containerd.agentcgroup.v1"}},
	}
	path := writeJSON(t, dir, "daemon.json", cfg)
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dockerd, "--config-file", path)
	cmd.Env = append(os.Environ(), "PATH="+d.path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if r := dd.docker(t, "version"); r.code == 0 {
			return dd
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			t.Fatalf("dockerd did not come up:\n%s", tail(string(log), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (dd *dockerDaemon) docker(t testing.TB, args ...string) result {
	t.Helper()
	c := exec.Command("docker", append([]string{"-H", "unix://" + dd.sock}, args...)...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func (dd *dockerDaemon) must(t testing.TB, args ...string) string {
	t.Helper()
	r := dd.docker(t, args...)
	if r.code != 0 {
		t.Fatalf("docker %v: %v", args, r)
	}
	return strings.TrimSpace(r.stdout)
}

// importRootfs makes an image of dir with `docker import`.
func (dd *dockerDaemon) importRootfs(t *testing.T, dir, name string) {
	c := exec.Command("docker", "-H", "unix://"+dd.sock, "import", "-", name)
	c.Stdin = bytes.NewReader(tarDir(t, dir))
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v: %s", err, out)
	}
}

// TestDocker: Docker 24+ (dockerd v2 beta, the machine's docker CLI 28)
// against containerd 2.4, cgroupfs driver (TestSystemdDriver runs it with
// the systemd driver). Each case runs under the default runtime and under
// agentcgroup (named in daemon.json, and by its runtime type) in the same
// daemon, and the transcripts, events included, must be equal; then what
// is about the tree: execs are tool calls in C/tools, a tool call's OOM is
// told and is not the container's (inspect OOMKilled false), and `docker
// rm -f` leaves nothing.
func TestDocker(t *testing.T) { testDocker(t, false) }

func testDocker(t *testing.T, systemd bool) {
	d := getDaemon(t, stacks()[0])
	dd := startDocker(t, d, systemd)
	dd.importRootfs(t, rootfs, "agentcgroup-test:1")

	transcript := func(runtime string) []string {
		var out []string
		since := strconv.FormatInt(time.Now().Unix()-1, 10)
		run := []string{"run", "-d", "--network", "none", "--memory", "512m"}
		if runtime != "" {
			run = append(run, "--runtime", runtime)
		}
		id := dd.must(t, append(run, "agentcgroup-test:1", "/bin/sh", "-c", `trap "exit 42" TERM; sleep 1000 & wait`)...)
		defer dd.docker(t, "rm", "-f", id)
		r := dd.docker(t, "exec", id, "/bin/sh", "-c", "echo out; echo err >&2; exit 5")
		out = append(out, fmt.Sprintf("exec: exit=%d stdout=%q stderr=%q", r.code, r.stdout, r.stderr))
		start := time.Now()
		r = dd.docker(t, "exec", id, "/bin/sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo started")
		out = append(out, fmt.Sprintf("exec with a background job: exit=%d stdout=%q back before it ended: %v", r.code, r.stdout, time.Since(start) < 20*time.Second))
		// What else agents do through execs.
		start = time.Now()
		r = dd.docker(t, "exec", id, "/bin/sh", "-c", "setsid sh -c 'sleep 30' </dev/null >/dev/null 2>&1 & echo daemonised")
		out = append(out, fmt.Sprintf("setsid: exit=%d stdout=%q back before it ended: %v", r.code, r.stdout, time.Since(start) < 20*time.Second))
		r = dd.docker(t, "exec", id, "/bin/no-such-program")
		out = append(out, fmt.Sprintf("missing binary: exit=%d stderr=%q", r.code, r.stderr))
		r = dd.docker(t, "exec", id, "/bin/sh", "-c", "yes 0123456789abcdef | head -c 4000000")
		out = append(out, fmt.Sprintf("large stdout: exit=%d bytes=%d", r.code, len(r.stdout)))
		r = dd.docker(t, "exec", id, "/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do /bin/true & i=$((i+1)); done; wait; echo forked")
		out = append(out, fmt.Sprintf("1000 children: exit=%d stdout=%q", r.code, r.stdout))
		r = dd.docker(t, "exec", id, "/bin/sh", "-c", "kill -9 $$")
		out = append(out, fmt.Sprintf("exit by a signal: exit=%d", r.code))
		r = dd.docker(t, "exec", id, "/bin/agentsim", "-int80")
		out = append(out, fmt.Sprintf("32-bit system call (default profile): exit=%d", r.code))
		r = dd.docker(t, "exec", "-d", id, "/bin/sleep", "2")
		out = append(out, fmt.Sprintf("exec -d: exit=%d", r.code))
		r = dd.docker(t, "exec", "-t", id, "/bin/sh", "-c", "tty; stty size; exit 4")
		out = append(out, fmt.Sprintf("exec -t: exit=%d stdout=%q stderr=%q", r.code, r.stdout, r.stderr))
		top := dd.must(t, "top", id)
		out = append(out, fmt.Sprintf("top: sleep 1000 there: %v", strings.Contains(top, "sleep 1000")))
		stats := dd.must(t, "stats", "--no-stream", "--format", "{{.MemUsage}}", id)
		out = append(out, fmt.Sprintf("stats: memory limit shown: %v", strings.Contains(stats, "512MiB")))
		dd.must(t, "pause", id)
		out = append(out, "paused: "+dd.must(t, "inspect", "-f", "{{.State.Status}}", id))
		dd.must(t, "unpause", id)
		out = append(out, "unpaused: "+dd.must(t, "inspect", "-f", "{{.State.Status}}", id))
		dd.must(t, "stop", "-t", "10", id)
		out = append(out, "stop (TERM trapped): "+dd.must(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}", id))
		id2 := dd.must(t, append(run, "agentcgroup-test:1", "/bin/sleep", "1000")...)
		defer dd.docker(t, "rm", "-f", id2)
		dd.must(t, "kill", id2)
		dd.docker(t, "wait", id2)
		out = append(out, "kill: "+dd.must(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id2))
		// What `docker events` said of both containers (sorted: an exec -d
		// ends whenever it ends); containers named by the order they were made.
		events := dd.must(t, "events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
			"--filter", "container="+id, "--filter", "container="+id2, "--format", "{{.Actor.ID}} {{.Action}}")
		lines := strings.Split(strings.NewReplacer(id, "first", id2, "second").Replace(events), "\n")
		slices.Sort(lines)
		out = append(out, "events: "+strings.Join(lines, "; "))
		r = dd.docker(t, append(append([]string{}, "run", "--rm", "--network", "none", "--memory", "32m", "--runtime", or(runtime, "runc")),
			"agentcgroup-test:1", "/bin/sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1")...)
		out = append(out, fmt.Sprintf("container over its own memory limit: exit=%d", r.code))
		return out
	}
	want := transcript("")
	for _, rt := range []string{"agentcgroup", "io.containerd.agentcgroup.v1"} {
		if got := transcript(rt); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("--runtime %s differs from the default runtime:\n got  %q\n want %q", rt, got, want)
		}
	}
	for _, w := range []string{`exec: exit=5 stdout="out\n" stderr="err\n"`, "back before it ended: true", `exec -t: exit=4 stdout="/dev/pts/`, "first exec_die", "second die", "setsid: exit=0", "missing binary: exit=127", "large stdout: exit=0 bytes=4000000",
		`1000 children: exit=0 stdout="forked\n"`, "exit by a signal: exit=137", "32-bit system call (default profile): exit=0", "paused: paused", "stop (TERM trapped): exited 42 false", "kill: exited 137", "over its own memory limit: exit=137"} {
		if !strings.Contains(strings.Join(want, "\n"), w) {
			t.Errorf("the default runtime's transcript %q lacks %q", want, w)
		}
	}

	// The tree.
	id := dd.must(t, "run", "-d", "--runtime", "agentcgroup", "--network", "none", "--memory", "512m",
		"--annotation", "io.agentcgroup.tool.memory.max=64Mi", "agentcgroup-test:1", "/bin/agentsim")
	if cg := dd.must(t, "exec", id, "cat", "/proc/self/cgroup"); !strings.HasPrefix(cg, "0::/tools/") {
		t.Errorf("docker exec runs in %q, want a tools cgroup", cg)
	}
	// Docker's default seccomp profile refuses clone3 without CAP_SYS_ADMIN;
	// either way no process leaves its tool call.
	if r := dd.docker(t, "exec", id, "/bin/agentsim", "-escape", "agent", "/bin/sh", "-c", "sleep 1; cat /proc/self/cgroup"); strings.Contains(r.stdout, "0::/agent") {
		t.Errorf("a process cloned into C/agent from a docker exec stayed there: %v", r)
	}
	for _, f := range []string{"agent/memory.max", "memory.max", "agent/cgroup.procs"} {
		if r := dd.docker(t, "exec", id, "/bin/sh", "-c", "echo max > /sys/fs/cgroup/"+f); r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
			t.Errorf("write to %s from inside: %v; want refused (read-only)", f, r)
		}
	}
	r := dd.docker(t, "exec", id, "/bin/agentsim", "-alloc", "128")
	if r.code != 137 || !strings.Contains(r.stderr, "agentcgroup: tool call killed: out of memory at its own limit memory.max=64.0 MiB") {
		t.Errorf("a tool call past its limit: %v", r)
	}
	if st := dd.must(t, "inspect", "-f", "{{.State.Status}} {{.State.OOMKilled}}", id); st != "running false" {
		t.Errorf("the container after its tool call's OOM: %s; want running, not OOMKilled", st)
	}
	c := dd.cgroup(id)
	if _, err := os.Stat(filepath.Join(c, "agent")); err != nil {
		t.Errorf("C/agent of the Docker container: %v", err)
	}
	dd.must(t, "rm", "-f", id)
	eventually(t, "no shim, cgroup or state left", func() bool {
		_, errC := os.Stat(c)
		_, errS := os.Stat(filepath.Join("/run/agentcgroup/moby", id))
		return len(shimPids(id)) == 0 && os.IsNotExist(errC) && os.IsNotExist(errS)
	})
	if systemd {
		assertNoUnit(t, "docker-"+id+".scope")
	}
	assertQuietCleanup(t, filepath.Join(d.dir, "containerd.log"))
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
