// Package ctl implements loginctl, the admin tool of tcpwrapd: check-host
// (what tcpdmatch(8) does, and more) and the commands that talk to the live
// services. cmd/loginctl only wires it to the process.
//
// Output for people goes to the app's Writer, errors to its ErrWriter.
// Exit codes: 0 success (a check-host verdict, granted or denied), 1
// failure (unresolvable host, unreadable input), 2 bad usage.
package ctl

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// Exit codes of loginctl.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// usageError marks an error as bad usage (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// NewApp returns the loginctl command tree writing to stdout and stderr.
// version is printed by --version.
func NewApp(stdout, stderr io.Writer, version string) *cli.App {
	app := &cli.App{
		Name:                   "loginctl",
		Usage:                  "check and inspect tcpwrapd access rules and login services",
		Version:                version,
		Writer:                 stdout,
		ErrWriter:              stderr,
		HideHelpCommand:        false,
		UseShortOptionHandling: false,
		EnableBashCompletion:   true,
		Commands: []*cli.Command{
			checkHostCommand(),
			queryCommand(),
			rulesCommand(),
			statusCommand(),
			generateCommand(),
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	usageErrors(app.Commands)
	return app
}

// usageErrors makes every command report flag errors as usage errors (exit
// status 2, message on stderr) instead of printing its help to stdout.
func usageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
		usageErrors(c.Subcommands)
	}
}

// Run runs loginctl with args (args[0] is the program name) and returns
// the exit status. Errors are printed to stderr as "loginctl: MSG".
func Run(args []string, stdout, stderr io.Writer, version string) int {
	app := NewApp(stdout, stderr, version)
	err := app.Run(args)
	if err == nil {
		return ExitOK
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "loginctl: %v\n", msg)
	}
	var ue usageError
	if errors.As(err, &ue) || isFlagError(err) {
		fmt.Fprintln(stderr, "Run 'loginctl help' or 'loginctl COMMAND --help' for usage.")
		return ExitUsage
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return ExitFailure
}

// isFlagError recognises the flag package's parse errors, which urfave/cli
// returns without OnUsageError for subcommands.
func isFlagError(err error) bool {
	s := err.Error()
	for _, p := range []string{"flag provided but not defined", "flag needs an argument", "invalid value", "invalid boolean"} {
		if len(s) >= len(p) && containsFold(s, p) {
			return true
		}
	}
	return false
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
