package replay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/agentcgroup/agentcgroup/replay/trace"
)

// TestDefaultBound: ten times the longest trace the agents replay,
// compressed, plus a minute.
func TestDefaultBound(t *testing.T) {
	tr := func(end float64) *trace.Trace { return &trace.Trace{Samples: []trace.Sample{{T: 0}, {T: end}}} }
	traces := []*trace.Trace{tr(60), tr(600)}
	if got, want := defaultBound(Config{Agents: 1, Speed: 10}, traces), time.Minute+time.Minute; got != want {
		t.Errorf("one agent: %v, want %v (the second trace is not replayed)", got, want)
	}
	if got, want := defaultBound(Config{Agents: 2, Speed: 10}, traces), 10*time.Minute+time.Minute; got != want {
		t.Errorf("two agents: %v, want %v", got, want)
	}
}

// TestAwait: how an agent ended, from its exit status and output, the
// errors that are no benchmark outcome, and the deletion of its container.
func TestAwait(t *testing.T) {
	summary := trace.SummaryPrefix + `{"task":"t","calls":3,"killed":1}` + "\n"
	for _, tc := range []struct {
		name      string
		code      uint32
		waitErr   error
		bound     bool // the arm's bound has ended
		output    string
		removeErr error
		want      AgentResult
		errs      []string
	}{
		{name: "completed", code: 0, output: summary,
			want: AgentResult{Completed: true, Summary: &trace.Summary{Task: "t", Calls: 3, Killed: 1}}},
		{name: "agent killed", code: 137, output: "call 2\n",
			want: AgentResult{ExitStatus: 137, AgentKilled: true}},
		{name: "simulator failed", code: 2, output: "agentsim: no such trace\n", removeErr: errors.New("busy"),
			want: AgentResult{ExitStatus: 2},
			errs: []string{"agent replay-a-0 exited 2: agentsim: no such trace", "remove replay-a-0: busy"}},
		{name: "unfinished", waitErr: context.DeadlineExceeded, bound: true, output: "call 1\ncall 7: pytest\n",
			want: AgentResult{Unfinished: true, Doing: "call 7: pytest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &armRun{arm: Arms[0], pool: "/agentcgroup-test-none", logs: t.TempDir(), errs: make(chan error, 2)}
			ar := &AgentResult{ID: "replay-a-0"}
			if err := os.WriteFile(filepath.Join(r.logs, ar.ID+".log"), []byte(tc.output), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.bound {
				cancel()
			}
			defer cancel()
			exited := make(chan containerd.ExitStatus, 1)
			exited <- *containerd.NewExitStatus(tc.code, time.Now(), tc.waitErr)
			removed := false
			r.await(ctx, ar, exited, func() error { removed = true; return tc.removeErr })

			if !removed || r.finished.Load() != 1 {
				t.Errorf("removed %v, finished %d; want true, 1", removed, r.finished.Load())
			}
			tc.want.ID, tc.want.Cost = ar.ID, ar.Cost // measureCost has tests of its own
			if !reflect.DeepEqual(*ar, tc.want) {
				t.Errorf("agent %+v, want %+v", *ar, tc.want)
			}
			close(r.errs)
			var errs []string
			for err := range r.errs {
				errs = append(errs, err.Error())
			}
			if strings.Join(errs, "\n") != strings.Join(tc.errs, "\n") {
				t.Errorf("errors %q, want %q", errs, tc.errs)
			}
		})
	}
}
