package ctl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/urfave/cli/v2"
)

// QuerySchema is the schema version of `query --json` output.
const QuerySchema = "tcpwrapd/query/v1"

// QueryResult is the --json output of query.
type QueryResult struct {
	Schema string `json:"schema"`
	// Via is "access-socket" (a real connection was passed to Socket) or
	// "admin-socket" (the client address cannot be made locally, so
	// tcpwrapd's admin socket checked it against the live rules).
	Via    string `json:"via"`
	Socket string `json:"socket"`
	Daemon string `json:"daemon"`
	Client string `json:"client"`
	Server string `json:"server"`
	// Verdict is "allowed", "refused", or "error" when the socket could
	// not be asked at all (Error says why; exit status 3).
	Verdict string `json:"verdict"`
	// Error explains a refusal that was not a plain "0\n" (invalid input,
	// timeout), or why there is no verdict.
	Error string `json:"error,omitempty"`
	// Note says why the admin socket was used.
	Note string `json:"note,omitempty"`
	// Decision is the admin socket's full decision, with its trace.
	Decision *hostsrules.Decision `json:"decision,omitempty"`
}

func queryCommand() *cli.Command {
	return &cli.Command{
		Name:      "query",
		Usage:     "ask a live access socket exactly as a Dovecot login process does",
		ArgsUsage: "DAEMON CLIENT",
		Description: `Opens a real TCP connection on loopback from CLIENT (an address this host
can bind: 127.0.0.0/8 or ::1) and passes its server-side socket over SCM_RIGHTS
to the access socket with "DAEMON\n", as imap-login does. Prints "allowed" only
for the exact reply "1\n". Works with tcpwrapd and with Dovecot's own tcpwrap.

A client address that cannot be made locally (any address this host cannot
bind, or a host name) can only be checked by tcpwrapd itself: with
--admin-socket, query asks tcpwrapd's admin socket to check it against the
live rules instead, says so, and shows the deciding rule. That check is a dry
run: options are not executed.

A socket that cannot be asked (missing, permission denied) is no refusal:
query prints "error: ..." as the result and exits 3.

Exit status: 0 allowed, 1 refused (also a timeout or an invalid reply, which
login processes treat as a refusal), 2 bad usage, 3 no verdict (the socket
or the admin socket could not be asked).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Usage: "access socket `PATH` (e.g. /run/dovecot/login/tcpwrapd/access)"},
			&cli.StringFlag{Name: "admin-socket", Usage: "tcpwrapd's admin socket `PATH`, asked when CLIENT cannot be made locally (e.g. " + accessd.DefaultAdminSocket + ")"},
			&cli.StringFlag{Name: "server", Usage: "local (server) `ADDR` of the connection (default 127.0.0.1 or ::1)"},
			&cli.DurationFlag{Name: "timeout", Value: accessclient.DefaultTimeout, Usage: "reply timeout"},
			&cli.BoolFlag{Name: "json", Usage: "print a machine-readable result (schema " + QuerySchema + ")"},
		},
		Action: runQuery,
	}
}

func runQuery(cCtx *cli.Context) error {
	if cCtx.NArg() != 2 {
		return usagef("query: need exactly two arguments, DAEMON and CLIENT (got %d)", cCtx.NArg())
	}
	daemon := cCtx.Args().Get(0)
	clientArg := cCtx.Args().Get(1)
	admin := cCtx.String("admin-socket")
	path := cCtx.String("socket")
	if path == "" && admin == "" {
		return usagef("query: need --socket PATH (and optionally --admin-socket PATH)")
	}
	client, err := netip.ParseAddr(clientArg)
	if err != nil && admin == "" {
		return usagef("query: CLIENT must be an IP address (host names need --admin-socket): %v", err)
	}
	var server netip.Addr
	if s := cCtx.String("server"); s != "" {
		if server, err = netip.ParseAddr(s); err != nil {
			return usagef("query: --server must be an IP address: %v", err)
		}
	}
	var (
		conn    *net.TCPConn
		done    = func() {}
		connErr error
	)
	if client.IsValid() {
		var cleanup func()
		conn, cleanup, connErr = accessclient.LocalConn(cCtx.Context, client, server)
		if cleanup != nil {
			done = cleanup
		}
	} else {
		connErr = fmt.Errorf("%s is not an address", clientArg)
	}
	defer done()
	if connErr != nil || path == "" {
		if admin == "" {
			// No connection from CLIENT can be made here: no verdict.
			res := QueryResult{Schema: QuerySchema, Via: "access-socket", Socket: path, Daemon: daemon, Client: clientArg,
				Verdict: "error", Error: connErr.Error() + " (give --admin-socket to check it against tcpwrapd's live rules)"}
			if cCtx.Bool("json") {
				writeJSON(cCtx.App.Writer, res)
			} else {
				fmt.Fprintf(cCtx.App.Writer, "%s %s from %s: error: %s\n", path, daemon, clientArg, res.Error)
			}
			return cli.Exit("", ExitNoVerdict)
		}
		return queryAdmin(cCtx, admin, daemon, clientArg, cCtx.String("server"), connErr)
	}
	v, qerr := accessclient.Ask(cCtx.Context, path, daemon, conn, cCtx.Duration("timeout"))
	res := QueryResult{Schema: QuerySchema, Via: "access-socket", Socket: path, Daemon: daemon, Client: client.String(),
		Server: conn.LocalAddr().String(), Verdict: v.String()}
	notAsked := errors.Is(qerr, accessclient.ErrNotAsked)
	if qerr != nil {
		res.Error = qerr.Error()
	}
	if notAsked {
		res.Verdict = "error"
	}
	w := cCtx.App.Writer
	switch {
	case cCtx.Bool("json"):
		writeJSON(w, res)
	case notAsked:
		fmt.Fprintf(w, "%s %s from %s: error: %s\n", res.Socket, daemon, res.Client, res.Error)
	default:
		fmt.Fprintf(w, "%s %s from %s: %s\n", res.Socket, daemon, res.Client, res.Verdict)
	}
	if notAsked {
		return cli.Exit("", ExitNoVerdict)
	}
	if qerr != nil {
		return cli.Exit(fmt.Sprintf("access(%s): %v", path, qerr), ExitFailure)
	}
	if v != accessclient.Allowed {
		return cli.Exit("", ExitFailure)
	}
	return nil
}

// queryAdmin checks daemon and client with tcpwrapd's admin socket, for a
// client that cannot be made locally (why says why; nil when no access
// socket was given).
func queryAdmin(cCtx *cli.Context, admin, daemon, client, server string, why error) error {
	rep, err := adminCall(cCtx.Context, admin, accessd.AdminRequest{Op: "check", Daemon: daemon, Client: client, Server: server})
	if err != nil {
		return cli.Exit(err.Error(), ExitNoVerdict)
	}
	note := "no access socket given"
	if why != nil {
		note = why.Error()
	}
	note += "; checked by tcpwrapd's admin socket against the live rules (a dry run: options not executed)"
	w := cCtx.App.Writer
	refused := false
	var results []QueryResult
	for _, r := range rep.Results {
		verdict := "refused"
		if r.Access == "granted" {
			verdict = "allowed"
		} else {
			refused = true
		}
		d := r.Decision
		results = append(results, QueryResult{Schema: QuerySchema, Via: "admin-socket", Socket: admin, Daemon: daemon,
			Client: r.Client, Server: r.Server, Verdict: verdict, Error: r.Error, Note: note, Decision: &d})
	}
	if cCtx.Bool("json") {
		for _, r := range results {
			writeJSON(w, r)
		}
	} else {
		fmt.Fprintf(w, "note: %s\n", note)
		for _, r := range results {
			fmt.Fprintf(w, "%s %s from %s: %s\n", r.Socket, daemon, r.Client, r.Verdict)
			d := r.Decision
			writeTrace(w, "  ", d.Trace)
			if d.File != "" && d.Line > 0 {
				fmt.Fprintf(w, "  decided:  %s line %d (%s)\n", d.File, d.Line, d.Reason)
			} else {
				fmt.Fprintf(w, "  decided:  %s\n", d.Reason)
			}
			if r.Error != "" {
				fmt.Fprintf(w, "  error:    %s\n", r.Error)
			}
		}
	}
	if refused {
		return cli.Exit("", ExitFailure)
	}
	return nil
}
