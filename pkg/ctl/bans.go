package ctl

import (
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
)

// BansSchema is the schema version of `bans --json` output (and of its
// lift and explain subcommands).
const BansSchema = "tcpwrapd/bans/v1"

// BansReport is the --json output of bans, bans lift and bans explain:
// the field of the command's answer is set.
type BansReport struct {
	Schema string `json:"schema"`
	Socket string `json:"admin_socket"`
	// Bans answers bans: the bans in force, oldest first.
	Bans []bans.Ban `json:"bans,omitempty"`
	// Prefix and Lifted answer bans lift: the operand and the number of
	// bans lifted.
	Prefix string `json:"prefix,omitempty"`
	Lifted *int   `json:"lifted,omitempty"`
	// Explain answers bans explain.
	Explain *accessd.AdminBanExplain `json:"explain,omitempty"`
}

func bansFlags() []cli.Flag {
	return []cli.Flag{
		adminSocketFlag(),
		&cli.BoolFlag{Name: "json", Usage: "print a machine-readable report (schema " + BansSchema + ")"},
	}
}

func bansCommand() *cli.Command {
	return &cli.Command{
		Name:  "bans",
		Usage: "list, explain and lift tcpwrapd's failure-driven bans",
		Description: `Asks tcpwrapd's admin socket for the failure-driven bans (tcpwrapd --bans,
docs/authpolicy.md): the sources (an IPv4 address, an IPv6 /64) that failed
with more distinct passwords than the threshold within the window, and are
denied by the auth policy front end before the rules until the ban ends.

Without a subcommand, lists the bans in force: prefix, since, until and the
number of distinct failed passwords that caused the ban.`,
		Flags:  bansFlags(),
		Action: runBansList,
		Subcommands: []*cli.Command{
			{
				Name:      "lift",
				Usage:     "lift the ban of an address's source, or every ban overlapping a prefix",
				ArgsUsage: "ADDR|PREFIX",
				Description: `Lifts the bans overlapping ADDR (the ban of its source) or PREFIX
(0.0.0.0/0 lifts every IPv4 ban), forgets the failures counted for them, and
prints how many were lifted. Exit status 1 when none was.`,
				Flags:  bansFlags(),
				Action: runBansLift,
			},
			{
				Name:      "explain",
				Usage:     "show the ban covering an address, or its source's failures",
				ArgsUsage: "ADDR",
				Description: `Prints the ban of ADDR's source, or "not banned" with the number of
distinct failed passwords counted for the source within the window.`,
				Flags:  bansFlags(),
				Action: runBansExplain,
			},
		},
	}
}

// lineageFlag returns the value of the string flag name as set on the
// nearest command of cCtx's lineage that set it (bans' flags may be given
// before or after the subcommand), else its default.
func lineageFlag(cCtx *cli.Context, name string) string {
	for _, c := range cCtx.Lineage() {
		for _, n := range c.LocalFlagNames() {
			if n == name {
				return c.String(name)
			}
		}
	}
	return cCtx.String(name)
}

// lineageBool is lineageFlag for a bool flag: set anywhere in the lineage.
func lineageBool(cCtx *cli.Context, name string) bool {
	for _, c := range cCtx.Lineage() {
		if c.Bool(name) {
			return true
		}
	}
	return false
}

// bansCall asks the admin socket and returns the reply, or the error to
// return (exit 1).
func bansCall(cCtx *cli.Context, req accessd.AdminRequest) (*accessd.AdminReply, string, error) {
	path := lineageFlag(cCtx, "admin-socket")
	rep, err := adminCall(cCtx.Context, path, req)
	if err != nil {
		return nil, path, cli.Exit(err.Error(), ExitFailure)
	}
	return rep, path, nil
}

func runBansList(cCtx *cli.Context) error {
	if cCtx.NArg() > 0 {
		return usagef("bans: unknown subcommand %q (lift, explain)", cCtx.Args().First())
	}
	rep, path, err := bansCall(cCtx, accessd.AdminRequest{Op: "bans"})
	if err != nil {
		return err
	}
	if lineageBool(cCtx, "json") {
		return writeJSON(cCtx.App.Writer, BansReport{Schema: BansSchema, Socket: path, Bans: rep.Bans})
	}
	WriteBansText(cCtx.App.Writer, rep.Bans)
	return nil
}

// WriteBansText prints bans as a table: prefix, since, until, failures;
// or "no bans".
func WriteBansText(w io.Writer, list []bans.Ban) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no bans")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tSINCE\tUNTIL\tFAILURES")
	for _, b := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", b.Prefix, b.Since.UTC().Format(time.RFC3339), b.Until.UTC().Format(time.RFC3339), b.Count)
	}
	tw.Flush()
}

func runBansLift(cCtx *cli.Context) error {
	if cCtx.NArg() != 1 {
		return usagef("bans lift: need exactly one argument, ADDR or PREFIX (got %d)", cCtx.NArg())
	}
	arg := cCtx.Args().First()
	if _, err := accessd.ParseBanPrefix(arg); err != nil {
		return usagef("bans lift: %v", err)
	}
	rep, path, err := bansCall(cCtx, accessd.AdminRequest{Op: "ban-lift", Prefix: arg})
	if err != nil {
		return err
	}
	w := cCtx.App.Writer
	if lineageBool(cCtx, "json") {
		n := rep.Lifted
		writeJSON(w, BansReport{Schema: BansSchema, Socket: path, Prefix: arg, Lifted: &n})
	} else if rep.Lifted == 1 {
		fmt.Fprintf(w, "lifted 1 ban overlapping %s\n", arg)
	} else {
		fmt.Fprintf(w, "lifted %d bans overlapping %s\n", rep.Lifted, arg)
	}
	if rep.Lifted == 0 {
		return cli.Exit("", ExitFailure)
	}
	return nil
}

func runBansExplain(cCtx *cli.Context) error {
	if cCtx.NArg() != 1 {
		return usagef("bans explain: need exactly one argument, ADDR (got %d)", cCtx.NArg())
	}
	addr, err := netip.ParseAddr(cCtx.Args().First())
	if err != nil {
		return usagef("bans explain: ADDR must be an IP address: %v", err)
	}
	rep, path, err := bansCall(cCtx, accessd.AdminRequest{Op: "ban-explain", Client: addr.String()})
	if err != nil {
		return err
	}
	if lineageBool(cCtx, "json") {
		return writeJSON(cCtx.App.Writer, BansReport{Schema: BansSchema, Socket: path, Explain: rep.BanExplain})
	}
	WriteBanExplainText(cCtx.App.Writer, rep.BanExplain)
	return nil
}

// WriteBanExplainText prints the answer of bans explain: the ban of the
// address's source, or "not banned" and the source's failures.
func WriteBanExplainText(w io.Writer, ex *accessd.AdminBanExplain) {
	if ex.Ban != nil {
		fmt.Fprintf(w, "%s: banned: %s\n", ex.Client, ex.Ban)
		return
	}
	window := time.Duration(ex.WindowSeconds * float64(time.Second))
	fmt.Fprintf(w, "%s: not banned: source %s has %d distinct failed passwords within %s (more than %d bans)\n",
		ex.Client, ex.Source, ex.Failures, window, ex.Threshold)
}
