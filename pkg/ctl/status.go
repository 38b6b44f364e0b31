package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
)

// StatusSchema is the schema version of `status --json` output.
const StatusSchema = "tcpwrapd/status/v1"

// StatusReport is the --json output of status.
type StatusReport struct {
	Schema string             `json:"schema"`
	Socket string             `json:"admin_socket"`
	Stats  accessd.AdminStats `json:"stats"`
}

func adminSocketFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "admin-socket", Value: accessd.DefaultAdminSocket,
		Usage: "tcpwrapd's admin socket `PATH` (tcpwrapd --admin-socket)"}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show what a running tcpwrapd has done: checks, verdicts, errors, latency, loaded rules",
		Description: `Asks tcpwrapd's admin socket for its statistics: checks served since start,
granted, refused and delegated counts, errors by kind (invalid requests, read
timeouts, clients gone before the reply, ...), the same per serving front end
(access, authpolicy, postfix), the median and 99th percentile
of recent check times, and the loaded rules: generation, when and why they were
loaded, each file with its modification time, and the diagnostics of the load.

The admin socket exists only when tcpwrapd runs with --admin-socket PATH; only
root and the socket's owner may use it.`,
		Flags: []cli.Flag{
			adminSocketFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print a machine-readable report (schema " + StatusSchema + ")"},
			&cli.BoolFlag{Name: "reload", Usage: "make tcpwrapd reload its rules first"},
		},
		Action: runStatus,
	}
}

func runStatus(cCtx *cli.Context) error {
	if cCtx.NArg() > 0 {
		return usagef("status: unexpected argument %q", cCtx.Args().First())
	}
	path := cCtx.String("admin-socket")
	op := "stats"
	if cCtx.Bool("reload") {
		op = "reload"
	}
	rep, err := adminCall(cCtx.Context, path, accessd.AdminRequest{Op: op})
	if err != nil {
		return cli.Exit(err.Error(), ExitFailure)
	}
	out := StatusReport{Schema: StatusSchema, Socket: path, Stats: *rep.Stats}
	w := cCtx.App.Writer
	if cCtx.Bool("json") {
		return writeJSON(w, out)
	}
	WriteStatusText(w, &out, time.Now())
	return nil
}

// WriteStatusText prints a status report for people; now is used for ages.
func WriteStatusText(w io.Writer, r *StatusReport, now time.Time) {
	st := r.Stats
	fmt.Fprintf(w, "tcpwrapd (admin socket %s)\n", r.Socket)
	if !st.Started.IsZero() {
		fmt.Fprintf(w, "  up:          %s, since %s\n", (time.Duration(st.UptimeSeconds * float64(time.Second))).Round(time.Second), st.Started.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "  checks:      %d (granted %d, refused %d, delegated %d)\n", st.Checks, st.Granted, st.Refused, st.Delegated)
	fmt.Fprintf(w, "  errors:      %s\n", errorList(st.Errors))
	names := make([]string, 0, len(st.FrontEnds))
	for name := range st.FrontEnds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := st.FrontEnds[name]
		fmt.Fprintf(w, "  front end:   %s: %d checks (granted %d, refused %d, delegated %d), errors: %s\n",
			name, f.Checks, f.Granted, f.Refused, f.Delegated, errorList(f.Errors))
	}
	if l := st.Latency; l.Samples > 0 {
		us := func(n int64) time.Duration { return time.Duration(n) * time.Microsecond }
		fmt.Fprintf(w, "  latency:     p50 %s, p99 %s, max %s (last %d checks)\n", us(l.P50us), us(l.P99us), us(l.MaxUs), l.Samples)
	} else {
		fmt.Fprintf(w, "  latency:     no checks yet\n")
	}
	ru := st.Rules
	fmt.Fprintf(w, "  rules:       generation %d, loaded %s (%s): %d in hosts.allow, %d in hosts.deny\n",
		ru.Generation, ru.LoadedAt.Format(time.RFC3339), ru.Reason, ru.AllowRules, ru.DenyRules)
	for _, f := range ru.Files {
		mtime := "-"
		if !f.ModTime.IsZero() {
			mtime = f.ModTime.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  file:        %s  %s  modified %s  %d bytes\n", f.Path, f.State, mtime, f.Size)
	}
	if len(ru.Diagnostics) == 0 {
		fmt.Fprintf(w, "  diagnostics: none\n")
		return
	}
	fmt.Fprintf(w, "  diagnostics: %d (run loginctl rules lint for details)\n", len(ru.Diagnostics))
	for _, d := range ru.Diagnostics {
		fmt.Fprintf(w, "    %s: %s\n", d.Severity, d.Error())
	}
}

// errorList formats error counts by kind: "none", or "kind N, ..."
// sorted by kind.
func errorList(errs map[string]uint64) string {
	if len(errs) == 0 {
		return "none"
	}
	kinds := make([]string, 0, len(errs))
	for k := range errs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, errs[k]))
	}
	return strings.Join(parts, ", ")
}

// adminCall sends one request to tcpwrapd's admin socket and returns the
// reply; a reply with ok=false is returned as an error.
func adminCall(ctx context.Context, path string, req accessd.AdminRequest) (*accessd.AdminReply, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 70*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		return nil, fmt.Errorf("admin socket %s: %v (is tcpwrapd running with --admin-socket %s?)", path, err, path)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	line, _ := json.Marshal(req)
	if _, err := c.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	if !sc.Scan() {
		err := sc.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("admin socket %s: no reply: %w", path, err)
	}
	var rep accessd.AdminReply
	if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("admin socket %s: bad reply: %w", path, err)
	}
	if !rep.OK {
		return nil, fmt.Errorf("admin socket %s: %s", path, rep.Error)
	}
	if (req.Op == "stats" || req.Op == "reload") && rep.Stats == nil {
		return nil, fmt.Errorf("admin socket %s: reply without stats", path)
	}
	return &rep, nil
}
