package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/agentcgroup/agentcgroup/state"
	"github.com/agentcgroup/agentcgroup/toolcall"
	"github.com/agentcgroup/agentcgroup/tree"
)

var psCommand = &cli.Command{
	Name:      "ps",
	Usage:     "list a container's tool calls, running and ended",
	ArgsUsage: "CONTAINER",
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, EnvVars: []string{"CONTAINERD_NAMESPACE"}, Value: "default", Usage: "containerd namespace"},
		&cli.BoolFlag{Name: "json", Usage: "print one JSON array"},
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return fmt.Errorf("ps takes one CONTAINER, got %d arguments", c.NArg())
		}
		ns, id := c.String("namespace"), c.Args().First()
		dir := state.Dir(c.String("state-dir"), ns, id)
		st, err := state.Load(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no container %q in namespace %q runs under agentcgroup (nothing in %s)", id, ns, dir)
			}
			return err
		}
		recs, err := state.LoadRecords(dir)
		if err != nil {
			return err
		}
		for i := range recs {
			refresh(&recs[i])
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, recs)
		}
		if err := printTable(c.App.Writer, recs); err != nil {
			return err
		}
		printAgent(c.App.Writer, st)
		return nil
	},
}

// refresh reads a live call's memory figures from its cgroup; its state is
// the shim's, as recorded.
func refresh(r *toolcall.Record) {
	if r.State.Ended() {
		return
	}
	if m, err := tree.Measure(r.Cgroup); err == nil {
		r.MemoryPeakBytes, r.MemoryHighEvents, r.MemoryMaxEvents, r.OOMKills = m.Peak, m.High, m.Max, m.OOMKills
	}
}

func printJSON(w io.Writer, recs []toolcall.Record) error {
	if recs == nil {
		recs = []toolcall.Record{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(recs)
}

func printTable(w io.Writer, recs []toolcall.Record) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPID\tSTATE\tEXIT\tSTART\tDURATION\tMEM PEAK\tHIGH EVENTS\tTHROTTLED\tFROZEN\tCOMMAND")
	var reasons []string
	for _, r := range recs {
		exit, dur := "-", time.Since(r.Start)
		if r.ExitCode != nil {
			exit = strconv.FormatUint(uint64(*r.ExitCode), 10)
		}
		if r.End != nil {
			dur = r.End.Sub(r.Start)
		}
		cmd := command(r.Command)
		// The spells in progress count too.
		throttled, frozen := r.ThrottledSeconds, r.FrozenSeconds
		if r.ThrottledSince != nil {
			throttled += time.Since(*r.ThrottledSince).Seconds()
		}
		if r.FrozenSince != nil {
			frozen += time.Since(*r.FrozenSince).Seconds()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%.1fs\t%.1fs\t%s\n", r.ID, r.Pid, r.State, exit,
			r.Start.Local().Format(time.TimeOnly), dur.Round(time.Millisecond), bytesIEC(r.MemoryPeakBytes), r.MemoryHighEvents,
			throttled, frozen, cmd)
		switch {
		case r.Reason != "":
			reasons = append(reasons, r.ID+": "+r.Reason)
		case r.Waiting != "":
			reasons = append(reasons, r.ID+": "+r.Waiting)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reasons {
		fmt.Fprintln(w, r)
	}
	return nil
}

// printAgent says which processes are the agent's, never tool calls.
func printAgent(w io.Writer, st *state.Container) {
	if len(st.Init) > 0 {
		fmt.Fprintf(w, "agent: init: %s\n", command(st.Init))
	}
	for _, a := range st.Agent {
		fmt.Fprintf(w, "agent: pid %d: %s (%s)\n", a.Pid, command(a.Command), a.Why)
	}
}

// command joins argv for one table cell: an argument with a space or
// anything not printable is quoted, so that a command cannot forge rows or
// send escape sequences to the operator's terminal.
func command(argv []string) string {
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = a
		if a == "" || strings.IndexFunc(a, func(r rune) bool { return r == ' ' || r == '"' || !unicode.IsPrint(r) }) >= 0 || !utf8.ValidString(a) {
			args[i] = strconv.QuoteToGraphic(a)
		}
	}
	cmd := []rune(strings.Join(args, " "))
	if len(cmd) > 60 {
		return string(cmd[:57]) + "..."
	}
	return string(cmd)
}

func bytesIEC(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
