package toolcall

import (
	"errors"
	"testing"
	"time"
)

func newCall() *Call { return New(Record{ID: "c1", Start: time.Unix(100, 0)}) }

// TestTransitions: every move the table allows is taken, every other one is
// refused with ErrTransition, and an ended call moves nowhere.
func TestTransitions(t *testing.T) {
	all := []State{Running, Throttled, Frozen, Exited, OOMKilled, Killed}
	for _, from := range all {
		for _, to := range all {
			c := newCall()
			c.rec.State = from
			err := c.transition(to)
			allowed := !from.Ended() && from != to
			if allowed != (err == nil) {
				t.Errorf("%s to %s: err %v, allowed %v", from, to, err, allowed)
			}
			if err != nil && !errors.Is(err, ErrTransition) {
				t.Errorf("%s to %s: %v is not ErrTransition", from, to, err)
			}
			if err != nil && c.rec.State != from {
				t.Errorf("%s to %s refused but the state became %s", from, to, c.rec.State)
			}
		}
	}
}

// TestSpells: throttle and freeze spells add up in the record, a thaw returns
// to Throttled while the throttle spell lasts, and a freeze of a frozen call
// is refused.
func TestSpells(t *testing.T) {
	c := newCall()
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	if err := c.Throttle(at(0)); err != nil || c.State() != Throttled {
		t.Fatalf("Throttle: %v, %s", err, c.State())
	}
	if err := c.Freeze(at(1), "memory pressure on the pool"); err != nil || c.State() != Frozen {
		t.Fatalf("Freeze: %v, %s", err, c.State())
	}
	if r := c.Record(); r.FrozenSince == nil || !r.FrozenSince.Equal(at(1)) || r.ThrottledSince == nil || r.Waiting != "frozen: memory pressure on the pool" {
		t.Errorf("while frozen: since %v, throttled since %v, waiting %q", r.FrozenSince, r.ThrottledSince, r.Waiting)
	}
	if err := c.Freeze(at(1.5), "again"); !errors.Is(err, ErrTransition) {
		t.Errorf("second Freeze: %v", err)
	}
	if err := c.Thaw(at(3)); err != nil || c.State() != Throttled {
		t.Fatalf("Thaw: %v, %s", err, c.State())
	}
	if err := c.Unthrottle(at(4)); err != nil || c.State() != Running {
		t.Fatalf("Unthrottle: %v, %s", err, c.State())
	}
	if err := c.Thaw(at(5)); !errors.Is(err, ErrTransition) {
		t.Errorf("Thaw of a running call: %v", err)
	}
	r := c.Record()
	if r.FrozenSince != nil || r.ThrottledSince != nil || r.Waiting != "" {
		t.Errorf("spells left in the record: %+v", r)
	}
	if r.FrozenSeconds != 2 || r.ThrottledSeconds != 4 || r.Freezes != 1 {
		t.Errorf("frozen %v s, throttled %v s, freezes %d", r.FrozenSeconds, r.ThrottledSeconds, r.Freezes)
	}
}

// TestEnd: the final state follows from how the call died; a call frozen or
// throttled at its end has its spells closed; an ended call takes no event.
func TestEnd(t *testing.T) {
	code := func(v uint32) *uint32 { return &v }
	for _, tc := range []struct {
		name   string
		exit   *uint32
		m      Measures
		frozen bool
		want   State
	}{
		{"exit 0", code(0), Measures{}, false, Exited},
		{"exit 3", code(3), Measures{}, false, Exited},
		{"sigkill", code(137), Measures{}, false, Killed},
		{"no exit seen (teardown)", nil, Measures{}, false, Killed},
		{"oom", code(137), Measures{OOMKills: 1, OOM: 1}, false, OOMKilled},
		{"killed while frozen", code(137), Measures{}, true, Killed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCall()
			now := time.Unix(2000, 0)
			if err := c.Throttle(now); err != nil {
				t.Fatal(err)
			}
			if tc.frozen {
				if err := c.Freeze(now.Add(time.Second), "test"); err != nil {
					t.Fatal(err)
				}
			}
			if tc.exit != nil {
				c.Exit(*tc.exit, now.Add(2*time.Second))
			}
			r, err := c.End(now.Add(3*time.Second), tc.m, "why")
			if err != nil || r.State != tc.want || r.End == nil || r.Reason != "why" {
				t.Fatalf("End = %+v, %v; want %s", r, err, tc.want)
			}
			if r.ThrottledSeconds != 3 || (tc.frozen && r.FrozenSeconds != 2) {
				t.Errorf("throttled %v s, frozen %v s", r.ThrottledSeconds, r.FrozenSeconds)
			}
			if err := c.Freeze(now, "late"); !errors.Is(err, ErrTransition) {
				t.Errorf("Freeze after End: %v", err)
			}
			if _, err := c.End(now, tc.m, ""); !errors.Is(err, ErrTransition) {
				t.Errorf("second End: %v", err)
			}
			if c.Doom("late") {
				t.Error("an ended call was doomed")
			}
		})
	}
}

// TestSpellGetters: Throttling and FrozenSince follow the spells in
// progress, with the freeze's own time (its monotonic reading kept).
func TestSpellGetters(t *testing.T) {
	c := newCall()
	now := time.Now()
	if c.Throttling() || !c.FrozenSince().IsZero() {
		t.Fatal("a new call is throttled or frozen")
	}
	if err := c.Throttle(now); err != nil || !c.Throttling() {
		t.Fatalf("Throttle: %v, throttling %v", err, c.Throttling())
	}
	if err := c.Freeze(now.Add(time.Second), "memory pressure"); err != nil || c.FrozenSince() != now.Add(time.Second) {
		t.Fatalf("Freeze: %v, frozen since %v", err, c.FrozenSince())
	}
	if err := c.Thaw(now.Add(2 * time.Second)); err != nil || !c.FrozenSince().IsZero() || !c.Throttling() {
		t.Fatalf("Thaw: %v, frozen since %v, throttling %v", err, c.FrozenSince(), c.Throttling())
	}
}
