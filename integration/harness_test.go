//go:build integration

// Package integration runs agentcgroup on the real stack: containerd 2.4 and
// 1.6, runc 1.5 and 1.1, crun, a cgroup v2 kernel. `make integration` builds
// this test binary and runs it as root in the lab guest (lab.sh).
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

const namespace = "agentcgroup-test"

var (
	projectRoot string
	rootfs      string
	daemons     sync.Map // stack name -> *daemon
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		os.Exit(1)
	}
	code := m.Run()
	daemons.Range(func(_, v any) bool { v.(*daemon).stop(); return true })
	os.RemoveAll(rootfs)
	// runc makes the namespace's parent cgroup in every hierarchy and leaves
	// it; rmdir removes it once empty.
	parents, _ := filepath.Glob(filepath.Join(cgroupfs.Root, "*", namespace))
	for _, p := range append(parents, filepath.Join(cgroupfs.Root, namespace)) {
		os.Remove(p)
	}
	os.Exit(code)
}

func setup() error {
	if os.Geteuid() != 0 {
		return errors.New("the integration tests need root; run them with `make integration` (in the lab guest)")
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	for projectRoot = wd; ; projectRoot = filepath.Dir(projectRoot) {
		if _, err := os.Stat(filepath.Join(projectRoot, "go.mod")); err == nil {
			break
		}
		if projectRoot == "/" {
			return fmt.Errorf("no go.mod above %s", wd)
		}
	}
	for _, b := range []string{"bin/containerd-shim-agentcgroup-v1", "bin/agentcgroup-oci-runtime", "bin/agentcgroup", "bin/agentsim", ".cache/tools/bin/containerd", ".cache/tools/containerd-1.7/bin/containerd"} {
		if _, err := os.Stat(filepath.Join(projectRoot, b)); err != nil {
			return fmt.Errorf("%s missing: run `make integration`", b)
		}
	}
	rootfs, err = buildRootfs()
	return err
}

// buildRootfs makes a container root with busybox and its links.
func buildRootfs() (string, error) {
	dir, err := os.MkdirTemp("", "agentcgroup-rootfs")
	if err != nil {
		return "", err
	}
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bb, 0o755); err != nil {
		return "", err
	}
	sim, err := os.ReadFile(filepath.Join(projectRoot, "bin/agentsim"))
	if err != nil {
		return "", fmt.Errorf("agent simulator: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/agentsim"), sim, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return "", err
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(dir, "bin", name)); err != nil {
				return "", err
			}
		}
	}
	return dir, nil
}

// stack is one combination of containerd and OCI runtime.
type stack struct {
	name          string
	containerd    string
	ctrBin        string
	path          string // the daemon's PATH: where it finds shims, and shims find runc
	configVersion int
	crun          bool
}

func stacks() []stack {
	tools := filepath.Join(projectRoot, ".cache/tools/bin")
	bin := filepath.Join(projectRoot, "bin")
	sys := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// crun 1.8.1 refuses containerd 2.4's runtime-spec 1.3 config ("unknown
	// version specified"), so it is paired with containerd 1.6 as on Debian 12.
	debian := stack{containerd: "/usr/bin/containerd", ctrBin: "/usr/bin/ctr", path: bin + ":" + sys, configVersion: 2}
	d16runc, d16crun := debian, debian
	d16runc.name, d16crun.name, d16crun.crun = "containerd-1.6+runc-1.1", "containerd-1.6+crun-1.8", true
	c17 := filepath.Join(tools, "..", "containerd-1.7", "bin")
	return []stack{
		{name: "containerd-2.4+runc-1.5", containerd: filepath.Join(tools, "containerd"), ctrBin: filepath.Join(tools, "ctr"),
			path: bin + ":" + tools + ":" + sys, configVersion: 3},
		d16runc, d16crun,
		// containerd 1.7's own runc shim comes first on its PATH; runc 1.5 next.
		{name: "containerd-1.7+runc-1.5", containerd: filepath.Join(c17, "containerd"), ctrBin: filepath.Join(c17, "ctr"),
			path: bin + ":" + c17 + ":" + tools + ":" + sys, configVersion: 2},
	}
}

// forEachStack runs f as a subtest on every stack's daemon.
func forEachStack(t *testing.T, f func(t *testing.T, d *daemon)) {
	if !cgroupfs.HasController(cgroupfs.Root, "memory") {
		t.Fatal("this test needs a cgroup v2 host with the memory controller; `make integration` runs it in the lab guest")
	}
	for _, s := range stacks() {
		t.Run(s.name, func(t *testing.T) { f(t, getDaemon(t, s)) })
	}
}

