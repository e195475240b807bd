package shim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/agentcgroup/agentcgroup/policy"
)

// DefaultConfigPath is read when the runtime options name no config.
const DefaultConfigPath = "/etc/agentcgroup/config.toml"

// Config is the shim's TOML config: from the runtime options' ConfigBody
// (containerd 1.7+ CRI sends the runtime's whole options table there) or
// ConfigPath (CRI 1.6, Docker's daemon.json, `ctr --runtime-config-path`),
// else DefaultConfigPath. Its runc keys are those of containerd's runc
// runtime options, so a runtime table moves between the two unchanged.
type Config struct {
	BinaryName    string // runc (default), crun, or a path
	SystemdCgroup bool
	Root          string
	ShimCgroup    string
	NoPivotRoot   bool
	NoNewKeyring  bool
	IoUid         uint32
	IoGid         uint32
	CriuImagePath string
	CriuWorkPath  string

	// Policy holds the defaults of every policy annotation, keyed without
	// the io.agentcgroup. prefix (tool.memory.max = "90%"; dotted keys may
	// be written bare, as nested tables, or quoted).
	Policy map[string]any
	// AllowedAnnotations lists the policy annotations a container may set;
	// absent allows all, [] none.
	AllowedAnnotations *[]string
	// Pool is the cgroup (relative to the cgroup2 mount) whose containers
	// share memory pressure and whose memory.pressure is watched; empty
	// means each container's parent cgroup.
	Pool string

	// TypeUrl and ConfigPath may appear in a ConfigBody built from a CRI
	// options table; they are accepted and have no further meaning.
	TypeUrl    string
	ConfigPath string
}

func (c *Config) runcOptions() *options.Options {
	return &options.Options{
		BinaryName: c.BinaryName, SystemdCgroup: c.SystemdCgroup, Root: c.Root, ShimCgroup: c.ShimCgroup,
		NoPivotRoot: c.NoPivotRoot, NoNewKeyring: c.NoNewKeyring, IoUid: c.IoUid, IoGid: c.IoGid,
		CriuImagePath: c.CriuImagePath, CriuWorkPath: c.CriuWorkPath,
	}
}

// policy resolves a container's policy from the config and its annotations.
func (c *Config) policy(annotations map[string]string) (policy.Policy, error) {
	defaults, err := policyDefaults(c.Policy)
	if err != nil {
		return policy.Policy{}, err
	}
	var allowed []string
	if c.AllowedAnnotations != nil {
		allowed = *c.AllowedAnnotations
		if allowed == nil {
			allowed = []string{}
		}
	}
	return policy.Resolve(defaults, allowed, annotations)
}

// policyDefaults turns the config's Policy table into the strings an
// annotation would carry, keyed without the prefix; nested tables become
// dotted keys. A value must be a TOML string, as an annotation is, and
// tool.pids.max may also be an integer. A bare number for a memory key is
// refused rather than taken as bytes: tool.memory.max = 1536 would be a
// 1.5 KB limit, never what was meant.
func policyDefaults(table map[string]any) (map[string]string, error) {
	var flat []kv
	flatten("", table, &flat)
	slices.SortStableFunc(flat, func(a, b kv) int { return strings.Compare(a.key, b.key) })
	out := make(map[string]string, len(flat))
	for _, e := range flat {
		key := policy.Prefix + e.key
		bad := func(reason, allowed string) error {
			return &policy.InvalidError{Source: policy.SourceConfig, Key: key, Value: fmt.Sprint(e.value), Reason: reason, Allowed: allowed}
		}
		if _, dup := out[e.key]; dup {
			// tool.memory.max and "tool.memory.max" in one table: which
			// one won would depend on map order.
			return nil, bad("set twice, as a dotted key and as a quoted one", "one value per key")
		}
		allowed := policy.AllowedValues(key)
		switch v := e.value.(type) {
		case string:
			out[e.key] = v
			continue
		case int64:
			if key == policy.AnnotationToolPidsMax {
				out[e.key] = strconv.FormatInt(v, 10)
				continue
			}
		}
		switch {
		case allowed == "":
			// Unknown: policy.Resolve names it with the known keys.
			out[e.key] = fmt.Sprint(e.value)
		case policy.IsLimitKey(key) && isNumber(e.value):
			return nil, bad("a bare TOML number would be bytes",
				`a quoted string: a size with its unit ("1536Mi" or "1536M", at least "1Mi"), a percentage ("75%") or "max"`)
		case key == policy.AnnotationToolPidsMax:
			return nil, bad(fmt.Sprintf("a TOML %s", tomlType(e.value)), "an integer or a quoted string: "+allowed)
		default:
			return nil, bad(fmt.Sprintf("a TOML %s, not a string", tomlType(e.value)), "a quoted string: "+allowed)
		}
	}
	return out, nil
}

// kv is one flattened Policy entry.
type kv struct {
	key   string
	value any
}

