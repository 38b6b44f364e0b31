package smtpdpolicy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
	"github.com/tcpwrapd/tcpwrapd/internal/lazyctx"
	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/policytext"
)

// CheckFunc decides one access question over the compiled rules, as the
// rules core of tcpwrapd does for every front end. It must be safe for
// concurrent use and should return when ctx ends.
type CheckFunc func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision

// Defaults for the zero values of Server's fields.
const (
	// DefaultTimeout bounds reading one request block (from its first
	// byte), the check and writing the reply. Postfix sends a block in
	// one write and waits smtpd_policy_service_timeout (100 s).
	DefaultTimeout = 10 * time.Second
	// DefaultIdleTimeout keeps an idle connection longer than Postfix
	// does (smtpd_policy_service_max_idle = 300 s), so that Postfix
	// closes first.
	DefaultIdleTimeout = 330 * time.Second
	// DefaultMaxRequestBytes bounds one request block. Postfix 3.7's
	// blocks are about 600 bytes plus the sender, recipient, HELO name
	// and client certificate attributes.
	DefaultMaxRequestBytes = 64 << 10
	// DefaultMaxAttributes bounds the attribute lines of one block
	// (Postfix 3.7 sends 30).
	DefaultMaxAttributes = 256
	// DefaultMaxConnections bounds concurrent connections. Each smtpd
	// process keeps one (default_process_limit = 100).
	DefaultMaxConnections = 512
)

// Server answers Postfix's SMTPD access policy requests from a CheckFunc
// on one listener (a unix socket or loopback TCP; see docs/postfix.md).
// Set the fields before Serve; they must not change afterwards. Several
// Servers may share one CheckFunc, one per listener, each with its own
// Daemon name. A Server is safe for concurrent use.
type Server struct {
	// Check decides each request. Required.
	Check CheckFunc
	// Log receives one line per denial (Info), per grant (Debug), and
	// per request answered with no reply (Warn; Error for a rules
	// error). Nil discards.
	Log *slog.Logger
	// Daemon is the daemon name of this listener's requests that carry
	// no policy_context attribute. Empty means DefaultDaemon ("smtpd").
	Daemon string
	// RejectCode is how a denial is answered: "" (the default) sends
	// "action=REJECT TEXT" (Postfix replies access_map_reject_code, 554
	// 5.7.1, and goes on); a reply code with an optional enhanced status
	// code ("521 5.7.1") sends "action=521 5.7.1 TEXT", and with 421 or
	// 521 Postfix disconnects after the reply. See CheckRejectCode.
	RejectCode string
	// DenyMessage is the TEXT of a denial without a banner line. Empty
	// means DefaultDenyMessage.
	DenyMessage string
	// Timeout bounds reading a request block (from its first byte), the
	// check and writing the reply. Zero means DefaultTimeout. The socket
	// deadlines behind Timeout, ReadTimeout and IdleTimeout are refreshed
	// lazily: a wait is never longer than its bound but may end up to
	// 1/16 of it early (see docs/postfix.md).
	Timeout time.Duration
	// IdleTimeout bounds how long a connection waits for its next
	// request. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxRequestBytes bounds a request block; a bigger one is not
	// answered and the connection is closed. Zero means
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
	// MaxAttributes bounds the attribute lines of a request block, as
	// MaxRequestBytes does. Zero means DefaultMaxAttributes.
	MaxAttributes int
	// ReadTimeout bounds how long a new connection may wait before it
	// sends its first block (tcpwrapd's --read-timeout). Zero means
	// Timeout.
	ReadTimeout time.Duration
	// MaxConnections bounds the connections served at once. At the
	// limit, a new connection is accepted after closing the one idle
	// longest: one waiting for its next block, else one that has sent
	// nothing for NewSilentAfter; never one inside a request (counted as
	// ErrKindEvictedIdle). Zero means DefaultMaxConnections.
	MaxConnections int
	// Error, if set, counts each request answered with no reply and each
	// failed, timed-out or evicted connection, by kind (an ErrKind
	// constant); tcpwrapd's admin
	// socket shows them. It must be safe for concurrent use.
	Error func(kind string)

	initOnce sync.Once
	log      *slog.Logger
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.log = s.Log
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
	})
}

