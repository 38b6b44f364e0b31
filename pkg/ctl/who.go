package ctl

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// whoTimeFormat is how loginctl who prints SINCE (local time).
const whoTimeFormat = "2006-01-02 15:04:05"

// whoCommand is `loginctl who`: the clients logged in through loginsvc,
// as `doveadm who -1` lists Dovecot's.
func whoCommand() *cli.Command {
	return &cli.Command{
		Name:      "who",
		Usage:     "list the clients logged in through loginsvc (user, protocol, rip, since, TLS, login process pid)",
		ArgsUsage: "[USER-MASK] [IP[/BITS]]",
		Description: `Asks loginsvc's control socket (root only); one line per session, as doveadm
who -1 prints. Listed are the clients loginsvc still holds: those its login
processes relay (TLS, implicit or STARTTLS: STATE proxying) for the whole
session. A plaintext client leaves loginsvc at the hand-off (its socket goes
to Dovecot's mail process, and loginsvc cannot see when it logs out): --recent
adds the last 256 of those per service (STATE handed-off), which may have
ended since; doveadm who lists them while they last.

USER-MASK matches the user (* and ? wildcards), IP[/BITS] the remote address.
--json prints control.Who (schema "version": 1).`,
		Flags: append(loginSocketFlags(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "recent", Aliases: []string{"r"}, Usage: "add the recent hand-offs of plaintext clients"}),
		Action: func(c *cli.Context) error {
			match, err := whoFilter(c.Args().Slice())
			if err != nil {
				return err
			}
			path, err := loginControlSocket(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
			defer cancel()
			w, err := control.QueryWho(ctx, path, c.Bool("recent"))
			if err != nil {
				return loginSocketError(path, err)
			}
			kept := w.Sessions[:0]
			for _, s := range w.Sessions {
				if match(s) {
					kept = append(kept, s)
				}
			}
			w.Sessions = kept
			if c.Bool("json") {
				return writeJSON(c.App.Writer, w)
			}
			return printWho(c.App.Writer, w)
		},
	}
}

// whoFilter is the filter of loginctl who's arguments: a user mask
// (wildcards * and ?) and an address or network, in any order, as
// doveadm who takes them.
func whoFilter(args []string) (func(control.Session) bool, error) {
	var mask string
	var net netip.Prefix
	for _, a := range args {
		if p, err := netip.ParsePrefix(a); err == nil {
			net = p.Masked()
			continue
		}
		if ip, err := netip.ParseAddr(a); err == nil {
			net = netip.PrefixFrom(ip, ip.BitLen())
			continue
		}
		if mask != "" {
			return nil, usagef("give one user mask and one IP[/BITS] at most (got %q and %q)", mask, a)
		}
		mask = a
	}
	return func(s control.Session) bool {
		if mask != "" && !wildcardMatch(mask, s.User) {
			return false
		}
		return !net.IsValid() || net.Contains(s.RemoteIP.Unmap())
	}, nil
}

// printWho prints w as a table.
func printWho(out io.Writer, w *control.Who) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tPROTO\tRIP\tSINCE\tTLS\tPID\tMAIL-PID\tMECH\tSTATE")
	for _, s := range w.Sessions {
		rip, mpid, tls := "?", "?", "no"
		if s.RemoteIP.IsValid() {
			rip = s.RemoteIP.String()
		}
		if s.MailPID != 0 {
			mpid = fmt.Sprint(s.MailPID)
		}
		if s.TLS {
			tls = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.User, s.Protocol, rip,
			s.Since.Local().Format(whoTimeFormat), tls, s.PID, mpid, s.Mech, s.State)
	}
	return tw.Flush()
}

// wildcardMatch reports whether s matches mask, where * matches any
// run of characters (none included) and ? any one character, as
// Dovecot's wildcard_match (doveadm who's user mask).
func wildcardMatch(mask, s string) bool {
	m, r := []rune(mask), []rune(s)
	i, j := 0, 0
	star, mark := -1, 0 // the last * seen, and where the run it matches ends
	for j < len(r) {
		switch {
		case i < len(m) && m[i] == '*':
			star, mark = i, j
			i++
		case i < len(m) && (m[i] == '?' || m[i] == r[j]):
			i++
			j++
		case star >= 0: // let the last * match one character more
			mark++
			i, j = star+1, mark
		default:
			return false
		}
	}
	for i < len(m) && m[i] == '*' {
		i++
	}
	return i == len(m)
}
