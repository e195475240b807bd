// Command agentcgroup is the operator CLI of agentcgroup.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/agentcgroup/agentcgroup/state"
)

func main() {
	app := &cli.App{
		Name:  "agentcgroup",
		Usage: "inspect AI agent containers run by containerd-shim-agentcgroup-v1",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state-dir", Value: state.DefaultRoot, Usage: "the shims' state folder"},
		},
		Commands: []*cli.Command{psCommand, replayCommand},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "agentcgroup:", err)
		os.Exit(1)
	}
}