// Serve answers policy requests on ln until ctx ends, then stops
// accepting, closes idle connections, lets requests in progress finish
// for at most Timeout, closes every connection and returns nil. It closes
// ln. An invalid RejectCode, Daemon or nil Check is an error before
// anything is accepted; ln failing is returned as is (a temporary
// accept error, such as running out of descriptors, is logged and
// retried). Serve may be called once per Server.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	if err := s.validate(); err != nil {
		ln.Close()
		return err
	}
	limit := defaults.Positive(s.MaxConnections, DefaultMaxConnections)
	var (
		mu      sync.Mutex
		conns   = map[net.Conn]*connState{}
		wg      sync.WaitGroup
		changed = make(chan struct{}, 1) // a connection ended or went idle
	)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var lnErr error
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if retryable(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("postfix policy: accept failed, retrying", "err", err, "delay", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
				continue
			}
			lnErr = err
			break
		}
		backoff = 0
		if !s.makeRoom(ctx, &mu, conns, limit, changed) {
			c.Close()
			break
		}
		st := &connState{since: time.Now(), waiting: true, fresh: true}
		conns[c] = st
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c, func(waiting bool, now time.Time) {
				mu.Lock()
				st.waiting, st.since, st.fresh, st.busy = waiting, now, false, false
				mu.Unlock()
				if waiting {
					signal()
				}
			})
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			signal()
		}()
	}
	ln.Close()
	// Wake the connections waiting for a request; one inside a request
	// finishes it (serveConn stops before its next read).
	mu.Lock()
	for c := range conns {
		c.SetReadDeadline(time.Now())
	}
	mu.Unlock()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(defaults.Positive(s.Timeout, DefaultTimeout)):
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		<-done
	}
	return lnErr
}

// NewSilentAfter is how long a new connection must have sent nothing
// before it may be closed to make room at MaxConnections: smtpd sends its
// block as soon as it connects.
const NewSilentAfter = 100 * time.Millisecond

// connState is what makeRoom knows of a connection (under Serve's mutex).
type connState struct {
	waiting bool      // for its next (or first) block
	busy    bool      // its block arrived (makeRoom saw input): not a victim
	fresh   bool      // has not sent a block yet
	since   time.Time // when waiting or fresh began
}

// makeRoom returns with mu held once conns has room for one more: at
// max it closes the connection idle longest (waiting for its next block,
// else one that has sent nothing for NewSilentAfter; never one inside a
// request), or waits for one to end or go idle. It returns false, with mu
// not held, when ctx ends.
func (s *Server) makeRoom(ctx context.Context, mu *sync.Mutex, conns map[net.Conn]*connState, max int, changed <-chan struct{}) bool {
	for {
		mu.Lock()
		if len(conns) < max {
			return true
		}
		var victim net.Conn
		var vs *connState
		var wait time.Duration
		now := time.Now()
		for c, st := range conns {
			if !st.waiting || st.busy {
				continue
			}
			if st.fresh && now.Sub(st.since) < NewSilentAfter {
				if d := NewSilentAfter - now.Sub(st.since); wait == 0 || d < wait {
					wait = d
				}
				continue
			}
			if vs == nil || st.fresh != vs.fresh && !st.fresh || st.fresh == vs.fresh && st.since.Before(vs.since) {
				victim, vs = c, st
			}
		}
		if victim != nil && sockfd.HasInput(victim) {
			// Its next block is in the socket buffer: about to be
			// served. Look again without it.
			vs.busy = true
			mu.Unlock()
			continue
		}
		if victim != nil {
			vs.waiting = false // closing: not a victim again
			mu.Unlock()
			s.log.Debug("postfix policy: connection limit reached: closed the connection idle longest",
				"remote_addr", victim.RemoteAddr().String(), "limit", max)
			s.countError(ErrKindEvictedIdle)
			victim.Close()
			continue
		}
		mu.Unlock()
		t := time.NewTimer(wait)
		if wait == 0 {
			t.Stop()
		}
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			return false
		}
	}
}

func (s *Server) validate() error {
	if s.Check == nil {
		return errors.New("postfix policy: no Check")
	}
	if err := CheckRejectCode(s.RejectCode); err != nil {
		return fmt.Errorf("postfix policy: %w", err)
	}
	if s.Daemon != "" {
		if _, err := (&Request{}).HostsRequest(s.Daemon); err != nil {
			return fmt.Errorf("postfix policy: daemon %q: %w", s.Daemon, err)
		}
	}
	return nil
}

// Error kinds of requests answered with no reply and failed connections
// (Server.Error).
const (
	ErrKindBadRequest  = "bad_request"  // a malformed, oversized or incomplete block, or bad attributes
	ErrKindNoVerdict   = "no_verdict"   // a rules error or a check that ran out of time
	ErrKindReadFailed  = "read_failed"  // the connection failed between requests
	ErrKindWriteFailed = "write_failed" // the reply could not be written
	ErrKindEvictedIdle = "evicted_idle" // closed between requests to make room at MaxConnections
	ErrKindReadTimeout = "read_timeout" // no first block within ReadTimeout
)

