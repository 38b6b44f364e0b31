package ctl

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/lint"
	"github.com/tcpwrapd/tcpwrapd/pkg/resolve"
)

// lintCodes is the code list shown by `rules lint --help`.
const lintCodes = `Codes (severity; see also the documentation of package lint):
  errors (the file does not do what it says):
    cannot-open missing-newline line-too-long missing-separator
    comment-continuation broken-continuation indented-comment bare-ipv6
    empty-list leading-except fail-keyword empty-host file-list-loop
    bad-netmask netmask-host-bits netmask-all-ones netmask-zero bad-ipv6
    incomplete-address bad-address bad-option continuation-at-end
    crlf-continuation
  warnings:
    not-a-file world-writable comment-in-rule trailing-except reserved-word
    daemon-name user-name dovecot-daemon-name unknown-netgroup
    missing-file-list file-list-word netmask-atoi netmask-noncontiguous
    nondecimal-address numeric-begins-with-dot name-ends-in-dot
    host-not-found host-alias unknown-percent banners-missing
    unreachable-rules shadowed-rule aclexec-decided bad-policy-status
    policy-tarpit-denied
  notes: file-missing no-reverse-name privilege-option policy-tarpit`

// rulesCommand returns `loginctl rules`, the group of commands about rule
// files.
func rulesCommand() *cli.Command {
	return &cli.Command{
		Name:  "rules",
		Usage: "check hosts.allow and hosts.deny files",
		Subcommands: []*cli.Command{
			lintCommand(),
		},
	}
}

func lintCommand() *cli.Command {
	return &cli.Command{
		Name:      "lint",
		Usage:     "find mistakes in hosts.allow and hosts.deny (what tcpdchk does, and more)",
		ArgsUsage: "[FILE...]",
		Description: `Checks the rule files like a compiler: every problem is printed as
FILE:LINE:COL: SEVERITY: MESSAGE [CODE], with a hint where there is one.

Without FILE arguments it checks /etc/hosts.allow and /etc/hosts.deny (or the
--allow-file and --deny-file given) together, in the order libwrap reads them,
so a rule in hosts.allow can make a hosts.deny rule unreachable. Each FILE is
checked on its own.

It reports what tcpdchk(8) reports (syntax, over-long lines, option errors,
netgroups, net/mask patterns, names that do not resolve) and what it never
did: patterns that can never match (10.1.2.3/8, /0, mask 255.255.255.255, bare
IPv6 addresses, "192.168" without its final dot), "#" comments that are really
rules, rules that an earlier rule always decides first, and daemon names that
no Dovecot login process sends (they send imap, pop3, submission and sieve).

Exit status: 0 when there are no errors (warnings and notes alone do not
count), 1 when there is at least one error, 2 on bad usage.

` + lintCodes,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "d", Usage: "check hosts.allow and hosts.deny in the current directory"},
			&cli.StringFlag{Name: "allow-file", Value: "/etc/hosts.allow", Usage: "hosts.allow `FILE`"},
			&cli.StringFlag{Name: "deny-file", Value: "/etc/hosts.deny", Usage: "hosts.deny `FILE`"},
			&cli.BoolFlag{Name: "json", Usage: "print a machine-readable report (schema " + lint.Schema + ")"},
			&cli.BoolFlag{Name: "no-resolve", Usage: "do not look host names up (no host-not-found or host-alias checks)"},
			&cli.BoolFlag{Name: "reverse", Usage: "also look up the name of every literal address, as tcpdchk does (slow on long lists)"},
			&cli.StringFlag{Name: "netgroup-file", Value: "/etc/netgroup", Usage: "netgroup(5) `FILE` that @group patterns are checked against"},
			&cli.DurationFlag{Name: "lookup-timeout", Value: 5 * time.Second, Usage: "give up on each DNS lookup after `DURATION`"},
		},
		Action: runLint,
	}
}

// lintResolver is the resolver of `rules lint`; tests replace it.
var lintResolver hostsrules.Resolver = resolve.New(resolve.Config{FileCheckInterval: -1})

func runLint(cCtx *cli.Context) error {
	var tables []lint.Table
	if cCtx.NArg() > 0 {
		if cCtx.Bool("d") || cCtx.IsSet("allow-file") || cCtx.IsSet("deny-file") {
			return usagef("rules lint: FILE arguments cannot be combined with -d, --allow-file or --deny-file")
		}
		for _, f := range cCtx.Args().Slice() {
			tables = append(tables, lint.Table{Path: f, Role: lint.GuessRole(f), Explicit: true, Separate: true})
		}
	} else {
		allow, deny := cCtx.String("allow-file"), cCtx.String("deny-file")
		if cCtx.Bool("d") {
			allow, deny = "hosts.allow", "hosts.deny"
		}
		tables = []lint.Table{
			{Path: allow, Role: lint.RoleAllow, Explicit: cCtx.IsSet("allow-file")},
			{Path: deny, Role: lint.RoleDeny, Explicit: cCtx.IsSet("deny-file")},
		}
	}
	opts := lint.Options{
		ReverseLookups: cCtx.Bool("reverse"),
		LookupTimeout:  cCtx.Duration("lookup-timeout"),
		Netgroups:      lint.NetgroupFile(cCtx.String("netgroup-file")),
	}
	if !cCtx.Bool("no-resolve") {
		opts.Resolver = lintResolver
	}
	ctx := cCtx.Context
	if ctx == nil {
		ctx = context.Background()
	}
	rep := lint.Lint(ctx, tables, opts)
	w := cCtx.App.Writer
	if cCtx.Bool("json") {
		if err := writeJSON(w, rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(w); err != nil {
		return err
	}
	if rep.Errors > 0 {
		return cli.Exit("", ExitFailure)
	}
	return nil
}
