package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authpolicy"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/lint"
	"github.com/tcpwrapd/tcpwrapd/pkg/postfix/smtpdpolicy"
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
	// As is the kind of captured request replayed (--as: AsDovecotPolicy
	// or AsPostfix), and Command its command (Dovecot's ?command=, or
	// Postfix's request type); empty for a tcpdmatch-style check. Daemon
	// and Client are then the request's.
	As      string `json:"as,omitempty"`
	Command string `json:"command,omitempty"`
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
	// Tarpit is the N of the auth policy tarpit extension (setenv
	// TCPWRAPD_POLICY_STATUS N, capped at 30; docs/authpolicy.md) when the
	// deciding rule grants with it, and TarpitError why such an option
	// is ignored.
	Tarpit      int    `json:"tarpit,omitempty"`
	TarpitError string `json:"tarpit_error,omitempty"`
	// HTTPStatus (dovecot-policy) and Reply are, for a replayed request
	// (--as), the exact reply tcpwrapd sends: the HTTP status and body,
	// or the Postfix reply block. An empty Reply for Postfix means no
	// reply (the connection is closed; Error says why).
	HTTPStatus int    `json:"http_status,omitempty"`
	Reply      string `json:"reply,omitempty"`
	// Ban is the failure-driven ban of the client's source found in the
	// --ban-state file: it decides before the rules (Decision has no
	// rule and the Reason "banned: ...").
	Ban *bans.Ban `json:"ban,omitempty"`
}