// flatten turns nested TOML tables into dotted keys.
func flatten(prefix string, m map[string]any, out *[]kv) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flatten(prefix+k+".", sub, out)
			continue
		}
		*out = append(*out, kv{prefix + k, v})
	}
}

func isNumber(v any) bool {
	switch v.(type) {
	case int64, float64:
		return true
	}
	return false
}

// tomlType names a decoded TOML value's type as the TOML spec does.
func tomlType(v any) string {
	switch v.(type) {
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case time.Time, toml.LocalDate, toml.LocalTime, toml.LocalDateTime:
		return "date-time"
	}
	return fmt.Sprintf("%T", v)
}

// parseConfig decodes a TOML config strictly: an unknown key is an error
// naming it, so a typo is not silently ignored.
func parseConfig(src string, body []byte) (*Config, error) {
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(body)).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return nil, fmt.Errorf("config %s: unknown key(s):\n%s: %w", src, strict.String(), errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("config %s: %v: %w", src, err, errdefs.ErrInvalidArgument)
	}
	if c.AllowedAnnotations != nil {
		if err := policy.CheckAllowed(*c.AllowedAnnotations); err != nil {
			return nil, fmt.Errorf("config %s: %w", src, err)
		}
	}
	if err := checkPool(c.Pool); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	if _, err := c.policy(nil); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	return &c, nil
}

// checkPool validates the config's Pool. The shims of a pool find each other
// by comparing pool names as strings, and a container without a configured
// Pool names its parent as the kernel reports it, absolute and clean: another
// spelling of the same cgroup would split the pool. The name is also joined
// to the cgroup2 mount, so a ".." in it would leave the hierarchy.
func checkPool(p string) error {
	// path.Clean removes any ".." element, so a clean absolute path has none.
	if p == "" || (strings.HasPrefix(p, "/") && path.Clean(p) == p && strings.IndexFunc(p, unicode.IsControl) < 0) {
		return nil
	}
	return fmt.Errorf("Pool %q: allowed: an absolute, clean cgroup path under the cgroup2 mount, without \"..\" (/kubepods.slice): %w", p, errdefs.ErrInvalidArgument)
}

// maxConfigSize bounds what is read of a config file. ConfigPath comes with
// the runtime options; a path such as /dev/zero must fail, not fill the
// shim's memory, and a FIFO must not block it.
const maxConfigSize = 1 << 20

func loadConfig(path string, mustExist bool) (*Config, error) {
	// Opened without blocking (a FIFO would block an open for reading), then
	// checked: nothing can be swapped in between.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read config %s: not a regular file (%v): %w", path, fi.Mode().Type(), errdefs.ErrInvalidArgument)
	}
	body, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(body) > maxConfigSize {
		return nil, fmt.Errorf("read config %s: larger than %d bytes: %w", path, maxConfigSize, errdefs.ErrInvalidArgument)
	}
	return parseConfig(path, body)
}

// runtimeOptions turns the runtime options a client sent into runc options
// for the wrapped runc task service, and returns the config they came from:
//   - nil (ctr, nerdctl, `docker run --runtime`): the default config file;
//   - containerd.runc.v1.Options (the Go client): used as they are;
//   - runtimeoptions.v1.Options (CRI, Docker's daemon.json): ConfigBody or
//     the file at ConfigPath.
func runtimeOptions(opts *anypb.Any, defaultPath string) (*options.Options, *Config, error) {
	if opts == nil || (opts.GetTypeUrl() == "" && len(opts.GetValue()) == 0) {
		c, err := loadConfig(defaultPath, false)
		if err != nil {
			return nil, nil, err
		}
		return c.runcOptions(), c, nil
	}
	v, err := typeurl.UnmarshalAny(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("runtime options of type %q: %v: %w", opts.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	switch o := v.(type) {
	case *options.Options:
		c, err := loadConfig(defaultPath, false)
		if err != nil {
			return nil, nil, err
		}
		return o, c, nil
	case *runtimeoptions.Options:
		var c *Config
		switch {
		case len(bytes.TrimSpace(o.ConfigBody)) > 0:
			c, err = parseConfig("body", o.ConfigBody)
		case o.ConfigPath != "":
			c, err = loadConfig(o.ConfigPath, true)
		default:
			c, err = loadConfig(defaultPath, false)
		}
		if err != nil {
			return nil, nil, err
		}
		return c.runcOptions(), c, nil
	default:
		return nil, nil, fmt.Errorf("runtime options of type %q are not supported: want containerd.runc.v1.Options or runtimeoptions.v1.Options: %w",
			opts.GetTypeUrl(), errdefs.ErrInvalidArgument)
	}
}

// systemdCgroupsPath reports whether an OCI cgroupsPath is in the systemd
// driver's "slice:prefix:name" form. Docker and nerdctl write it without
// sending SystemdCgroup to a runtime other than io.containerd.runc.v2.
func systemdCgroupsPath(p string) bool {
	parts := strings.Split(p, ":")
	return len(parts) == 3 && (parts[0] == "" || strings.HasSuffix(parts[0], ".slice")) && parts[2] != ""
}
