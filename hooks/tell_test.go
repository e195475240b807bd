package hooks

import (
	"context"
	"io"
	"os"
	"testing"
	"time"
)

// TestTeller: the reason is written once, first come, and the stream ends
// with close; a call that ends normally closes without a word.
func TestTeller(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		say, close, want string
	}{
		{"oom at its own limit", "oom at its own limit (at exit)", TellPrefix + "oom at its own limit\n"},
		{"", "no progress", TellPrefix + "no progress\n"},
		{"", "", ""},
	} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		tl := &teller{w: w}
		if tc.say != "" {
			tl.say(ctx, tc.say)
			time.Sleep(20 * time.Millisecond) // the notification comes before the exit
		}
		tl.close(ctx, tc.close)
		tl.close(ctx, "twice")
		got := make(chan string)
		go func() { b, _ := io.ReadAll(r); got <- string(b) }()
		select {
		case s := <-got:
			if s != tc.want {
				t.Errorf("stream %q, want %q", s, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the stream did not end")
		}
		r.Close()
	}
	(&teller{}).close(ctx, "nothing to tell on") // no stream: no panic
}