func (s *Server) countError(kind string) {
	if s.Error != nil {
		s.Error(kind)
	}
}

// retryable reports whether an Accept error is temporary.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// serveConn answers the requests of one connection until the client
// closes it, ctx ends, or a request gets no reply.
// waiting is told when the connection starts and stops waiting for a
// block, and the time. The first block must come within ReadTimeout, later ones within
// IdleTimeout.
//
// Per request it allocates the kept attribute values (one string) and
// the check's lazy deadline, and makes no system call besides the read
// and the write: the socket deadlines are refreshed lazily (see
// connDeadlines).
func (s *Server) serveConn(ctx context.Context, c net.Conn, waiting func(waiting bool, now time.Time)) {
	timeout := defaults.Positive(s.Timeout, DefaultTimeout)
	lim := Limits{MaxBytes: s.MaxRequestBytes, MaxAttributes: s.MaxAttributes}
	dl := &connDeadlines{c: c, ctx: ctx}
	dl.phase(time.Now(), defaults.Positive(s.ReadTimeout, timeout))
	br := bufio.NewReaderSize(dl, 4096)
	// A request outlives a shutdown that starts while it is answered.
	cctx := context.WithoutCancel(ctx)
	var (
		req  Request
		hreq hostsrules.Request
		out  []byte
	)
	first := true
	for {
		if ctx.Err() != nil {
			return
		}
		_, err := br.Peek(1)
		if err != nil {
			switch {
			case first && errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil:
				s.log.Debug("postfix policy: no request within the read timeout, closing", "remote_addr", c.RemoteAddr().String())
				s.countError(ErrKindReadTimeout)
			case err != io.EOF && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil:
				s.log.Warn("postfix policy: connection closed", "remote_addr", c.RemoteAddr().String(), "err", err)
				s.countError(ErrKindReadFailed)
			}
			return
		}
		start := time.Now()
		waiting(false, start)
		first = false
		dl.phase(start, timeout) // the rest of the block, if it is not all here yet
		if err := readRequest(br, lim, &req); err != nil {
			s.log.Warn("postfix policy: bad request, closing without a reply", "remote_addr", c.RemoteAddr().String(), "err", err)
			s.countError(ErrKindBadRequest)
			return
		}
		action, err := s.answer(cctx, start, &req, &hreq)
		if err != nil {
			return // logged by answer
		}
		reply := replyDunno
		if action != ActionDunno {
			out = AppendReply(out[:0], action)
			reply = out
		}
		now := time.Now()
		if _, err := dl.write(reply, now, timeout); err != nil {
			s.log.Warn("postfix policy: writing reply failed", "remote_addr", c.RemoteAddr().String(), "err", err, "instance", req.Instance)
			s.countError(ErrKindWriteFailed)
			return
		}
		// The idle bound counts from before the write (microseconds).
		dl.phase(now, defaults.Positive(s.IdleTimeout, DefaultIdleTimeout))
		waiting(true, now)
	}
}

// replyDunno is the reply of a grant.
var replyDunno = AppendReply(nil, ActionDunno)

// connDeadlines keeps a connection's socket deadlines without setting
// them for every request. A phase (waiting for a block, reading the rest
// of one) has a bound: no read may wait past its end. The read deadline
// is set only when a read would wait (the bufio.Reader over
// connDeadlines has nothing buffered) and the deadline set on the socket
// is after the bound or more than 1/16 of the phase's length before it;
// the write deadline likewise before a write. So a read or write never
// waits longer than its bound, may time out up to 1/16 of it earlier, and
// a busy connection sets a deadline about once per that 1/16 instead of
// three times a request.
type connDeadlines struct {
	c   net.Conn
	ctx context.Context // the Server's: once it ends, no read waits

	slack                 time.Duration // 1/16 of the phase's length
	readBy                time.Time     // the phase's bound
	readSet, writeSet     time.Time     // the deadlines set on c
	readSetOK, writeSetOK bool          // readSet, writeSet hold a deadline
}

// phase starts a phase at now in which reads must end within bound.
func (d *connDeadlines) phase(now time.Time, bound time.Duration) {
	d.readBy, d.slack = now.Add(bound), bound/16
}

// stale reports whether the deadline set (ok: one is) must be replaced
// to end by want: it is later, or more than slack before it.
func stale(set time.Time, ok bool, want time.Time, slack time.Duration) bool {
	return !ok || set.After(want) || set.Before(want.Add(-slack))
}

