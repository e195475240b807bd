package policy

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// limitSeeds are the values of the unit tests, good and bad.
var limitSeeds = []string{
	"max", "1073741824", "1048576", "1Mi", "512Mi", "2G", "1.5Gi", "2048K", "4194303Ti", "80%", "12.5%",
	"0.01%", "100.00%", "100%", "75%", "90%", "256Mi", "1536Mi", "1536M",
	"", "12X", "-1", "0", "0%", "101%", "abc%", "1e400", "Mi", "NaN", "512mb", "0.5", " 4Mi ", "MAX", "+5Mi",
	"0x100000", "1_048_576", ".5Gi", "5.Gi", "Inf", "NaN%", "Inf%", "-0%", "100.01%", "1", "1536", "1K",
	"1048575", "1e9", "1e-300%", "1E2%", "0.001%", "1000%", "4194304Ti", "99999999999999999G", "Max", "1Gi\x00",
}

// containerMaxes are memory.max values Resolve must handle: none, nothing,
// small, usual, the largest the kernel writes, and garbage.
var containerMaxes = []int64{cgroupfs.Unlimited, 0, 1, MinLimitBytes - 1, MinLimitBytes, 10 << 20, 1 << 30, 1<<53 + 1,
	math.MaxInt64 &^ 4095, math.MaxInt64, -2, math.MinInt64}

// checkLimit fails t unless l is one of the three forms ParseLimit returns.
func checkLimit(t *testing.T, what string, l Limit) {
	t.Helper()
	switch {
	case l.IsMax():
	case l.Percent == 0:
		if l.Bytes < MinLimitBytes || l.Bytes > MaxLimitBytes {
			t.Fatalf("%s: %d bytes outside [%d, %d]", what, l.Bytes, MinLimitBytes, MaxLimitBytes)
		}
	case l.Bytes == 0:
		if !(l.Percent > 0 && l.Percent <= 100) || !plainDecimal(strconv.FormatFloat(l.Percent, 'f', -1, 64), percentIntDigits, percentFracDigits) {
			t.Fatalf("%s: percentage %v outside (0, 100] or with more than 2 decimals", what, l.Percent)
		}
	default:
		t.Fatalf("%s: both bytes and a percentage: %+v", what, l)
	}
}

// checkResolve fails t unless l resolves within its bounds for containerMax.
func checkResolve(t *testing.T, l Limit, containerMax int64) {
	t.Helper()
	got := l.Resolve(containerMax)
	switch {
	case l.IsMax():
		if got != cgroupfs.Unlimited {
			t.Fatalf("max of %d resolved to %d", containerMax, got)
		}
	case l.Bytes > 0:
		if got != l.Bytes {
			t.Fatalf("%d bytes of %d resolved to %d", l.Bytes, containerMax, got)
		}
	case containerMax < 0:
		if got != cgroupfs.Unlimited {
			t.Fatalf("%v of no limit (%d) resolved to %d", l, containerMax, got)
		}
	default:
		if got < MinLimitBytes || got > max(containerMax, MinLimitBytes) {
			t.Fatalf("%v of %d resolved to %d, outside [%d, %d]", l, containerMax, got, MinLimitBytes, max(containerMax, MinLimitBytes))
		}
		// Within rounding of the share itself, where that is above the floor.
		want := float64(containerMax) * l.Percent / 100
		if want > float64(MinLimitBytes)+1 && math.Abs(float64(got)-want) > 1+want*1e-12 {
			t.Fatalf("%v of %d resolved to %d, want about %.0f", l, containerMax, got, want)
		}
	}
}

func FuzzParseLimit(f *testing.F) {
	for _, s := range limitSeeds {
		f.Add(s, int64(1<<30))
	}
	for _, m := range containerMaxes {
		f.Add("100%", m)
		f.Add("0.01%", m)
	}
	f.Fuzz(func(t *testing.T, s string, containerMax int64) {
		l, err := ParseLimit(s)
		if err != nil {
			if l != (Limit{}) || err.Error() == "" {
				t.Fatalf("ParseLimit(%q) = %+v, %v: an error with a value, or no text", s, l, err)
			}
			return
		}
		checkLimit(t, strconv.Quote(s), l)
		// What String writes reads back as the same limit.
		if back, err := ParseLimit(l.String()); err != nil || back != l {
			t.Fatalf("ParseLimit(%q) = %+v, written %q, read back as %+v, %v", s, l, l.String(), back, err)
		}
		checkResolve(t, l, containerMax)
		for _, m := range containerMaxes {
			checkResolve(t, l, m)
		}
	})
}

// checkPolicy fails t unless every field of p is within what Apply accepts.
func checkPolicy(t *testing.T, p Policy) {
	t.Helper()
	for name, l := range map[string]Limit{"ToolMemoryHigh": p.ToolMemoryHigh, "ToolMemoryMax": p.ToolMemoryMax,
		"AgentMemoryHigh": p.AgentMemoryHigh, "AgentMemoryMax": p.AgentMemoryMax, "AgentMemoryLow": p.AgentMemoryLow} {
		checkLimit(t, name, l)
	}
	if p.ToolPidsMax != 0 && (p.ToolPidsMax < minToolPids || p.ToolPidsMax > MaxToolPids) {
		t.Fatalf("ToolPidsMax %d", p.ToolPidsMax)
	}
	if p.StallTimeout < minStallTimeout || p.StallTimeout > maxStallTimeout {
		t.Fatalf("StallTimeout %v", p.StallTimeout)
	}
	if p.Priority != PriorityHigh && p.Priority != PriorityNormal && p.Priority != PriorityLow {
		t.Fatalf("Priority %q", p.Priority)
	}
	if p.Detect != DetectForkExec && p.Detect != DetectExec && p.Detect != DetectOff {
		t.Fatalf("Detect %q", p.Detect)
	}
}

