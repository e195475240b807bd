package exechold

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// cpu is the shim's meter: every Listener in the process shares it, as they
// share the process's CPU.
var cpu = &meter{cpuTime: processCPU}

// The meter divides the shim's CPU by the execve served over a window of
// at least meterWindow and meterMinHeld execve. A window that took longer
// than meterMaxSpan to see them says zero: under 8 execve a second, serving
// reaches a quarter of a CPU only if one costs over 30 ms, which none does.
var meterWindow = 250 * time.Millisecond

const (
	meterMaxSpan = time.Second
	meterMinHeld = 8
)

// meter tells what serving one held execve costs the shim in CPU: the wake-
// up, the Go scheduler and the receive, which timing the handler misses,
// included. It divides the process's CPU over a recent window by the
// execve served in it, so whatever else the shim did then is charged too:
// an overcharge that only matters at rates the budget is there to bound.
type meter struct {
	cpuTime func() time.Duration

	mu    sync.Mutex
	start time.Time     // the window's start
	used  time.Duration // the process's CPU at start
	held  int           // execve served since start
	per   time.Duration // the last full window's CPU per execve
}

// served counts one execve served at now, and returns the CPU per execve
// of the last full window, zero if execve were too rare to tell.
func (m *meter) served(now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held++
	span := now.Sub(m.start)
	if span < meterWindow || (m.held < meterMinHeld && span <= meterMaxSpan) {
		return m.per
	}
	used := m.cpuTime()
	if used < 0 {
		return m.per // unread: the window goes on
	}
	m.per = 0
	if span <= meterMaxSpan && used > m.used {
		m.per = (used - m.used) / time.Duration(m.held)
	}
	m.start, m.used, m.held = now, used, 0
	return m.per
}

// processCPU is the user and system CPU time of the whole shim process,
// or -1 where it cannot be read.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
