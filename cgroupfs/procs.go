package cgroupfs

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcsBelow lists the processes in the cgroup at dir and in every cgroup
// below it; a cgroup removed meanwhile is skipped.
func ProcsBelow(dir string) ([]uint64, error) {
	pids := []uint64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if os.IsNotExist(err) && p != dir {
			return nil
		}
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return err
			}
			pids = append(pids, pid)
		}
		return nil
	})
	return pids, err
}
