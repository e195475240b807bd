package exechold

import (
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestConfigure(t *testing.T) {
	notify := specs.LinuxSyscall{Names: []string{"execve", "execveat"}, Action: specs.ActNotify}
	for _, tc := range []struct {
		name string
		in   *specs.LinuxSeccomp
		want *specs.LinuxSeccomp // nil: refused
		err  string
	}{
		{
			name: "no profile",
			want: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: hostArches(), Syscalls: []specs.LinuxSyscall{notify}, ListenerPath: "/s"},
		},
		{
			name: "architectures listed",
			in:   &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64}},
			want: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64}, Syscalls: []specs.LinuxSyscall{notify}, ListenerPath: "/s"},
		},
		{
			name: "allow list naming execve, as Docker's default",
			in: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read", "execve", "execveat", "write"}, Action: specs.ActAllow},
				{Names: []string{"execve"}, Action: specs.ActAllow},
				{Names: []string{"ptrace"}, Action: specs.ActErrno},
			}},
			want: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, ListenerPath: "/s", Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read", "write"}, Action: specs.ActAllow},
				{Names: []string{"ptrace"}, Action: specs.ActErrno},
				notify,
			}},
		},
		{
			name: "execve denied by default",
			in:   &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"execveat"}, Action: specs.ActAllow}}},
			err:  "does not allow execve (SCMP_ACT_ERRNO)",
		},
		{
			name: "execveat denied by a rule",
			in:   &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"execveat"}, Action: specs.ActKillProcess}}},
			err:  "does not allow execveat",
		},
		{
			name: "execve allowed for some arguments",
			in: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"execve"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: specs.OpEqualTo}}}}},
			err: "only for some arguments",
		},
		{
			name: "another listener",
			in:   &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/other"},
			err:  "listener already (/other)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Linux: &specs.Linux{Seccomp: tc.in}}
			var before *specs.LinuxSeccomp
			if tc.in != nil {
				c := *tc.in
				c.Syscalls = append([]specs.LinuxSyscall(nil), tc.in.Syscalls...)
				before = &c
			}
			err := Configure(spec, "/s")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				if !reflect.DeepEqual(spec.Linux.Seccomp, before) {
					t.Fatalf("a refused profile was changed: %+v", spec.Linux.Seccomp)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(spec.Linux.Seccomp, tc.want) {
				t.Fatalf("got %+v\nwant %+v", spec.Linux.Seccomp, tc.want)
			}
		})
	}
}

// TestConfigureArchitectures: a container without a profile keeps every
// architecture the host runs: with none listed, runc's filter kills each
// system call of another architecture (int 0x80, i386 and -m32 programs).
func TestConfigureArchitectures(t *testing.T) {
	want := map[string][]specs.Arch{
		"amd64": {specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		"arm64": {specs.ArchAARCH64, specs.ArchARM},
	}[runtime.GOARCH]
	if want == nil {
		t.Skipf("no expectation for %s", runtime.GOARCH)
	}
	spec := &specs.Spec{}
	if err := Configure(spec, "/s"); err != nil {
		t.Fatal(err)
	}
	if got := spec.Linux.Seccomp.Architectures; !reflect.DeepEqual(got, want) {
		t.Fatalf("architectures %v, want %v", got, want)
	}
}
