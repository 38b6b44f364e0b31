package ctl

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authpolicy"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/postfix/smtpdpolicy"
)

// The kinds of captured request `check-host --as` replays.
const (
	AsDovecotPolicy = "dovecot-policy" // a Dovecot auth policy request body (JSON)
	AsPostfix       = "postfix"        // a Postfix SMTPD policy request block
)

// replayOptions are the check-host flags of a replay: the front end's
// settings as tcpwrapd's flags give them.
type replayOptions struct {
	as      string
	command string // dovecot-policy: allow or report
	daemon  string // postfix: --postfix-listen daemon=
	reject  string // postfix: --postfix-listen reject=
}

// maxReplayBytes bounds a replayed request; the front ends' own limits
// (64 KiB) apply on top.
const maxReplayBytes = 1 << 20

// readReplayInput reads FILE, or standard input for "-".
func readReplayInput(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("open %s: %s", name, cErr(err))
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxReplayBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %v", name, err)
	}
	if len(b) > maxReplayBytes {
		return nil, fmt.Errorf("%s: more than %d bytes", name, maxReplayBytes)
	}
	return b, nil
}

// replay decides a captured request with p through the live front end's
// code path and returns a report with one result. Its Reply is what
// tcpwrapd would send, its Error (with an empty Access) says why it would
// send no verdict.
func replay(ctx context.Context, p *hostsrules.Policy, env *hostsrules.Env, o replayOptions, input []byte) (*CheckHostReport, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	rep := &CheckHostReport{Schema: CheckHostSchema, As: o.as}
	res := CheckHostResult{}
	checked := false
	check := func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
		checked = true
		d, v := p.CheckExpand(ctx, req, env, "%n", "%a", "%u", "%N", "%A", "%d")
		fillResult(&res, d, v)
		return d
	}
	switch o.as {
	case AsDovecotPolicy:
		rep.Command = o.command
		s := &authpolicy.Server{Check: check}
		// The live handler itself (ServeHTTP), on a recorded response.
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/?command="+o.command, bytes.NewReader(input))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		res.HTTPStatus = w.Code
		res.Reply = w.Body.String()
		if w.Code != http.StatusOK {
			res.Access = ""
			res.Error = fmt.Sprintf("no verdict: tcpwrapd answers HTTP %d (Dovecot then lets the login proceed, or fails it with auth_policy_reject_on_fail = yes)", w.Code)
			req, err := authpolicy.ParseRequest(input)
			if err == nil {
				_, err = req.HostsRequest(false)
			}
			if err != nil {
				res.Error += ": " + err.Error()
			}
		} else if !checked {
			res.Access = "" // a report: nothing is decided
		}
	case AsPostfix:
		rep.Command = smtpdpolicy.RequestType
		s := &smtpdpolicy.Server{Check: check, Daemon: o.daemon, RejectCode: o.reject}
		if err := smtpdpolicy.CheckRejectCode(o.reject); err != nil {
			return nil, err
		}
		req, err := smtpdpolicy.ParseRequest(completeBlock(input), smtpdpolicy.Limits{})
		if err != nil {
			res.Error = "no reply: tcpwrapd closes the connection (Postfix applies smtpd_policy_service_default_action): " + err.Error()
			break
		}
		hreq, err := req.HostsRequest(o.daemon)
		if err != nil {
			res.Error = "no reply: tcpwrapd closes the connection (Postfix applies smtpd_policy_service_default_action): " + err.Error()
			break
		}
		cctx, cancel := context.WithTimeout(ctx, smtpdpolicy.DefaultTimeout)
		action, _, err := s.Decide(cctx, hreq)
		cancel()
		if err != nil {
			res.Access = ""
			res.Error = "no reply: tcpwrapd closes the connection (Postfix applies smtpd_policy_service_default_action): " + err.Error()
			break
		}
		res.Reply = string(smtpdpolicy.AppendReply(nil, action))
	default:
		return nil, fmt.Errorf("--as %q: want %s or %s", o.as, AsDovecotPolicy, AsPostfix)
	}
	rep.Daemon, rep.Client = res.Process, res.ClientAddress
	rep.Results = []CheckHostResult{res}
	return rep, nil
}

// completeBlock adds the empty line that ends a Postfix request block
// when a captured file lacks it (an editor's file ends with one newline).
func completeBlock(b []byte) []byte {
	switch {
	case len(b) == 0 || bytes.HasSuffix(b, []byte("\n\n")) || bytes.HasSuffix(b, []byte("\r\n\r\n")):
		return b
	case bytes.HasSuffix(b, []byte("\n")):
		return append(b, '\n')
	}
	return append(b, "\n\n"...)
}

// writeReply prints the reply line of a replayed result.
func writeReply(w io.Writer, rep *CheckHostReport, r CheckHostResult) {
	switch {
	case rep.As == AsDovecotPolicy && r.HTTPStatus != 0:
		body := "empty body"
		if r.Reply != "" {
			body = "body " + strings.TrimRight(r.Reply, "\n")
			if strings.HasSuffix(r.Reply, "\n") {
				body += ` (and "\n")`
			}
		}
		fmt.Fprintf(w, "reply:    HTTP %d, %s\n", r.HTTPStatus, body)
	case rep.As == AsPostfix && r.Reply != "":
		fmt.Fprintf(w, "reply:    %q\n", r.Reply)
	case rep.As == AsPostfix:
		fmt.Fprintf(w, "reply:    none (the connection is closed)\n")
	}
}
