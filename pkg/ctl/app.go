// Package ctl implements loginctl, the admin tool of tcpwrapd: check-host
// (what tcpdmatch(8) does, and more) and the commands that talk to the live
// services. cmd/loginctl only wires it to the process.
//
// Output for people goes to the app's Writer, errors to its ErrWriter.
// Exit codes: 0 success (a check-host verdict, granted or denied), 1
// failure (unresolvable host, unreadable input), 2 bad usage.
package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes of loginctl.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	// ExitNoVerdict: query could not ask the socket at all (it does not
	// exist, permission denied, the client connection could not be made),
	// so there is no verdict, allowed or refused.
	ExitNoVerdict = 3
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
		Name:    "loginctl",
		Usage:   "check and inspect tcpwrapd access rules and login services",
		Version: version,
		Description: `loginctl is the admin tool of tcpwrapd, the hosts.allow/hosts.deny service for
Dovecot's login processes. check-host answers what tcpdmatch(8) answers, and
explains it; rules lint checks the rule files like a compiler (what tcpdchk(8)
does, and more); query asks a live access socket exactly as imap-login does;
status shows what a running tcpwrapd has done.

Results go to stdout, errors to stderr. Exit status: 0 success (check-host
prints a verdict, granted or denied; lint found no errors; query was allowed),
1 failure (lint found errors, query was refused, a host or socket could not be
reached), 2 bad usage.

Files: /etc/hosts.allow, /etc/hosts.deny, /etc/netgroup, and tcpwrapd's admin
socket (tcpwrapd --admin-socket, usually /run/tcpwrapd/admin).
See also: tcpwrapd(8), hosts_access(5), hosts_options(5), tcpdmatch(8), tcpdchk(8).`,
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
			bansCommand(),
			procsCommand(),
			loginStatusCommand(),
			whoCommand(),
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
//
// The program calls itself by the name it was invoked as when that is
// "tcpwrapctl", the name packages install it under (systemd owns
// /usr/bin/loginctl), and "loginctl" otherwise.
func Run(args []string, stdout, stderr io.Writer, version string) int {
	app := NewApp(stdout, stderr, version)
	name := "loginctl"
	if len(args) > 0 && filepath.Base(args[0]) == "tcpwrapctl" {
		name = "tcpwrapctl"
		app.Name, app.HelpName = name, name
	}
	err := app.Run(args)
	if err == nil {
		return ExitOK
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(stderr, "%s: %v\n", name, msg)
	}
	var ue usageError
	if errors.As(err, &ue) || isFlagError(err) {
		fmt.Fprintf(stderr, "Run '%s help' or '%s COMMAND --help' for usage.\n", name, name)
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
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// writeJSON writes each value as indented JSON, one after another: the
// --json output of every command.
func writeJSON(w io.Writer, vs ...any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}