// annotations writes p as the annotations that ask for it.
func annotations(p Policy) map[string]string {
	pids := "max"
	if p.ToolPidsMax > 0 {
		pids = strconv.FormatInt(p.ToolPidsMax, 10)
	}
	return map[string]string{
		AnnotationToolHigh: p.ToolMemoryHigh.String(), AnnotationToolMax: p.ToolMemoryMax.String(),
		AnnotationAgentHigh: p.AgentMemoryHigh.String(), AnnotationAgentMax: p.AgentMemoryMax.String(),
		AnnotationAgentLow: p.AgentMemoryLow.String(), AnnotationToolPidsMax: pids,
		AnnotationPriority: string(p.Priority), AnnotationStallTimeout: p.StallTimeout.String(),
		AnnotationDetect: string(p.Detect), AnnotationSessions: sessions(p.Sessions),
	}
}

func sessions(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// FuzzApply fuzzes the annotation parser: one annotation, as a container
// and as the config's Policy table would set it.
func FuzzApply(f *testing.F) {
	for _, s := range limitSeeds {
		f.Add(AnnotationToolMax, s)
	}
	for _, kv := range [][2]string{
		{AnnotationToolPidsMax, "64"}, {AnnotationToolPidsMax, "max"}, {AnnotationToolPidsMax, "3"}, {AnnotationToolPidsMax, "-1"},
		{AnnotationToolPidsMax, "4194304"}, {AnnotationToolPidsMax, "4194305"}, {AnnotationToolPidsMax, "+64"},
		{AnnotationToolPidsMax, "99999999999999999999"}, {AnnotationToolPidsMax, "1e3"},
		{AnnotationPriority, "low"}, {AnnotationPriority, "urgent"}, {AnnotationPriority, "LOW"}, {AnnotationPriority, " low"},
		{AnnotationDetect, "exec"}, {AnnotationDetect, "fork+exec"}, {AnnotationDetect, "off"}, {AnnotationDetect, "ebpf"},
		{AnnotationDetect, "exec\n"}, {AnnotationDetect, "Fork+Exec"},
		{AnnotationStallTimeout, "90s"}, {AnnotationStallTimeout, "5m"}, {AnnotationStallTimeout, "24h"}, {AnnotationStallTimeout, "5"},
		{AnnotationStallTimeout, "10ms"}, {AnnotationStallTimeout, "-5s"}, {AnnotationStallTimeout, "1e9h"}, {AnnotationStallTimeout, "5m\r\n"},
		{AnnotationAgentLow, "200Mi"}, {AnnotationAgentLow, "lots"}, {AnnotationAgentHigh, "150%"}, {AnnotationAgentMax, "512Mi"},
		{"io.agentcgroup.tool.memory.hihg", "1G"}, {"io.agentcgroup.x\ny", "1"}, {"org.example.other", "ignored"}, {"", ""},
		{AnnotationPriority, "\xfflow"},
		{AnnotationSessions, "bash,tmux"}, {AnnotationSessions, "none"}, {AnnotationSessions, "bash,,sh"}, {AnnotationSessions, "ba sh"},
	} {
		f.Add(kv[0], kv[1])
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		base := Default()
		p, err := Apply(base, SourceAnnotation, map[string]string{key: value})
		if !strings.HasPrefix(key, Prefix) {
			if err != nil || p != base {
				t.Fatalf("a key outside the prefix changed the policy: %+v, %v", p, err)
			}
			return
		}
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) || !errors.Is(err, errdefs.ErrInvalidArgument) || p != base {
				t.Fatalf("%q=%q: %v (%T), policy %+v: want an InvalidError and the base policy", key, value, err, err, p)
			}
			msg := err.Error()
			if !strings.Contains(msg, strconv.Quote(value)) || (!strings.Contains(msg, key) && !strings.Contains(msg, strconv.Quote(key))) ||
				!strings.Contains(msg, "allowed: ") {
				t.Fatalf("%q=%q: error %q does not name the key, the value and what is allowed", key, value, msg)
			}
			if strings.ContainsAny(msg, "\x00\n\r") {
				t.Fatalf("%q=%q: error %q carries a control character", key, value, msg)
			}
		} else {
			checkPolicy(t, p)
			// The policy written back as annotations asks for itself.
			if back, err := Apply(Default(), SourceAnnotation, annotations(p)); err != nil || back != p {
				t.Fatalf("%q=%q: %+v written as %v reads back as %+v, %v", key, value, p, annotations(p), back, err)
			}
		}

		// The config's Policy table takes the same values, named as config.
		cp, cerr := Resolve(map[string]string{strings.TrimPrefix(key, Prefix): value}, nil, nil)
		if (cerr == nil) != (err == nil) || (err == nil && cp != p) {
			t.Fatalf("%q=%q: as annotation %+v, %v; as config %+v, %v", key, value, p, err, cp, cerr)
		}
		if cerr != nil && !strings.Contains(cerr.Error(), SourceConfig) {
			t.Fatalf("%q=%q: config error %q does not say where", key, value, cerr)
		}
		// A config that honours no annotation refuses every known key.
		_, derr := Resolve(nil, []string{}, map[string]string{key: value})
		_, known := fields[key]
		var de *DeniedError
		if known != errors.As(derr, &de) {
			t.Fatalf("%q=%q with AllowedAnnotations = []: %v", key, value, derr)
		}
	})
}
