// Package wrapopts carries out the side effects of hosts_options(5)
// options for tcpwrapd and loginctl: it implements hostsrules.Effects.
//
// The rules engine (package hostsrules) parses and validates every option
// and decides allow and deny itself; what an option does beyond that
// depends on where the check runs, and lives here.
package wrapopts

import (
	"context"
	"os"
	"os/exec"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// ACLExec is a hostsrules.Effects that runs aclexec commands and no other
// option: the only option whose outcome changes a verdict (Debian
// hosts_options(5): a non-zero exit status makes the rule not match). The
// command runs as `/bin/sh -c CMD` with its standard input, output and
// error on Stdio (nil: /dev/null), and is waited for, as libwrap does.
// It is what `loginctl check-host` uses to give a live daemon's verdict.
type ACLExec struct {
	// Stdio, if set, becomes the command's stdin, stdout and stderr
	// (libwrap gives it the client socket).
	Stdio *os.File
	// Timeout bounds the command's run time; zero means 30 seconds. A
	// command that runs out of time counts as failed.
	Timeout time.Duration
}

// Apply runs opt when it is aclexec and reports whether the command exited
// with status 0. Every other option is accepted without effect.
func (a ACLExec) Apply(ctx context.Context, opt hostsrules.Option, _ *hostsrules.Expander) (bool, error) {
	if opt.Name != "aclexec" {
		return true, nil
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", opt.Expanded)
	if a.Stdio != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = a.Stdio, a.Stdio, a.Stdio
	}
	cmd.WaitDelay = time.Second
	return cmd.Run() == nil, nil
}