type daemon struct {
	stack
	dir, sock string
	cmd       *exec.Cmd
	crunCfg   string // runtime config naming crun, for agentcgroup
}

var daemonsMu sync.Mutex

func getDaemon(t testing.TB, s stack) *daemon {
	daemonsMu.Lock()
	defer daemonsMu.Unlock()
	key := s.containerd
	if v, ok := daemons.Load(key); ok {
		d := *v.(*daemon)
		d.stack = s
		return &d
	}
	d, err := startDaemon(s)
	if err != nil {
		t.Fatalf("start %s: %v", s.containerd, err)
	}
	daemons.Store(key, d)
	return d
}

func startDaemon(s stack) (*daemon, error) {
	dir, err := tmpfsDir("agentcgroup-containerd")
	if err != nil {
		return nil, err
	}
	d := &daemon{stack: s, dir: dir, sock: filepath.Join(dir, "containerd.sock")}
	disabled := `["io.containerd.grpc.v1.cri"]`
	if s.configVersion == 3 {
		disabled = `["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"]`
	}
	cfg := daemonConfig(s.configVersion, dir, d.sock, disabled)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	d.crunCfg = filepath.Join(dir, "crun.toml")
	if err := os.WriteFile(d.crunCfg, []byte("BinaryName = \"/usr/bin/crun\"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := d.startProcess(); err != nil {
		return nil, err
	}
	return d, nil
}

// daemonConfig is the head of a private containerd's config: its version,
// state under dir, its sockets, and the plugins it leaves out.
func daemonConfig(version int, dir, sock, disabled string) string {
	return fmt.Sprintf("version = %d\nroot = %q\nstate = %q\ndisabled_plugins = %s\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n",
		version, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, sock, sock+".ttrpc")
}

// startProcess starts containerd on the daemon's config and waits for it.
func (d *daemon) startProcess() error {
	logf, err := os.OpenFile(filepath.Join(d.dir, "containerd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	d.cmd = exec.Command(d.containerd, "--config", filepath.Join(d.dir, "config.toml"), "--log-level", "debug")
	d.cmd.Env = append(os.Environ(), "PATH="+d.path)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		return err
	}
	for i := 0; i < 300; i++ {
		if r, err := d.run(nil, "version"); err == nil && r.code == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("containerd did not come up; log: %s", d.log())
}

// restart stops containerd as a service manager does (SIGTERM) and starts
// it again on the same state; the shims run on.
func (d *daemon) restart(t testing.TB) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	if err := d.startProcess(); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "containerd.log"))
	return string(b)
}

// tmpfsDir makes a temporary folder on a tmpfs of its own: snapshotters
// mount overlays there, which an overlay (the lab guest's root) cannot hold.
func tmpfsDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		return "", fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	return dir, nil
}

// testTmpfsDir is a tmpfsDir removed when the test ends.
func testTmpfsDir(t *testing.T, prefix string) string {
	dir, err := tmpfsDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeTmpfsDir(dir) })
	return dir
}

// cachedTool is a tool integration/tools.sh builds into .cache/tools/bin.
func cachedTool(t *testing.T, name string) string {
	path := filepath.Join(projectRoot, ".cache/tools/bin", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s (integration/tools.sh builds it): %v", name, err)
	}
	return path
}

// removeTmpfsDir unmounts and removes a tmpfsDir.
func removeTmpfsDir(dir string) {
	syscall.Unmount(dir, syscall.MNT_DETACH)
	os.RemoveAll(dir)
}

func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	removeTmpfsDir(d.dir)
}

// result is what a ctr command did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// run runs ctr against the daemon, in the test namespace.
func (d *daemon) run(stdin []byte, args ...string) (result, error) {
	return d.runFor(2*time.Minute, stdin, args...)
}

// runFor is run with a time bound of its own.
func (d *daemon) runFor(bound time.Duration, stdin []byte, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.ctrBin, append([]string{"--address", d.sock, "--namespace", namespace}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+d.path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code, err = ee.ExitCode(), nil
	}
	return r, err
}

