package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/lint"
	"github.com/tcpwrapd/tcpwrapd/pkg/resolve"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
	"github.com/urfave/cli/v2"
)

// CheckHostSchema is the schema version of `check-host --json` output.
const CheckHostSchema = "tcpwrapd/check-host/v1"

// CheckHostReport is the --json output of check-host: one Result per
// client address, in the order tcpdmatch prints its blocks.
type CheckHostReport struct {
	Schema  string            `json:"schema"`
	Daemon  string            `json:"daemon_arg"`
	Client  string            `json:"client_arg"`
	Allow   string            `json:"allow_file"`
	Deny    string            `json:"deny_file"`
	Results []CheckHostResult `json:"results"`
	// Notes are what `rules lint` says about DAEMON (a name Dovecot
	// never sends, a misspelling); the text report prints them on
	// standard error as "loginctl: note: ...".
	Notes []string `json:"notes,omitempty"`
}

// CheckHostResult is one evaluated client address. Empty strings mean
// "unknown" (tcpdmatch omits those lines).
type CheckHostResult struct {
	ClientHostname string `json:"client_hostname,omitempty"`
	ClientAddress  string `json:"client_address,omitempty"`
	ClientUsername string `json:"client_username,omitempty"`
	ServerHostname string `json:"server_hostname,omitempty"`
	ServerAddress  string `json:"server_address,omitempty"`
	Process        string `json:"process"`
	// Access is "granted", "denied" or "delegated" (a twist option ran),
	// or empty when the evaluation was aborted (Error says why).
	Access   string              `json:"access,omitempty"`
	Decision hostsrules.Decision `json:"decision"`
	Error    string              `json:"error,omitempty"`
}

