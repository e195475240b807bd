package shim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Flags are the flags containerd passes to a shim binary, as pkg/shim defines
// them; parsed here on a private FlagSet, only to see the action.
type Flags struct {
	Namespace, ID, Address, Bundle string
	Debug                          bool
	Action                         string
}

// ParseFlags parses a shim command line (without the program name).
func ParseFlags(args []string) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&f.Debug, "debug", false, "")
	fs.StringVar(&f.Namespace, "namespace", "", "")
	fs.StringVar(&f.ID, "id", "", "")
	fs.StringVar(&f.Address, "address", "", "")
	fs.StringVar(&f.Bundle, "bundle", "", "")
	for _, b := range []string{"v", "version", "info"} {
		fs.Bool(b, false, "")
	}
	for _, s := range []string{"socket", "debug-socket", "publish-binary"} {
		fs.String(s, "", "")
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	f.Action = fs.Arg(0)
	return f, nil
}

// maxStdin bounds what the start action reads, as pkg/shim does.
const maxStdin = 10 << 20

// bootstrapParams reads the start action's stdin in either protocol:
//   - containerd 2.3+ sends protobuf BootstrapParams (options as an extension);
//   - containerd 1.6 to 2.2 send the runtime options Any, or nothing, and pass
//     the addresses as the -address flag and the TTRPC_ADDRESS variable.
func bootstrapParams(f Flags, stdin []byte, ttrpcAddress string) (*bootapi.BootstrapParams, error) {
	var p bootapi.BootstrapParams
	if len(stdin) > 0 && proto.Unmarshal(stdin, &p) == nil && p.InstanceID == f.ID && p.Namespace == f.Namespace {
		return &p, nil
	}
	p = bootapi.BootstrapParams{
		InstanceID:             f.ID,
		Namespace:              f.Namespace,
		ContainerdGrpcAddress:  f.Address,
		ContainerdTtrpcAddress: ttrpcAddress,
		LogLevel:               bootapi.LogLevel_LOG_LEVEL_INFO,
	}
	if f.Debug {
		p.LogLevel = bootapi.LogLevel_LOG_LEVEL_DEBUG
	}
	if len(stdin) > 0 {
		var opts anypb.Any
		if err := proto.Unmarshal(stdin, &opts); err != nil {
			return nil, fmt.Errorf("start: stdin is neither bootstrap parameters nor runtime options: %w", err)
		}
		if err := p.AddExtension(&opts); err != nil {
			return nil, err
		}
	}
	return &p, nil
}

// Start is the shim's start action for every containerd from 1.6 to 2.x: it
// accepts both start protocols, launches the server through the manager and
// answers with the plain socket address, the one answer that every daemon
// accepts (1.6 dials stdout as it is; 1.7+ falls back to it and speaks
// task v2, which this shim also serves). The address is also written to the
// bundle's address file, from which containerd 1.6 reconnects after a restart.
func Start(ctx context.Context, m shim.Shim, f Flags, stdin io.Reader, stdout io.Writer) error {
	if f.Namespace == "" {
		return fmt.Errorf("shim namespace cannot be empty")
	}
	in, err := io.ReadAll(io.LimitReader(stdin, maxStdin))
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	params, err := bootstrapParams(f, in, os.Getenv("TTRPC_ADDRESS"))
	if err != nil {
		return err
	}
	ctx = namespaces.WithNamespace(ctx, f.Namespace)
	res, err := m.Start(ctx, params)
	if err != nil {
		return err
	}
	if err := os.WriteFile(addressFile, []byte(res.GetAddress()), 0o600); err != nil {
		return fmt.Errorf("write address file: %w", err)
	}
	if err := writeDebugAddress(ctx, params, res.GetAddress()); err != nil {
		return err
	}
	_, err = io.WriteString(stdout, res.GetAddress())
	return err
}

const (
	addressFile      = "address"
	debugAddressFile = "debug-address"
)

// writeDebugAddress names, in the bundle, the debug socket that the runc
// manager opens when containerd logs at debug level, so that it is removed
// with the main one, also after a crash. Its address hashes the shim's
// grouping ID, known here only when the shim serves this container alone
// (its main address is then the one derived from the container ID).
func writeDebugAddress(ctx context.Context, params *bootapi.BootstrapParams, address string) error {
	if params.GetLogLevel() > bootapi.LogLevel_LOG_LEVEL_DEBUG { // the runc manager's condition
		return nil
	}
	dir := params.GetSocketDir()
	if dir == "" {
		dir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	grpc, id := params.GetContainerdGrpcAddress(), params.GetInstanceID()
	if main, err := shim.CreateSocketAddress(ctx, dir, grpc, id, false); err != nil || main != address {
		return err
	}
	debug, err := shim.CreateSocketAddress(ctx, dir, grpc, id, true)
	if err != nil {
		return err
	}
	return os.WriteFile(debugAddressFile, []byte(debug), 0o600)
}

// removeSockets removes the sockets named in a bundle's address files.
func removeSockets(bundle string) error {
	var errs []error
	for _, f := range []string{addressFile, debugAddressFile} {
		if address, err := shim.ReadAddress(filepath.Join(bundle, f)); err == nil {
			if err := shim.RemoveSocket(address); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