func checkHostCommand() *cli.Command {
	return &cli.Command{
		Name:      "check-host",
		Usage:     "show what the access rules decide for a daemon and client (like tcpdmatch), or for a captured policy request",
		ArgsUsage: "DAEMON[@SERVER] [USER@]CLIENT | --as dovecot-policy|postfix FILE|-",
		Description: `Evaluates /etc/hosts.allow and /etc/hosts.deny exactly as Debian's libwrap
does for a live daemon and prints tcpdmatch's report: the client and server
lines, the deciding rule ("matched:") and its options ("option:"), and the
"access:" verdict (granted, denied, or delegated when a twist option ran).

DAEMON is the name Dovecot's login processes send: imap, pop3, submission,
sieve. CLIENT is an address, a host name (one report per address), or
"unknown"/"paranoid". aclexec commands are run (with /dev/null as stdio)
because their exit status decides; spawn, twist and banners are not run.

A rule granting with the auth policy tarpit (setenv TCPWRAPD_POLICY_STATUS N)
gets a "tarpit:" line: what Dovecot's auth policy is answered.

With --as, the argument is a captured request (FILE, or - for standard input)
and it is decided through the code path of tcpwrapd's policy front end:
--as dovecot-policy reads a Dovecot auth policy request body (JSON; the URL's
?command= is --command), --as postfix a Postfix policy request block
(name=value lines; a missing final empty line is added). The report ends with
"reply:", the exact bytes tcpwrapd sends: the HTTP status and body, or the
Postfix reply block; a request tcpwrapd answers without a verdict is an error.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "d", Usage: "use hosts.allow and hosts.deny in the current directory"},
			&cli.StringFlag{Name: "i", Usage: "inetd.conf `FILE` (checked for readability, as tcpdmatch does)"},
			&cli.StringFlag{Name: "allow-file", Value: "/etc/hosts.allow", Usage: "hosts.allow `FILE`"},
			&cli.StringFlag{Name: "deny-file", Value: "/etc/hosts.deny", Usage: "hosts.deny `FILE`"},
			&cli.BoolFlag{Name: "json", Usage: "print a machine-readable report (schema " + CheckHostSchema + ")"},
			&cli.BoolFlag{Name: "explain", Usage: "list every rule considered and why it did or did not match"},
			&cli.BoolFlag{Name: "no-exec", Usage: "do not run aclexec commands (the rule then matches, as in tcpdmatch)"},
			&cli.BoolFlag{Name: "resolve", Usage: "for a CLIENT given as an address, look its name up as tcpwrapd does for a live connection (tcpdmatch treats the name as unknown)"},
			&cli.StringFlag{Name: "ban-state", Usage: "the state `FILE` of tcpwrapd's failure-driven bans (tcpwrapd --ban-state): a client whose source it bans is denied before the rules"},
			&cli.IntFlag{Name: "ban-ipv6-prefix", Value: bans.DefaultIPv6Prefix, Usage: "with --ban-state: tcpwrapd's --ban-ipv6-prefix `N`"},
			&cli.StringFlag{Name: "as", Usage: "replay a captured request `KIND`: " + AsDovecotPolicy + " (a Dovecot auth policy JSON body) or " + AsPostfix + " (a Postfix policy block)"},
			&cli.StringFlag{Name: "command", Value: "allow", Usage: "with --as " + AsDovecotPolicy + ": the request's ?command= `CMD`, allow or report"},
			&cli.StringFlag{Name: "daemon", Usage: "with --as " + AsPostfix + ": the daemon `NAME` of a request without policy_context (tcpwrapd --postfix-listen daemon=; default smtpd)"},
			&cli.StringFlag{Name: "reject", Usage: "with --as " + AsPostfix + ": the reject `CODE` (tcpwrapd --postfix-listen reject=, e.g. \"521 5.7.1\"; default REJECT)"},
		},
		Action: runCheckHost,
	}
}

func runCheckHost(cCtx *cli.Context) error {
	if cCtx.String("as") != "" {
		return runReplay(cCtx)
	}
	for _, f := range []string{"command", "daemon", "reject"} {
		if cCtx.IsSet(f) {
			return usagef("check-host: --%s needs --as", f)
		}
	}
	if cCtx.IsSet("ban-ipv6-prefix") && !cCtx.IsSet("ban-state") {
		return usagef("check-host: --ban-ipv6-prefix needs --ban-state")
	}
	banned, err := loadBanState(cCtx.String("ban-state"), cCtx.Int("ban-ipv6-prefix"))
	if err != nil {
		return err
	}
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
	applyBans(rep, banned)
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

// loadBanState reads tcpwrapd's bans state file (bans.Bans.Load) for
// check-host --ban-state; nil without a file. Bans are not shortened to a
// ban time (the file's own end times hold), and sources are grouped as
// tcpwrapd groups them with --ban-ipv6-prefix v6.
func loadBanState(file string, v6 int) (*bans.Bans, error) {
	if file == "" {
		return nil, nil
	}
	if _, err := os.Stat(file); err != nil {
		return nil, cli.Exit(fmt.Sprintf("--ban-state: %s", cErr(err)), ExitFailure)
	}
	// New loads the file but only logs its errors; Load again says them.
	b, err := bans.New(bans.Config{IPv6Prefix: v6, BanFor: 100 * 365 * 24 * time.Hour, StateFile: file})
	if err != nil {
		return nil, usagef("check-host: --ban-ipv6-prefix: %v", err)
	}
	if err := b.Load(); err != nil {
		return nil, cli.Exit(fmt.Sprintf("--ban-state: %v", err), ExitFailure)
	}
	return b, nil
}

// applyBans makes the ban of each result's client, if b holds one, its
// deciding reason, as the auth policy front end decides before the rules.
func applyBans(rep *CheckHostReport, b *bans.Bans) {
	for i := range rep.Results {
		r := &rep.Results[i]
		a, err := netip.ParseAddr(r.ClientAddress)
		if err != nil {
			continue
		}
		ban, ok := b.Banned(a)
		if !ok {
			continue
		}
		r.Ban = &ban
		r.Decision = hostsrules.Decision{Verdict: hostsrules.Denied, Reason: authpolicy.BannedReason + ": " + ban.String()}
		r.Access, r.Error, r.Tarpit, r.TarpitError = hostsrules.Denied.String(), "", 0, ""
	}
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
		var r CheckHostResult
		fillResult(&r, d, v)
		rep.Results = append(rep.Results, r)
	}
	return rep, nil
}

// fillResult sets r from a decision and its expansions of %n %a %u %N
// %A %d.
func fillResult(r *CheckHostResult, d hostsrules.Decision, v []string) {
	known := func(s string) string {
		if strings.EqualFold(s, hostsrules.Unknown) {
			return ""
		}
		return s
	}
	*r = CheckHostResult{
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
	if d.Verdict == hostsrules.Granted && d.Err == nil {
		n, err := authpolicy.Status(d)
		r.Tarpit = min(n, authpolicy.DefaultMaxStatus)
		if err != nil {
			r.TarpitError = err.Error()
		}
	}
}

// runReplay is check-host --as: a captured request replayed.
func runReplay(cCtx *cli.Context) error {
	if cCtx.NArg() != 1 {
		return usagef("check-host --as: need exactly one argument, FILE or - (got %d)", cCtx.NArg())
	}
	o := replayOptions{as: cCtx.String("as"), command: cCtx.String("command"), daemon: cCtx.String("daemon"), reject: cCtx.String("reject")}
	switch {
	case o.as != AsDovecotPolicy && o.as != AsPostfix:
		return usagef("check-host: --as %q: want %s or %s", o.as, AsDovecotPolicy, AsPostfix)
	case o.as == AsDovecotPolicy && (cCtx.IsSet("daemon") || cCtx.IsSet("reject")):
		return usagef("check-host: --daemon and --reject are for --as %s", AsPostfix)
	case o.as == AsPostfix && cCtx.IsSet("command"):
		return usagef("check-host: --command is for --as %s", AsDovecotPolicy)
	}
	if err := smtpdpolicy.CheckRejectCode(o.reject); err != nil {
		return usagef("check-host: --reject: %v", err)
	}
	allow, deny := cCtx.String("allow-file"), cCtx.String("deny-file")
	if cCtx.Bool("d") {
		allow, deny = "hosts.allow", "hosts.deny"
	}
	input, err := readReplayInput(cCtx.Args().First(), cCtx.App.Reader)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	env := &hostsrules.Env{
		Resolver:  checkHostResolver(),
		Netgroups: hostsrules.NetgroupFile("/etc/netgroup"),
		Explain:   cCtx.Bool("explain"),
		// aclexec decides; banners go nowhere (the reply carries the
		// banner's first line), as in the live front end.
		Effects: &checkHostEffects{run: !cCtx.Bool("no-exec"), out: io.Discard, errOut: cCtx.App.ErrWriter},
	}
	rep, err := replay(cCtx.Context, hostsrules.Load(allow, deny), env, o, input)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	rep.Allow, rep.Deny = allow, deny
	if cCtx.Bool("json") {
		if err := writeJSON(cCtx.App.Writer, rep); err != nil {
			return err
		}
	} else {
		WriteCheckHostText(cCtx.App.Writer, rep, cCtx.Bool("explain"))
	}
	if e := rep.Results[0].Error; e != "" {
		return cli.Exit(e, ExitFailure)
	}
	return nil
}

// WriteCheckHostText prints rep in tcpdmatch's format: for each address
// the "client:"/"server:" lines (omitting unknown values), upstream
// tcpdmatch's "matched:" and "option:" lines, then "access:"; blocks are
// separated by a blank line. With explain, each rule considered is listed
// before the verdict.
func WriteCheckHostText(w io.Writer, rep *CheckHostReport, explain bool) {
	if rep.As != "" {
		fmt.Fprintf(w, "request:  %s %s\n", rep.As, rep.Command)
	}
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
		if r.Process != "" && !strings.EqualFold(r.Process, hostsrules.Unknown) {
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
		if explain && r.Ban == nil { // a ban's reason is the banned: line
			fmt.Fprintf(w, "reason:   %s\n", d.Reason)
		}
		if r.Ban != nil {
			fmt.Fprintf(w, "banned:   %s\n", r.Ban)
		}
		if r.Access != "" {
			fmt.Fprintf(w, "access:   %s\n", r.Access)
		}
		switch {
		case r.TarpitError != "":
			fmt.Fprintf(w, "tarpit:   ignored: %s\n", r.TarpitError)
		case r.Tarpit > 0:
			fmt.Fprintf(w, "tarpit:   %d s (Dovecot's auth policy is answered {\"status\":%d})\n", r.Tarpit, r.Tarpit)
		}
		if rep.As != "" {
			writeReply(w, rep, r)
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