func checkHostCommand() *cli.Command {
	return &cli.Command{
		Name:      "check-host",
		Usage:     "show what the access rules decide for a daemon and client (like tcpdmatch)",
		ArgsUsage: "DAEMON[@SERVER] [USER@]CLIENT",
		Description: `Evaluates /etc/hosts.allow and /etc/hosts.deny exactly as Debian's libwrap
does for a live daemon and prints tcpdmatch's report: the client and server
lines, the deciding rule ("matched:") and its options ("option:"), and the
"access:" verdict (granted, denied, or delegated when a twist option ran).

DAEMON is the name Dovecot's login processes send: imap, pop3, submission,
sieve. CLIENT is an address, a host name (one report per address), or
"unknown"/"paranoid". aclexec commands are run (with /dev/null as stdio)
because their exit status decides; spawn, twist and banners are not run.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "d", Usage: "use hosts.allow and hosts.deny in the current directory"},
			&cli.StringFlag{Name: "i", Usage: "inetd.conf `FILE` (checked for readability, as tcpdmatch does)"},
			&cli.StringFlag{Name: "allow-file", Value: "/etc/hosts.allow", Usage: "hosts.allow `FILE`"},
			&cli.StringFlag{Name: "deny-file", Value: "/etc/hosts.deny", Usage: "hosts.deny `FILE`"},
			&cli.BoolFlag{Name: "json", Usage: "print a machine-readable report (schema " + CheckHostSchema + ")"},
			&cli.BoolFlag{Name: "explain", Usage: "list every rule considered and why it did or did not match"},
			&cli.BoolFlag{Name: "no-exec", Usage: "do not run aclexec commands (the rule then matches, as in tcpdmatch)"},
			&cli.BoolFlag{Name: "resolve", Usage: "for a CLIENT given as an address, look its name up as tcpwrapd does for a live connection (tcpdmatch treats the name as unknown)"},
		},
		Action: runCheckHost,
	}
}

func runCheckHost(cCtx *cli.Context) error {
	if cCtx.NArg() != 2 {
		return usagef("check-host: need exactly two arguments, DAEMON[@SERVER] and [USER@]CLIENT (got %d)", cCtx.NArg())
	}
	allow, deny := cCtx.String("allow-file"), cCtx.String("deny-file")
	if cCtx.Bool("d") {
		allow, deny = "hosts.allow", "hosts.deny"
	}
	if f := cCtx.String("i"); f != "" {
		fh, err := os.Open(f)
		if err != nil {
			return cli.Exit(fmt.Sprintf("open %s: %s", f, cErr(err)), ExitFailure)
		}
		fh.Close()
	}
	env := &hostsrules.Env{
		Resolver:  checkHostResolver(),
		Netgroups: hostsrules.NetgroupFile("/etc/netgroup"),
		Explain:   cCtx.Bool("explain"),
	}
	env.Effects = &checkHostEffects{run: !cCtx.Bool("no-exec"), out: cCtx.App.Writer, errOut: cCtx.App.ErrWriter}
	build := hostsrules.SimulatedRequests
	if cCtx.Bool("resolve") {
		build = hostsrules.LiveRequests
	}
	rep, err := checkHost(cCtx.Context, hostsrules.Load(allow, deny), env, build, cCtx.Args().Get(0), unbracket(cCtx.Args().Get(1)))
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	rep.Allow, rep.Deny = allow, deny
	daemon, _, _ := hostsrules.SplitAtFrom1(cCtx.Args().Get(0), '@')
	rep.Notes = lint.DaemonNotes(daemon)
	w := cCtx.App.Writer
	if cCtx.Bool("json") {
		if err := writeJSON(w, rep); err != nil {
			return err
		}
	} else {
		for _, n := range rep.Notes {
			fmt.Fprintf(cCtx.App.ErrWriter, "loginctl: note: %s\n", n)
		}
		WriteCheckHostText(w, rep, cCtx.Bool("explain"))
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			return cli.Exit(r.Error, ExitFailure)
		}
	}
	return nil
}

// unbracket turns a CLIENT written as in the rules, "[::1]" or
// "user@[2001:db8::1]", into the address tcpdmatch's argument is.
func unbracket(client string) string {
	user, host, hasUser := hostsrules.SplitAtFrom1(client, '@')
	if !hasUser {
		user, host = "", client
	}
	inner, ok := strings.CutSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(inner); !ok || len(inner) == len(host) || err != nil || !a.Is6() {
		return client
	}
	if hasUser {
		return user + "@" + inner
	}
	return inner
}

// checkHostResolver resolves names for check-host: /etc/hosts with glibc's
// files semantics and DNS answers as libwrap sees them (pkg/resolve).
// Tests replace it.
var checkHostResolver = func() hostsrules.Resolver { return resolve.New(resolve.Config{FileCheckInterval: -1}) }

// checkHostEffects is what check-host does with options: aclexec runs
// (its status decides the verdict), and banners are written to stdout
// before the report, as tcpdmatch does. Nothing else runs.
type checkHostEffects struct {
	run         bool
	out, errOut io.Writer
}

func (e *checkHostEffects) Apply(ctx context.Context, o hostsrules.Option, x *hostsrules.Expander) (bool, error) {
	switch o.Name {
	case "aclexec":
		if e.run {
			return wrapopts.ACLExec{}.Apply(ctx, o, x)
		}
	case "banners":
		b, err := wrapopts.Banner(o.Value, x)
		if err != nil {
			fmt.Fprintf(e.errOut, "loginctl: warning: %v\n", err)
		}
		e.out.Write(b)
	}
	return true, nil
}

func cErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		s := pe.Err.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// checkHost evaluates p for tcpdmatch-style operands, as build turns them
// into requests (hostsrules.SimulatedRequests), and returns the report. It
// fails only for operands that tcpdmatch rejects (an unresolvable host, a
// server with several addresses).
func checkHost(ctx context.Context, p *hostsrules.Policy, env *hostsrules.Env,
	build func(context.Context, hostsrules.Resolver, string, string) ([]hostsrules.Request, error),
	daemonArg, clientArg string) (*CheckHostReport, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	reqs, err := build(ctx, env.Resolver, daemonArg, clientArg)
	if err != nil {
		return nil, err
	}
	rep := &CheckHostReport{Schema: CheckHostSchema, Daemon: daemonArg, Client: clientArg}
	for i := range reqs {
		d, v := p.CheckExpand(ctx, &reqs[i], env, "%n", "%a", "%u", "%N", "%A", "%d")
		known := func(s string) string {
			if strings.EqualFold(s, hostsrules.Unknown) {
				return ""
			}
			return s
		}
		r := CheckHostResult{
			ClientHostname: known(v[0]), ClientAddress: known(v[1]), ClientUsername: known(v[2]),
			ServerHostname: known(v[3]), ServerAddress: known(v[4]), Process: v[5],
			Decision: d,
		}
		switch {
		case errors.Is(d.Err, hostsrules.ErrExpansionTooLong):
			r.Error = "percent_x: expansion too long: no verdict (libwrap would drop the connection)"
		case d.Delegated:
			r.Access = "delegated"
		default:
			r.Access = d.Verdict.String()
		}
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}

// WriteCheckHostText prints rep in tcpdmatch's format: for each address
// the "client:"/"server:" lines (omitting unknown values), upstream
// tcpdmatch's "matched:" and "option:" lines, then "access:"; blocks are
// separated by a blank line. With explain, each rule considered is listed
// before the verdict.
func WriteCheckHostText(w io.Writer, rep *CheckHostReport, explain bool) {
	for i, r := range rep.Results {
		if i > 0 {
			fmt.Fprintln(w)
		}
		line := func(label, v string) {
			if v != "" {
				fmt.Fprintf(w, "%s %s\n", label, v)
			}
		}
		line("client:   hostname", r.ClientHostname)
		line("client:   address ", r.ClientAddress)
		line("client:   username", r.ClientUsername)
		line("server:   hostname", r.ServerHostname)
		line("server:   address ", r.ServerAddress)
		if !strings.EqualFold(r.Process, hostsrules.Unknown) {
			fmt.Fprintf(w, "server:   process  %s\n", r.Process)
		}
		if explain {
			writeTrace(w, "", r.Decision.Trace)
		}
		d := r.Decision
		if d.File != "" && d.Line > 0 && d.Reason != "table error" {
			fmt.Fprintf(w, "matched:  %s line %d\n", d.File, d.Line)
		}
		for _, o := range d.Options {
			fmt.Fprintf(w, "option:   %s\n", o.String())
		}
		if d.Err != nil && !errors.Is(d.Err, hostsrules.ErrExpansionTooLong) {
			fmt.Fprintf(w, "error:    %v\n", d.Err)
		}
		if explain {
			fmt.Fprintf(w, "reason:   %s\n", d.Reason)
		}
		if r.Access != "" {
			fmt.Fprintf(w, "access:   %s\n", r.Access)
		}
	}
}

// writeTrace prints an explanation trace, one "rule:" line per step.
func writeTrace(w io.Writer, indent string, trace []hostsrules.Step) {
	for _, s := range trace {
		verdict := "no match"
		switch {
		case s.Index:
			verdict = "index"
		case s.Matched:
			verdict = "MATCH"
		}
		fmt.Fprintf(w, "%srule:     %s line %d: %s: %s (%s)\n", indent, s.File, s.Line, s.Rule, verdict, s.Why)
	}
}