// Read reads from the connection within the phase's bound.
func (d *connDeadlines) Read(p []byte) (int, error) {
	if stale(d.readSet, d.readSetOK, d.readBy, d.slack) {
		if err := d.c.SetReadDeadline(d.readBy); err != nil {
			return 0, err
		}
		d.readSet, d.readSetOK = d.readBy, true
		// Serve wakes a waiting read with a past deadline once ctx has
		// ended; a deadline set after that must not put it back to sleep.
		if d.ctx.Err() != nil {
			return 0, os.ErrDeadlineExceeded
		}
	}
	return d.c.Read(p)
}

// write writes b to the connection within timeout from now.
func (d *connDeadlines) write(b []byte, now time.Time, timeout time.Duration) (int, error) {
	want := now.Add(timeout)
	if stale(d.writeSet, d.writeSetOK, want, timeout/16) {
		if err := d.c.SetWriteDeadline(want); err != nil {
			return 0, err
		}
		d.writeSet, d.writeSetOK = want, true
	}
	return d.c.Write(b)
}

// answer decides one request that arrived at start and logs it; an
// error means no reply (it is logged here). hreq is overwritten with the
// access question.
func (s *Server) answer(ctx context.Context, start time.Time, req *Request, hreq *hostsrules.Request) (string, error) {
	if err := req.hostsRequest(s.Daemon, hreq); err != nil {
		s.log.Warn("postfix policy: bad request attributes, closing without a reply", "err", err, "instance", req.Instance)
		s.countError(ErrKindBadRequest)
		return "", err
	}
	// A lazy deadline: no timer unless the check waits (a DNS lookup).
	cctx := lazyctx.WithDeadline(ctx, start.Add(defaults.Positive(s.Timeout, DefaultTimeout)))
	defer cctx.Release()
	action, d, err := s.Decide(cctx, hreq)
	// The log attributes are built only when the record is written: a
	// grant is logged at debug level and then costs nothing.
	args := func() []any {
		return []any{"daemon", hreq.Daemon, "client", req.ClientAddress, "client_name", hreq.Client.Name,
			"server", hreq.Server.Addr, "state", req.ProtocolState, "rule", ruleRef(d), "reason", d.Reason, "instance", req.Instance}
	}
	switch {
	case err != nil:
		s.log.Error("postfix policy: no verdict, closing without a reply", append(args(), "err", err)...)
		s.countError(ErrKindNoVerdict)
	case d.Verdict == hostsrules.Granted:
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("postfix policy: granted", args()...)
		}
	default:
		s.log.Info("postfix policy: denied", append(args(), "sender", req.Sender, "recipient", req.Recipient, "action", action)...)
	}
	return action, err
}

// Decide asks Check about hreq and returns the action the front end
// sends (without "action="; AppendReply makes the reply block) with the
// decision it came from: the code path of every request, for tools that
// replay one (loginctl check-host). A grant is ActionDunno. A denial is
// "REJECT TEXT" or "RejectCode TEXT", TEXT being the first line of the
// deciding rule's banners file (DIR/<daemon>, %-expanded; see
// policytext.Banner) or DenyMessage, in ASCII, at most 256 bytes. A
// problem with a banners directory is logged and never changes the
// verdict.
//
// An error means no verdict, and the Server then sends no reply and
// closes the connection (Postfix applies
// smtpd_policy_service_default_action, 451 4.3.5 by default): ctx ended
// before Check returned, or the decision was forced by an error in the
// rules (d.Err: an unreadable hosts.deny, an option error), where
// libwrap would deny. Mail is then deferred, not bounced, until the
// rules are fixed. It is safe for concurrent use.
func (s *Server) Decide(ctx context.Context, hreq *hostsrules.Request) (string, hostsrules.Decision, error) {
	s.init()
	d := s.Check(ctx, hreq)
	if err := ctx.Err(); err != nil {
		return "", d, fmt.Errorf("check: %w", err)
	}
	if d.Err != nil {
		return "", d, fmt.Errorf("rules error (%s): %w", d.Reason, d.Err)
	}
	if d.Verdict == hostsrules.Granted {
		return ActionDunno, d, nil
	}
	text, err := policytext.Banner(ctx, d, hreq)
	if err != nil {
		s.log.Warn("postfix policy: banner", "rule", ruleRef(d), "err", err)
	}
	if text == "" {
		text = policytext.Clean(s.DenyMessage)
	}
	if text == "" {
		text = DefaultDenyMessage
	}
	return denyAction(s.RejectCode, text), d, nil
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
	return d.File + ":" + strconv.Itoa(d.Line)
}