// ctr runs ctr and fails the test if it could not run at all.
func (d *daemon) ctr(t testing.TB, args ...string) result {
	t.Helper()
	r, err := d.run(nil, args...)
	if err != nil {
		t.Fatalf("ctr %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustCtr runs ctr and fails the test unless it exits 0.
func (d *daemon) mustCtr(t testing.TB, args ...string) string {
	t.Helper()
	r := d.ctr(t, args...)
	if r.code != 0 {
		t.Fatalf("ctr %s: %v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// runtime is how a container is put under one of the two shims.
type runtime struct {
	name string
	args []string
}

func (d *daemon) runc() runtime {
	r := runtime{"runc", []string{"--runtime", "io.containerd.runc.v2"}}
	if d.crun {
		r.args = append(r.args, "--runc-binary", "/usr/bin/crun")
	}
	return r
}

func (d *daemon) agentcgroup() runtime {
	r := runtime{"agentcgroup", []string{"--runtime", "io.containerd.agentcgroup.v1"}}
	if d.crun {
		r.args = append(r.args, "--runtime-config-path", d.crunCfg)
	}
	return r
}

var ids atomic.Int64

func newID(prefix string) string { return fmt.Sprintf("%s-%d", prefix, ids.Add(1)) }

// runArgs is `ctr run` under rt with the test rootfs; extra goes before the id.
func runArgs(rt runtime, detach bool, id string, extra []string, argv ...string) []string {
	args := []string{"run"}
	if detach {
		args = append(args, "-d")
	}
	args = append(args, rt.args...)
	args = append(args, "--env", "PATH=/bin")
	args = append(args, extra...)
	// --rootfs is a bool flag in ctr 1.6 (the path is the first argument)
	// and takes the path in 2.x: this order suits both.
	return append(append(args, "--rootfs", rootfs, id), argv...)
}

// start runs a detached container and registers its removal.
func (d *daemon) start(t testing.TB, rt runtime, id string, extra []string, argv ...string) {
	t.Helper()
	d.mustCtr(t, runArgs(rt, true, id, extra, argv...)...)
	t.Cleanup(func() { d.remove(id) })
}

// remove kills and deletes a container, whatever state it is in.
func (d *daemon) remove(id string) {
	d.run(nil, "task", "kill", "-s", "SIGKILL", id)
	for i := 0; i < 50; i++ {
		if r, _ := d.run(nil, "task", "rm", "-f", id); r.code == 0 || strings.Contains(r.stderr, "not found") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.run(nil, "container", "rm", id)
}

// status is the task's status in `ctr task ls`.
func (d *daemon) status(t testing.TB, id string) string {
	for _, line := range strings.Split(d.mustCtr(t, "task", "ls"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return "NONE"
}

func (d *daemon) waitStatus(t testing.TB, id, want string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if d.status(t, id) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("task %s did not reach %s (is %s)", id, want, d.status(t, id))
}

// pid is the task's init pid.
func (d *daemon) pid(t testing.TB, id string) int {
	for _, line := range strings.Split(d.mustCtr(t, "task", "ls"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no task %s", id)
	return 0
}

var exitCodeRE = regexp.MustCompile(`exit code (\d+)`)

// deleteExitCode deletes a stopped task and returns the exit code ctr reports.
func (d *daemon) deleteExitCode(t testing.TB, id string) int {
	t.Helper()
	r := d.ctr(t, "task", "rm", id)
	if r.code != 0 {
		t.Fatalf("task rm %s: %v", id, r)
	}
	if m := exitCodeRE.FindStringSubmatch(r.stderr + r.stdout); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// containerCgroup is C, as created by runc for ctr's default cgroupsPath.
func containerCgroup(id string) string { return cgroupfs.Path("/" + namespace + "/" + id) }

func readTrim(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// shimPids lists the agentcgroup shim processes serving id.
func shimPids(id string) []int {
	return shimProcs(func(args []string) bool { return servesID(args, id) })
}

// shimProcs lists the agentcgroup shim processes whose argv keep accepts.
func shimProcs(keep func(args []string) bool) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if strings.HasSuffix(args[0], "containerd-shim-agentcgroup-v1") && keep(args) {
			out = append(out, pid)
		}
	}
	return out
}

// servesID reports whether a shim's argv names container id.
func servesID(args []string, id string) bool {
	for i := range args {
		if args[i] == "-id" && i+1 < len(args) && args[i+1] == id {
			return true
		}
	}
	return false
}

// eventually polls cond for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for: %s", what)
}

// assertGone checks that nothing of container id is left: no cgroup, no
// state folder, no shim process.
func assertGone(t testing.TB, id string) {
	t.Helper()
	eventually(t, "no shim process for "+id, func() bool { return len(shimPids(id)) == 0 })
	if _, err := os.Stat(containerCgroup(id)); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind (%v)", containerCgroup(id), err)
	}
	if _, err := os.Stat(filepath.Join("/run/agentcgroup", namespace, id)); !os.IsNotExist(err) {
		t.Errorf("state folder of %s left behind (%v)", id, err)
	}
}
