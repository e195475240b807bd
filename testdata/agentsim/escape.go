package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// escape runs argv as a child cloned straight into the cgroup dir (clone3
// CLONE_INTO_CGROUP), as a hostile tool call would try to leave its own
// cgroup, and reports how the child ended. A relative dir is taken in the
// container's cgroup C, two levels above the caller's own (C/tools/<id>),
// as /sys/fs/cgroup shows it with or without a cgroup namespace.
func escape(dir string, argv []string) {
	if !filepath.IsAbs(dir) {
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			fmt.Fprintln(os.Stderr, "agentsim:", err)
			os.Exit(2)
		}
		own := strings.TrimSpace(strings.TrimPrefix(string(b), "0::"))
		dir = filepath.Join("/sys/fs/cgroup", filepath.Dir(filepath.Dir(own)), dir)
	}
	fd, err := os.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentsim:", err)
		os.Exit(2)
	}
	defer fd.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	err = cmd.Run()
	fmt.Printf("escapee: %v\n", cmd.ProcessState)
	if err != nil && cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "agentsim:", err)
		os.Exit(2)
	}
}
