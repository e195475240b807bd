package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Unlimited is the resolved value of a limit that is "max".
const Unlimited int64 = -1

// Limit is a memory limit as written by the user: bytes, "max", or a share of
// the container's own memory.max. It is resolved once that limit is known.
type Limit struct {
	Bytes   int64   // > 0 when set in bytes
	Percent float64 // in (0, 100] when set as a percentage
}

// Max is the "max" limit: no limit of its own.
var Max = Limit{}

// IsMax reports whether the limit is "max".
func (l Limit) IsMax() bool { return l.Bytes == 0 && l.Percent == 0 }

// Resolve turns the limit into bytes. containerMax is the container cgroup's
// memory.max, Unlimited when it has none; a percentage of no limit is no limit.
func (l Limit) Resolve(containerMax int64) int64 {
	switch {
	case l.Bytes > 0:
		return l.Bytes
	case l.Percent > 0 && containerMax != Unlimited:
		return int64(float64(containerMax) * l.Percent / 100)
	default:
		return Unlimited
	}
}

func (l Limit) String() string {
	switch {
	case l.Bytes > 0:
		return strconv.FormatInt(l.Bytes, 10)
	case l.Percent > 0:
		return strconv.FormatFloat(l.Percent, 'f', -1, 64) + "%"
	default:
		return "max"
	}
}

// limitSyntax is what ParseLimit accepts, for error messages.
const limitSyntax = `bytes (1073741824), a size with K, M, G, T, Ki, Mi, Gi or Ti (512Mi, 2G), "max", or a percentage of the container's memory limit (80%)`

var units = []struct {
	suffix string
	mult   int64
}{ // longest suffixes first
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// ParseLimit parses a memory limit. Units follow Kubernetes quantities: K, M, G
// are powers of ten, Ki, Mi, Gi powers of two.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return Max, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v <= 0 || v > 100 || math.IsNaN(v) {
			return Limit{}, fmt.Errorf("percentage must be in (0, 100]")
		}
		return Limit{Percent: v}, nil
	}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return Limit{}, fmt.Errorf("not a size")
	}
	b := v * float64(mult)
	if b < 1 || b > math.MaxInt64/2 {
		return Limit{}, fmt.Errorf("size out of range")
	}
	return Limit{Bytes: int64(b)}, nil
}
