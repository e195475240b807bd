package cgroupfs

import (
	"errors"
	"testing"
	"time"
)

func TestReadPressure(t *testing.T) {
	dir := fakeCgroup(t, map[string]string{"memory.pressure": "some avg10=1.50 avg60=0.20 avg300=0.00 total=1234567\n" +
		"full avg10=0.00 avg60=0.00 avg300=0.00 total=89\n"})
	p, err := ReadPressure(dir)
	if err != nil || p.Some != 1234567*time.Microsecond || p.Full != 89*time.Microsecond {
		t.Errorf("ReadPressure = %+v, %v", p, err)
	}
	bad := fakeCgroup(t, map[string]string{"memory.pressure": "some avg10=0.00 total=x\n"})
	if _, err := ReadPressure(bad); err == nil {
		t.Error("ReadPressure accepted garbage")
	}
}

// Close must end a Wait that blocks, and Wait after Close must not block.
func TestPollerClose(t *testing.T) {
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	// A regular file cannot be polled: the error names it.
	dir := fakeCgroup(t, map[string]string{"memory.events": "high 0\n"})
	if err := p.AddFile("x", dir, "memory.events"); err == nil {
		t.Error("AddFile of a regular file succeeded")
	}
	done := make(chan error)
	go func() {
		_, err := p.Wait()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Wait after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
	if _, err := p.Wait(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Wait: %v", err)
	}
}
