package ctl

import (
	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/pkg/clidoc"
)

// generateCommand is the hidden `loginctl generate man|bash|zsh|fish|docs`
// used by packaging: `loginctl generate docs DIR` writes
// DIR/man/man8/loginctl.8 and the bash, zsh and fish completion scripts.
// tcpwrapd and loginsvc have the same hidden command.
func generateCommand() *cli.Command { return clidoc.Command(8) }
