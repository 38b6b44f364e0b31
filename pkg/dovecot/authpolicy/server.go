package authpolicy

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
	"github.com/tcpwrapd/tcpwrapd/internal/lazyctx"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/policytext"
)

// CheckFunc decides one access question over the compiled rules, as the
// rules core of tcpwrapd does for every front end. It must be safe for
// concurrent use and should return when ctx ends.
type CheckFunc func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision

// Defaults for the zero values of Server's fields.
const (
	// DefaultTimeout matches Dovecot's own per-request limit
	// (auth_policy_server_timeout_msecs, 2.4's
	// http_client_request_absolute_timeout): 2 s.
	DefaultTimeout = 2 * time.Second
	// DefaultIdleTimeout keeps an idle keep-alive connection longer than
	// Dovecot's client does (10 s), so that Dovecot closes first.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxRequestBytes bounds a request body. Dovecot's default
	// body is about 250 bytes.
	DefaultMaxRequestBytes = 64 << 10
	// DefaultMaxHeaderBytes bounds the request line and headers.
	DefaultMaxHeaderBytes = 8 << 10
	// DefaultMaxConnections bounds concurrent connections (Dovecot opens
	// at most 100 per auth process by default).
	DefaultMaxConnections = 512
)

// Server answers Dovecot's auth policy requests over HTTP/1.1 from a
// CheckFunc. Set the fields before Serve or the first ServeHTTP; they must
// not change afterwards. A Server is safe for concurrent use.
type Server struct {
	// Check decides each allow request. Required.
	Check CheckFunc
	// Log receives one line per denial (Info), per grant and report
	// (Debug), and per refused request (Warn). Nil discards.
	Log *slog.Logger
	// APIHeader, when not empty, is the value of Dovecot's
	// auth_policy_server_api_header, and every request must carry it:
	// "Name: value" (the header Name with that value) or a bare value
	// (the header X-API-Key), as Dovecot sends it. A request without it
	// gets 401. The comparison takes constant time.
	APIHeader string
	// DenyMessage is the msg of a denial without a banner line. Empty
	// means DefaultDenyMessage.
	DenyMessage string
	// LoginAsUser makes the "login" attribute the client user of the
	// check, for user@host patterns (see Request.HostsRequest). Off by
	// default: the user is "unknown".
	LoginAsUser bool
	// MaxStatus caps the tarpit status a rule may ask for (StatusOption).
	// Zero means DefaultMaxStatus.
	MaxStatus int
	// Timeout bounds reading a request (headers and body), writing the
	// reply, and the check. Zero means DefaultTimeout.
	Timeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its
	// next request. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxRequestBytes bounds a request body; a bigger one gets 413 and
	// the connection is closed. Zero means DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// ReadTimeout, when shorter than Timeout, bounds reading a request's
	// line and headers instead, the first request's from the moment the
	// connection is accepted (tcpwrapd's --read-timeout). Zero means
	// Timeout.
	ReadTimeout time.Duration
	// MaxConnections bounds the connections served at once. At the
	// limit, a new connection is accepted after closing the one idle
	// longest: a keep-alive connection between requests, else one that
	// has sent nothing for NewSilentAfter; never one inside a request
	// (counted as ErrKindEvictedIdle). Zero means DefaultMaxConnections.
	MaxConnections int
	// Error, if set, counts each request answered without a verdict,
	// by kind (an ErrKind constant), and each connection closed to make
	// room (ErrKindEvictedIdle); tcpwrapd's admin socket shows them.
	// It must be safe for concurrent use.
	Error func(kind string)
	// OnReport, when set, receives every report request with a "success"
	// attribute, parsed (see Report), before the reply is sent: the feed
	// of failure-driven bans (pkg/bans). It must be safe for concurrent
	// use and quick; ctx ends with the request.
	OnReport func(ctx context.Context, r Report)
	// Banned, when set, is asked about the client address of every allow
	// request (one with a "remote") before Check: banned=true denies with
	// BanMessage, and reason (e.g. "192.0.2.7/32 banned until ...") goes
	// to the log and the Decision. It must be safe for concurrent use.
	Banned func(addr netip.Addr) (reason string, banned bool)
	// BanMessage is the msg of a denial by Banned. Empty means
	// DefaultBanMessage.
	BanMessage string

	initOnce sync.Once
	log      *slog.Logger
	hdrName  string
	hdrValue []byte
	initErr  error
}

// CheckAPIHeader reports whether h is a valid APIHeader: empty (none
// required), "Name: value" with a header name and a value that are not
// empty, or a bare value that is not empty (for X-API-Key). An empty
// expected value would match a request without the header.
func CheckAPIHeader(h string) error {
	_, _, err := parseAPIHeader(h)
	return err
}

