package ctl

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessclient"
	"github.com/urfave/cli/v2"
)

// QuerySchema is the schema version of `query --json` output.
const QuerySchema = "tcpwrapd/query/v1"

// QueryResult is the --json output of query.
type QueryResult struct {
	Schema string `json:"schema"`
	Socket string `json:"socket"`
	Daemon string `json:"daemon"`
	Client string `json:"client"`
	Server string `json:"server"`
	// Verdict is "allowed" or "refused".
	Verdict string `json:"verdict"`
	// Error explains a refusal that was not a plain "0\n" (invalid input,
	// timeout, connect failure).
	Error string `json:"error,omitempty"`
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
Exit status: 0 allowed, 1 refused or failed, 2 bad usage.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Required: true, Usage: "access socket `PATH` (e.g. /run/dovecot/login/tcpwrapd/access)"},
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
	client, err := netip.ParseAddr(cCtx.Args().Get(1))
	if err != nil {
		return usagef("query: CLIENT must be an IP address: %v", err)
	}
	var server netip.Addr
	if s := cCtx.String("server"); s != "" {
		if server, err = netip.ParseAddr(s); err != nil {
			return usagef("query: --server must be an IP address: %v", err)
		}
	}
	conn, done, err := accessclient.LocalConn(cCtx.Context, client, server)
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	defer done()
	path := cCtx.String("socket")
	v, qerr := accessclient.Ask(cCtx.Context, path, daemon, conn, cCtx.Duration("timeout"))
	res := QueryResult{Schema: QuerySchema, Socket: path, Daemon: daemon, Client: client.String(),
		Server: conn.LocalAddr().String(), Verdict: v.String()}
	if qerr != nil {
		res.Error = qerr.Error()
	}
	w := cCtx.App.Writer
	if cCtx.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		fmt.Fprintf(w, "%s %s from %s: %s\n", res.Socket, daemon, res.Client, res.Verdict)
	}
	if qerr != nil {
		return cli.Exit(fmt.Sprintf("access(%s): %v", path, qerr), ExitFailure)
	}
	if v != accessclient.Allowed {
		return cli.Exit("", ExitFailure)
	}
	return nil
}
