package exechold

import (
	"testing"
	"time"
)

// TestMeter: the CPU per execve comes from windows with enough execve in
// them, and is zero when execve are rare or after a pause, whatever the
// process did meanwhile.
func TestMeter(t *testing.T) {
	var used time.Duration
	m := &meter{cpuTime: func() time.Duration { return used }}
	now := time.Unix(1000, 0)
	serve := func(n int, every, cost time.Duration) time.Duration {
		var per time.Duration
		for range n {
			now = now.Add(every)
			used += cost
			per = m.served(now)
		}
		return per
	}
	if per := serve(1, 0, time.Millisecond); per != 0 {
		t.Fatalf("first execve: %v per execve, want 0 (no window yet)", per)
	}
	// 100 a second at 2 ms each: from the first full window on, 2 ms.
	if per := serve(50, 10*time.Millisecond, 2*time.Millisecond); per != 2*time.Millisecond {
		t.Fatalf("100 execve a second of 2 ms: %v per execve, want 2ms", per)
	}
	// Paced to 5 a second: fewer than meterMinHeld in a second.
	if per := serve(10, 200*time.Millisecond, 2*time.Millisecond); per != 0 {
		t.Fatalf("5 execve a second: %v per execve, want 0", per)
	}
	// A minute's pause in which the shim did other work: not charged.
	now = now.Add(time.Minute)
	used += 10 * time.Second
	if per := serve(1, 0, time.Millisecond); per != 0 {
		t.Fatalf("after a pause: %v per execve, want 0", per)
	}
	if per := serve(40, 10*time.Millisecond, time.Millisecond); per != time.Millisecond {
		t.Fatalf("100 execve a second of 1 ms: %v per execve, want 1ms", per)
	}
	// An unreadable CPU time leaves the estimate and the window as they
	// were.
	m.cpuTime = func() time.Duration { return -1 }
	if per := serve(30, 10*time.Millisecond, time.Millisecond); per != time.Millisecond {
		t.Fatalf("CPU time unread: %v per execve, want 1ms still", per)
	}
	m.cpuTime = func() time.Duration { return used }
	if per := serve(1, 10*time.Millisecond, time.Millisecond); per != time.Millisecond {
		t.Fatalf("CPU time read again: %v per execve, want 1ms", per)
	}
}