func parseAPIHeader(h string) (name, value string, err error) {
	if h == "" {
		return "", "", nil
	}
	name, value, ok := strings.Cut(h, ":")
	if !ok {
		name, value = "X-API-Key", h
	}
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	switch {
	case name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return "", "", fmt.Errorf("API header %q: want \"Name: value\" with a header name, or a bare value", h)
	case value == "":
		return "", "", fmt.Errorf("API header %q: empty value (it would match a request without the header)", h)
	}
	return name, value, nil
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.log = s.Log
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		name, value, err := parseAPIHeader(s.APIHeader)
		if err != nil {
			// Fail closed: ServeHTTP refuses every request.
			s.initErr = fmt.Errorf("auth policy: %w", err)
		}
		s.hdrName, s.hdrValue = name, []byte(value)
	})
}

// Serve answers auth policy requests on ln until ctx ends, then stops
// accepting, lets requests in progress finish for at most Timeout, closes
// every connection and returns nil. It closes ln. Another error (ln
// failing) is returned as is. An invalid APIHeader (see CheckAPIHeader)
// is an error before anything is accepted. Serve may be called once per
// Server.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	if s.initErr != nil {
		ln.Close()
		return s.initErr
	}
	timeout := defaults.Positive(s.Timeout, DefaultTimeout)
	max := s.MaxConnections
	if max <= 0 {
		max = DefaultMaxConnections
	}
	lim := newLimitListener(ln, max, s.log, func() { s.countError(ErrKindEvictedIdle) })
	hs := &http.Server{
		Handler:           s,
		ConnState:         lim.connState,
		ReadHeaderTimeout: min(timeout, defaults.Positive(s.ReadTimeout, timeout)),
		ReadTimeout:       timeout,
		WriteTimeout:      timeout,
		IdleTimeout:       defaults.Positive(s.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	hs.SetKeepAlivesEnabled(true)
	done := make(chan error, 1)
	go func() { done <- hs.Serve(lim) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Error kinds of requests answered without a verdict (Server.Error).
const (
	ErrKindMethod      = "method_not_allowed" // not POST (405)
	ErrKindAPIHeader   = "bad_api_header"     // missing or wrong API header (401)
	ErrKindBadRequest  = "bad_request"        // unknown command, malformed body or attributes (400)
	ErrKindTooLarge    = "request_too_large"  // body over MaxRequestBytes (413)
	ErrKindReadFailed  = "read_failed"        // the body could not be read (client gone, too slow)
	errKindUnknownCode = "http_error"
)

// errKind names the problem behind an HTTP error status.
func errKind(code int) string {
	switch code {
	case http.StatusMethodNotAllowed:
		return ErrKindMethod
	case http.StatusUnauthorized:
		return ErrKindAPIHeader
	case http.StatusBadRequest:
		return ErrKindBadRequest
	case http.StatusRequestEntityTooLarge:
		return ErrKindTooLarge
	}
	return errKindUnknownCode
}

func (s *Server) countError(kind string) {
	if s.Error != nil {
		s.Error(kind)
	}
}

// Canned replies.
var (
	replyGranted = []byte(`{"status":0}`)
	// contentJSON is the Content-Type header's value, set without
	// allocating (net/http does not change it).
	contentJSON = []string{"application/json"}
)

// exchange is the state of one ServeHTTP call, pooled so that a request
// allocates only its decoded values: the body buffer, the request and the
// access question.
type exchange struct {
	body []byte
	req  Request
	hreq hostsrules.Request
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

// maxPooledBody bounds the body buffers kept for reuse.
const maxPooledBody = 4 << 10

// release returns x to the pool, keeping nothing of its request.
func (x *exchange) release() {
	x.req, x.hreq = Request{}, hostsrules.Request{}
	if cap(x.body) > maxPooledBody {
		x.body = nil
	}
	exchangePool.Put(x)
}

// ServeHTTP answers one auth policy request (see the package doc): POST
// with ?command=allow or ?command=report. Other methods get 405, other
// commands 400, a missing or wrong API header 401, a body over
// MaxRequestBytes 413, a malformed body 400; each is logged at Warn.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.refuse(w, r, http.StatusMethodNotAllowed, "method not allowed", nil)
		return
	}
	if s.initErr != nil || s.hdrName != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(s.hdrName)), s.hdrValue) != 1 {
		s.refuse(w, r, http.StatusUnauthorized, "missing or wrong API header "+s.hdrName, nil)
		return
	}
	var command string
	switch r.URL.RawQuery { // what Dovecot sends; anything else is parsed
	case "command=allow":
		command = "allow"
	case "command=report":
		command = "report"
	default:
		command = r.URL.Query().Get("command")
	}
	if command != "allow" && command != "report" {
		s.refuse(w, r, http.StatusBadRequest, "unknown command", nil, "command", command)
		return
	}
	max := s.MaxRequestBytes
	if max <= 0 {
		max = DefaultMaxRequestBytes
	}
	x := exchangePool.Get().(*exchange)
	defer x.release()
	body, err := readBody(w, r, max, x.body[:0])
	if body != nil {
		x.body = body
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.refuse(w, r, http.StatusRequestEntityTooLarge, "request body too large", nil, "limit", max)
			return
		}
		// A client that went away or was too slow (ReadTimeout): nothing
		// useful can be sent.
		s.log.Warn("auth policy: reading request failed", "remote_addr", r.RemoteAddr, "err", err)
		s.countError(ErrKindReadFailed)
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	req := &x.req
	if err := parseRequest(body, req); err != nil {
		s.refuse(w, r, http.StatusBadRequest, "bad request body", err)
		return
	}
	if command == "report" {
		s.onReport(r.Context(), req)
		s.log.Debug("auth policy: report", "protocol", req.Protocol, "client", req.Remote,
			"user", req.Login, "success", req.Success != nil && *req.Success, "fail_type", req.FailType, "session", req.SessionID)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	reply, ok := s.allow(r.Context(), req, &x.hreq)
	if !ok {
		s.refuse(w, r, http.StatusBadRequest, "bad request attributes", nil)
		return
	}
	w.Header()["Content-Type"] = contentJSON
	if reply.Status == 0 {
		w.Write(replyGranted)
		return
	}
	w.Write(reply.AppendJSON(make([]byte, 0, 64)))
}

// readBody reads the request body, at most max bytes, into buf (its
// capacity reused when it is enough): a body of a known length in one
// read (Dovecot always sends Content-Length), else through
// http.MaxBytesReader.
func readBody(w http.ResponseWriter, r *http.Request, max int64, buf []byte) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= max {
		b := buf[:0]
		if int64(cap(b)) < n {
			b = make([]byte, n)
		}
		b = b[:n]
		if _, err := io.ReadFull(r.Body, b); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, max))
}

