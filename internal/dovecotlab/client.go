package dovecotlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// Verdict is what a client saw of the access check.
type Verdict string

// The verdicts a probe can observe.
const (
	// Allowed: the server greeted, and the client logged out cleanly.
	Allowed Verdict = "allowed"
	// Refused: the server closed the connection without sending a byte
	// (what a login does after a deny).
	Refused Verdict = "refused"
)

// ProbeResult is the outcome of one [Probe].
type ProbeResult struct {
	// Verdict is Allowed or Refused.
	Verdict Verdict
	// Greeting is the first line the server sent, without CRLF ("" when
	// refused).
	Greeting string
	// Reset is true when a refusal came as a connection reset rather
	// than an orderly close.
	Reset bool
	// Elapsed is the time from connect to the verdict.
	Elapsed time.Duration
}

// DefaultProbeTimeout bounds a [Probe] when ctx has no deadline.
const DefaultProbeTimeout = 15 * time.Second

// Probe connects to addr (e.g. d.Addr("imap")) from the local address
// src (e.g. "127.0.0.2"; "" lets the kernel choose) and speaks just enough
// of proto ("imap" or "pop3") to tell whether the access check let it
// through:
//
//   - allowed: the server sends a greeting ("* OK" for imap, "+OK" for
//     pop3); the probe then logs out ("a LOGOUT" / "QUIT") and checks the
//     answer ("* BYE" + "a OK" / "+OK") and the close;
//   - refused: the server closes (or resets) the connection without
//     sending a single byte.
//
// Anything else is an error: a connection error, a timeout (ctx, or
// DefaultProbeTimeout without a deadline), a wrong greeting, bytes
// followed by a close without greeting, a bad logout answer.
func Probe(ctx context.Context, proto, src, addr string) (ProbeResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultProbeTimeout)
		defer cancel()
	}
	var greet, bye []string
	var logout string
	switch proto {
	case "imap":
		greet, logout, bye = []string{"* OK"}, "a LOGOUT\r\n", []string{"* BYE", "a OK"}
	case "pop3":
		greet, logout, bye = []string{"+OK"}, "QUIT\r\n", []string{"+OK"}
	default:
		return ProbeResult{}, fmt.Errorf("probe: unsupported protocol %q", proto)
	}
	dl := net.Dialer{}
	if src != "" {
		dl.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		if dl.LocalAddr.(*net.TCPAddr).IP == nil {
			return ProbeResult{}, fmt.Errorf("probe: bad source address %q", src)
		}
	}
	start := time.Now()
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("probe %s from %s: %w", proto, src, err)
	}
	defer c.Close()
	dead, _ := ctx.Deadline()
	_ = c.SetDeadline(dead)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()

	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	res := ProbeResult{Elapsed: time.Since(start)}
	if err != nil {
		switch {
		case line == "" && errors.Is(err, io.EOF):
			res.Verdict = Refused
			return res, nil
		case line == "" && errors.Is(err, syscall.ECONNRESET):
			res.Verdict, res.Reset = Refused, true
			return res, nil
		case line != "":
			return res, fmt.Errorf("probe %s from %s: got %q, then %w", proto, src, line, err)
		}
		return res, fmt.Errorf("probe %s from %s: waiting for greeting or close: %w", proto, src, err)
	}
	res.Greeting = strings.TrimRight(line, "\r\n")
	if !hasAnyPrefix(res.Greeting, greet) {
		return res, fmt.Errorf("probe %s from %s: unexpected greeting %q", proto, src, res.Greeting)
	}
	res.Verdict = Allowed
	if _, err := io.WriteString(c, logout); err != nil {
		return res, fmt.Errorf("probe %s from %s: send %q: %w", proto, src, strings.TrimSpace(logout), err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		return res, fmt.Errorf("probe %s from %s: after %q: got %q, then %w", proto, src, strings.TrimSpace(logout), rest, err)
	}
	for _, want := range bye {
		if !strings.Contains(string(rest), want) {
			return res, fmt.Errorf("probe %s from %s: logout answer %q lacks %q", proto, src, rest, want)
		}
	}
	return res, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
