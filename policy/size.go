package policy

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// MinLimitBytes is the smallest memory limit accepted, and the floor a
// percentage resolves to. Below 1 MiB a cgroup cannot hold an exec of even
// a static binary (page tables, kernel stack and the first touched pages are
// charged to it), so such a limit is always a mistake; and any count of MiB
// written without its unit (1536 for 1536Mi, up to 1 TiB) is below it as
// bytes, so a forgotten unit is refused instead of becoming a 1.5 KB limit.
const MinLimitBytes int64 = 1 << 20

// MaxLimitBytes is the largest memory limit in bytes (4 EiB): far above any
// machine, and with room to add limits in int64 without overflow. Larger
// means no limit, which is written "max".
const MaxLimitBytes int64 = math.MaxInt64 / 2

// Limit is a memory limit as written by the user: bytes, "max", or a share of
// the container's own memory.max. It is resolved once that limit is known.
type Limit struct {
	Bytes   int64   // in [MinLimitBytes, MaxLimitBytes] when set in bytes
	Percent float64 // in (0, 100], at most two decimals, when set as a percentage
}

// Max is the "max" limit: no limit of its own.
var Max = Limit{}

// IsMax reports whether the limit is "max".
func (l Limit) IsMax() bool { return l.Bytes == 0 && l.Percent == 0 }

// Resolve turns the limit into bytes. containerMax is the container cgroup's
// memory.max, cgroupfs.Unlimited when it has none; a percentage of no limit
// is no limit. A percentage resolves to at least MinLimitBytes, as a limit in
// bytes must be: a small share of a small container would otherwise kill
// every call at its first page, and C's own limit stays the outer bound
// either way. It never exceeds containerMax, so 100% of the largest
// memory.max does not overflow int64.
func (l Limit) Resolve(containerMax int64) int64 {
	switch {
	case l.Bytes > 0:
		return l.Bytes
	case l.Percent > 0 && containerMax >= 0:
		b := containerMax
		// float64(containerMax) may round up, to 2^63 at worst: only a share
		// below it converts back to int64 safely, and rounding must not
		// take it past containerMax.
		if v := float64(containerMax) * l.Percent / 100; v < float64(containerMax) {
			b = min(int64(v), containerMax)
		}
		return max(b, MinLimitBytes)
	default:
		return cgroupfs.Unlimited
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
const limitSyntax = `bytes (1073741824), a size with K, M, G, T, Ki, Mi, Gi or Ti (512Mi, 2G), at least 1Mi; "max"; ` +
	`or a percentage of the container's memory limit above 0 and at most 100, with at most 2 decimals (80%, 12.5%)`

var units = []struct {
	suffix string
	mult   int64
}{ // longest suffixes first
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// Digits allowed in the number of a limit. They bound what a value can mean
// (no 1e-300%, no 0.000000001% that resolves to nothing) and the parser's
// work; 19 integer digits hold any int64.
const (
	sizeIntDigits, sizeFracDigits       = 19, 9
	percentIntDigits, percentFracDigits = 3, 2
)

// ParseLimit parses a memory limit, exactly as written (no white space).
// Units follow Kubernetes quantities: K, M, G are powers of ten, Ki, Mi, Gi
// powers of two. Numbers are plain decimals: no sign, exponent, hex, NaN or
// Inf, so that what a value means can be read off it.
func ParseLimit(s string) (Limit, error) {
	if s == "max" {
		return Max, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		if !plainDecimal(p, percentIntDigits, percentFracDigits) {
			return Limit{}, errors.New("a percentage is a plain decimal with at most 2 decimals")
		}
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v <= 0 || v > 100 {
			return Limit{}, errors.New("a percentage must be above 0 and at most 100")
		}
		return Limit{Percent: v}, nil
	}
	num, mult := s, int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	if !plainDecimal(num, sizeIntDigits, sizeFracDigits) {
		if strings.EqualFold(s, "max") {
			return Limit{}, errors.New(`"max" is written in lower case`)
		}
		return Limit{}, errors.New("not a plain decimal number of bytes with an optional unit")
	}
	r, _ := new(big.Rat).SetString(num) // a plain decimal: exact
	r.Mul(r, new(big.Rat).SetInt64(mult))
	b := new(big.Int).Quo(r.Num(), r.Denom()) // whole bytes, rounded down
	switch {
	case b.Cmp(big.NewInt(MinLimitBytes)) < 0:
		if mult == 1 {
			return Limit{}, fmt.Errorf("below the minimum of 1Mi (%d bytes); a number without a unit is bytes: write %sMi or %sM", MinLimitBytes, num, num)
		}
		return Limit{}, fmt.Errorf("below the minimum of 1Mi (%d bytes), in which nothing can run", MinLimitBytes)
	case b.Cmp(big.NewInt(MaxLimitBytes)) > 0:
		return Limit{}, fmt.Errorf(`above the maximum of %d bytes; "max" is no limit`, MaxLimitBytes)
	}
	return Limit{Bytes: b.Int64()}, nil
}

// plainDecimal reports whether s is digits, optionally followed by a point
// and more digits, within the given counts.
func plainDecimal(s string, intDigits, fracDigits int) bool {
	i, f, dot := strings.Cut(s, ".")
	return isDigits(i, intDigits) && (!dot || isDigits(f, fracDigits))
}

// isDigits reports whether s is 1 to n ASCII digits.
func isDigits(s string, n int) bool {
	if len(s) == 0 || len(s) > n {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