// allow decides an allow request, with hreq overwritten by its access
// question; ok is false for a request that cannot be turned into one
// (logged here).
func (s *Server) allow(ctx context.Context, req *Request, hreq *hostsrules.Request) (Reply, bool) {
	if err := req.hostsRequest(s.LoginAsUser, hreq); err != nil {
		s.log.Warn("auth policy: bad request attributes", "err", err, "session", req.SessionID)
		return Reply{}, false
	}
	// A lazy deadline: no timer unless the check waits (a DNS lookup).
	cctx := lazyctx.WithTimeout(ctx, defaults.Positive(s.Timeout, DefaultTimeout))
	defer cctx.Release()
	reply, d := s.Decide(cctx, hreq)
	if reply.Status < 0 {
		s.log.Info("auth policy: denied", "protocol", hreq.Daemon, "client", req.Remote,
			"user", req.Login, "rule", ruleRef(d), "reason", d.Reason, "session", req.SessionID)
	} else if s.log.Enabled(ctx, slog.LevelDebug) { // the attributes cost allocations
		s.log.Debug("auth policy: granted", "protocol", hreq.Daemon, "client", hreq.Client.Addr,
			"server", hreq.Server.Addr, "user", req.Login, "rule", ruleRef(d), "status", reply.Status, "session", req.SessionID)
	}
	return reply, true
}

// Decide asks Banned, then Check, about hreq and returns the reply the
// front end sends with the decision it came from: the code path of every
// allow request, for tools that replay one (loginctl check-host). A
// banned client is denied with BanMessage, and the Decision has no rule
// and a Reason that begins with BannedReason. A rule denial's Msg is the
// first line of the deciding rule's banners file or DenyMessage; a grant's
// Status is the tarpit option's N, at most MaxStatus. Problems with a
// banners directory or a tarpit option are logged, never change the
// verdict. It is safe for concurrent use.
func (s *Server) Decide(ctx context.Context, hreq *hostsrules.Request) (Reply, hostsrules.Decision) {
	s.init()
	if reply, d, ok := s.banned(hreq); ok {
		return reply, d
	}
	d := s.Check(ctx, hreq)
	status, err := Status(d)
	if err != nil {
		s.log.Warn("auth policy: tarpit option ignored", "rule", ruleRef(d), "err", err)
	}
	if status < 0 {
		msg, err := policytext.Banner(ctx, d, hreq)
		if err != nil {
			s.log.Warn("auth policy: banner", "rule", ruleRef(d), "err", err)
		}
		if msg == "" {
			msg = s.DenyMessage
		}
		if msg == "" {
			msg = DefaultDenyMessage
		}
		return Reply{Status: -1, Msg: msg}, d
	}
	maxStatus := s.MaxStatus
	if maxStatus <= 0 {
		maxStatus = DefaultMaxStatus
	}
	return Reply{Status: min(status, maxStatus)}, d
}

// ruleRef is "file:line" of the deciding rule, or the reason when no rule
// decided.
func ruleRef(d hostsrules.Decision) string {
	if d.File == "" {
		return d.Reason
	}
	if d.Line == 0 {
		return d.File
	}
	return d.File + ":" + itoa(d.Line)
}

// refuse answers an HTTP error and logs why.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, why string, err error, args ...any) {
	args = append(args, "remote_addr", r.RemoteAddr, "status", code)
	if err != nil {
		args = append(args, "err", err)
	}
	s.log.Warn("auth policy: request refused: "+why, args...)
	s.countError(errKind(code))
	http.Error(w, http.StatusText(code), code)
}
