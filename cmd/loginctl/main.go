// Command loginctl is tcpwrapd's admin tool: `loginctl check-host` answers
// what tcpdmatch(8) answers. See package ctl.
package main

import (
	"os"

	"github.com/tcpwrapd/tcpwrapd/pkg/ctl"
	"github.com/tcpwrapd/tcpwrapd/pkg/version"
)

func main() {
	os.Exit(ctl.Run(os.Args, os.Stdout, os.Stderr, version.Version))
}
