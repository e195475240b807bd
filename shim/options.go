package shim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

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
	defaults := make(map[string]string)
	flatten("", c.Policy, defaults)
	var allowed []string
	if c.AllowedAnnotations != nil {
		allowed = *c.AllowedAnnotations
		if allowed == nil {
			allowed = []string{}
		}
	}
	return policy.Resolve(defaults, allowed, annotations)
}

// flatten turns nested TOML tables into dotted keys; values keep their TOML
// text form, so that tool.pids.max = 512 and = "512" mean the same.
func flatten(prefix string, m map[string]any, out map[string]string) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flatten(prefix+k+".", sub, out)
			continue
		}
		out[prefix+k] = fmt.Sprint(v)
	}
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
	if _, err := c.policy(nil); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	return &c, nil
}

func loadConfig(path string, mustExist bool) (*Config, error) {
	body, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
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
