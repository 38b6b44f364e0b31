package logind

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

type netipPrefix = netip.Prefix

// MaxInputLine is the longest pre-login command line in bytes, CRLF
// included, before the client is dropped with "Input buffer full"
// (Dovecot's LOGIN_MAX_INBUF_SIZE, 1026).
const MaxInputLine = 1026

// client is one connection inside a login process.
type client struct {
	id       uint64
	lp       *loginProc
	c        *sockConn // the socket: access checks, deadlines
	conn     net.Conn  // what the protocol reads and writes: c, or TLS over it
	accepted time.Time
	done     *sync.WaitGroup // set by shutdown, under lp.mu
	greeted  bool            // the greeting was sent before serve (no access checks)
	// implicitTLS: accepted on an ssl = yes listener (TLS handshake
	// after the access check, then the greeting); tlsActive: TLS is on;
	// wantTLS: STARTTLS/STLS was accepted, the handshake follows the
	// reply. Only the serving goroutine touches these.
	implicitTLS, tlsActive, wantTLS bool
	// haproxy: accepted on a haproxy = yes listener (the PROXY header
	// comes first, see haproxy.go); haproxyTLS: the proxy said it
	// terminated TLS for the client (v2 SSL TLV), which will make the
	// client secured (spec §9.1) once authentication exists.
	haproxy, haproxyTLS bool

	mu     sync.Mutex
	reason CloseReason
	killed bool

	bad int // bad commands (cumulative or consecutive, per protocol)
	mem [][]byte
}

// kill makes the serving goroutine stop with reason (the notice is
// written by that goroutine, never concurrently with a reply).
func (cl *client) kill(r CloseReason) {
	cl.mu.Lock()
	if !cl.killed {
		cl.killed, cl.reason = true, r
	}
	cl.mu.Unlock()
	cl.c.SetReadDeadline(time.Unix(1, 0))
}

func (cl *client) killedReason() (CloseReason, bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.reason, cl.killed
}

func (cl *client) write(s string) error {
	cl.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := cl.conn.Write([]byte(s))
	return err
}

// serve runs the client: access check, greeting, commands, until it
// leaves or is dropped. The pre-login deadline is absolute from accept.
func (cl *client) serve() {
	reason := CloseNormal
	defer func() {
		cl.conn.Close()
		cl.lp.finished(cl, reason)
	}()
	deadline := cl.accepted.Add(cl.lp.in.PreloginTimeout)
	if !cl.greeted {
		if cl.haproxy {
			if r, ok := cl.proxyHeader(deadline); !ok {
				reason = r
				return
			}
		}
		if r, ok := cl.access(); !ok {
			reason = r
			return
		}
		if r, k := cl.killedReason(); k {
			reason = r
			if r != CloseRefused && !cl.implicitTLS { // no plaintext to a TLS client
				cl.write(cl.lp.proto.notice(cl.lp, r))
			}
			return
		}
		// A client in its TLS handshake is logging in (evictable), as in
		// Dovecot.
		cl.lp.report(msgState, cl.id, uint8(StateLoggingIn))
		if cl.implicitTLS {
			if err := cl.handshake(deadline); err != nil {
				reason = cl.tlsFailure(err)
				return
			}
		}
		if err := cl.write(cl.lp.proto.greeting(cl.lp, cl.tlsActive)); err != nil {
			reason = CloseError
			return
		}
	}
	cl.c.SetReadDeadline(deadline)
	if r, k := cl.killedReason(); k { // killed while greeting
		cl.c.SetReadDeadline(time.Unix(1, 0))
		_ = r
	}
	br := bufio.NewReaderSize(cl.conn, MaxInputLine)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if r, k := cl.killedReason(); k {
				reason = r
				cl.write(cl.lp.proto.notice(cl.lp, r))
				return
			}
			var ne net.Error
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				reason = CloseError
				cl.write(cl.lp.proto.notice(cl.lp, closeInputFull))
			case errors.As(err, &ne) && ne.Timeout():
				reason = CloseTimeout
				cl.write(cl.lp.proto.notice(cl.lp, CloseTimeout))
			}
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		reply, quit, tooBad := cl.lp.proto.command(cl, string(line))
		if reply != "" {
			if err := cl.write(reply); err != nil {
				reason = CloseError
				return
			}
		}
		if tooBad {
			reason = CloseError
			return
		}
		if quit {
			return
		}
		if cl.wantTLS {
			cl.wantTLS = false
			// Plaintext pipelined after STARTTLS is dropped, never run
			// as if it had come over TLS (the CVE-2011-0411 class).
			if br.Buffered() > 0 {
				br.Discard(br.Buffered())
			}
			if err := cl.handshake(deadline); err != nil {
				reason = cl.tlsFailure(err)
				return
			}
			cl.c.SetReadDeadline(deadline)
			if _, k := cl.killedReason(); k {
				cl.c.SetReadDeadline(time.Unix(1, 0))
			}
			br = bufio.NewReaderSize(cl.conn, MaxInputLine)
		}
	}
}

// handshake runs the server side of a TLS handshake on the client's
// socket, bounded by the pre-login deadline (and cut short by kill), and
// makes TLS the connection's transport.
func (cl *client) handshake(deadline time.Time) error {
	tc := tls.Server(cl.c, cl.lp.tls)
	cl.c.SetDeadline(deadline)
	if _, k := cl.killedReason(); k { // a kill before SetDeadline must not be lost
		cl.c.SetReadDeadline(time.Unix(1, 0))
	}
	err := tc.Handshake()
	cl.c.SetWriteDeadline(time.Time{})
	if err != nil {
		return err
	}
	cl.conn, cl.tlsActive = tc, true
	return nil
}

// tlsFailure logs a failed handshake (Dovecot: "Disconnected ... TLS
// handshaking: ...") and returns the close reason.
func (cl *client) tlsFailure(err error) CloseReason {
	if r, k := cl.killedReason(); k {
		return r
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		logLine("INFO", "Disconnected: Inactivity during TLS handshake (rip=%s)", remoteIP(cl.c))
		return CloseTimeout
	}
	logLine("INFO", "Disconnected: TLS handshaking: %v (rip=%s)", err, remoteIP(cl.c))
	return CloseError
}

// closeInputFull is a notice-only reason (reported as CloseError).
const closeInputFull CloseReason = 100

// protocol is one pre-login protocol.
type protocol interface {
	name() string
	// greeting is the greeting line(s); tlsActive: the connection is
	// already TLS (no STARTTLS capability).
	greeting(lp *loginProc, tlsActive bool) string
	// command handles one line; quit ends the session normally, tooBad
	// ends it for too many bad commands (the reply carries the notice).
	command(cl *client, line string) (reply string, quit, tooBad bool)
	notice(lp *loginProc, r CloseReason) string
}

func protocolFor(name string) protocol {
	switch name {
	case "pop3":
		return pop3{}
	case "submission":
		return submission{}
	case "sieve":
		return sieve{}
	}
	return imap{}
}

// IMAP (spec §9.2). Authentication is not there yet: LOGINDISABLED is
// advertised and LOGIN/AUTHENTICATE answer NO [UNAVAILABLE].

type imap struct{}

const (
	imapCaps         = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ LOGINDISABLED"
	imapCapsStartTLS = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED"
)

// imapCapsFor is the pre-login capability list: STARTTLS while TLS is
// available (ssl != no) and not active (Dovecot's order).
func imapCapsFor(lp *loginProc, tlsActive bool) string {
	if lp.tls != nil && !tlsActive {
		return imapCapsStartTLS
	}
	return imapCaps
}

func (imap) name() string { return "imap" }
func (imap) greeting(lp *loginProc, tlsActive bool) string {
	return "* OK [CAPABILITY " + imapCapsFor(lp, tlsActive) + "] " + lp.in.Greeting + "\r\n"
}

// IMAPMaxBadCommands is Dovecot's CLIENT_MAX_BAD_COMMANDS (3), counted
// cumulatively for IMAP.
const IMAPMaxBadCommands = 3

func (imap) command(cl *client, line string) (string, bool, bool) {
	tag, rest, _ := strings.Cut(line, " ")
	cmd, args, _ := strings.Cut(rest, " ")
	if tag == "" || len(tag) > 126 || strings.ContainsAny(tag, "*%(){\"\\") {
		if strings.EqualFold(tag, "LOGIN") {
			return "* BAD Missing tag\r\n", false, false
		}
		return cl.imapBad("*")
	}
	switch strings.ToUpper(cmd) {
	case "CAPABILITY":
		return "* CAPABILITY " + imapCapsFor(cl.lp, cl.tlsActive) + "\r\n" + tag + " OK Pre-login capabilities listed, post-login capabilities have more.\r\n", false, false
	case "NOOP":
		return tag + " OK NOOP completed.\r\n", false, false
	case "LOGOUT":
		return "* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n", true, false
	case "ID":
		return "* ID NIL\r\n" + tag + " OK ID completed.\r\n", false, false
	case "ENABLE":
		return "* ENABLED\r\n" + tag + " OK ENABLE ignored in non-authenticated state.\r\n", false, false
	case "STARTTLS":
		switch {
		case cl.tlsActive:
			return tag + " BAD TLS is already active.\r\n", false, false
		case cl.lp.tls == nil:
			return tag + " BAD TLS support isn't enabled.\r\n", false, false
		}
		cl.wantTLS = true
		return tag + " OK Begin TLS negotiation now.\r\n", false, false
	case "LOGIN", "AUTHENTICATE":
		return tag + " NO [UNAVAILABLE] Authentication is not available yet.\r\n", false, false
	case "XALLOC", "XPROXY", "XOPEN", "XADDR":
		if testHooks {
			return cl.testHook(strings.ToUpper(cmd), args, tag+" OK\r\n"), false, false
		}
	}
	return cl.imapBad(tag)
}

func (cl *client) imapBad(tag string) (string, bool, bool) {
	cl.bad++
	if cl.bad >= IMAPMaxBadCommands {
		return "* BYE Too many invalid IMAP commands.\r\n", false, true
	}
	return tag + " BAD Error in IMAP command received by server.\r\n", false, false
}

func (imap) notice(lp *loginProc, r CloseReason) string {
	switch r {
	case CloseEvicted:
		return "* BYE Connection queue full\r\n"
	case CloseTimeout:
		return "* BYE Disconnected for inactivity.\r\n"
	case CloseShutdown:
		return "* BYE Shutting down\r\n"
	case closeInputFull:
		return "* BYE Input buffer full, aborting\r\n"
	}
	return ""
}

// POP3 (spec §9.3): 3 consecutive bad commands.

type pop3 struct{}

func (pop3) name() string                          { return "pop3" }
func (pop3) greeting(lp *loginProc, _ bool) string { return "+OK " + lp.in.Greeting + "\r\n" }
func (pop3) command(cl *client, line string) (string, bool, bool) {
	cmd, args, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "CAPA":
		cl.bad = 0
		stls := ""
		if cl.lp.tls != nil && !cl.tlsActive {
			stls = "STLS\r\n"
		}
		return "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n" + stls + ".\r\n", false, false
	case "QUIT":
		return "+OK Logging out\r\n", true, false
	case "STLS":
		cl.bad = 0
		switch {
		case cl.tlsActive:
			return "-ERR TLS is already active.\r\n", false, false
		case cl.lp.tls == nil:
			return "-ERR TLS support isn't enabled.\r\n", false, false
		}
		cl.wantTLS = true
		return "+OK Begin TLS negotiation now.\r\n", false, false
	case "USER", "PASS", "AUTH", "APOP":
		cl.bad = 0
		return "-ERR [SYS/TEMP] Authentication is not available yet.\r\n", false, false
	case "XALLOC", "XPROXY":
		if testHooks {
			cl.bad = 0
			return cl.testHook(strings.ToUpper(cmd), args, "+OK\r\n"), false, false
		}
	}
	cl.bad++
	if cl.bad >= 3 {
		return "-ERR Unknown command.\r\n-ERR Too many invalid bad commands.\r\n", false, true
	}
	return "-ERR Unknown command.\r\n", false, false
}
func (pop3) notice(lp *loginProc, r CloseReason) string {
	switch r {
	case CloseEvicted:
		return "-ERR Connection queue full\r\n"
	case CloseTimeout:
		return "-ERR Disconnected for inactivity.\r\n"
	case CloseShutdown:
		return "-ERR Shutting down\r\n"
	case closeInputFull:
		return "-ERR Input buffer full, aborting\r\n"
	}
	return ""
}

// Submission (spec §9.4): 10 bad commands.

type submission struct{}

func (submission) name() string { return "submission" }
func (submission) greeting(lp *loginProc, _ bool) string {
	return "220 " + lp.host + " " + lp.in.Greeting + "\r\n"
}
func (submission) command(cl *client, line string) (string, bool, bool) {
	cmd, _, _ := strings.Cut(line, " ")
	h := cl.lp.host
	switch strings.ToUpper(cmd) {
	case "EHLO":
		return "250-" + h + "\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250 CHUNKING\r\n", false, false
	case "HELO":
		return "250 " + h + "\r\n", false, false
	case "NOOP", "RSET":
		return "250 2.0.0 OK\r\n", false, false
	case "QUIT":
		return "221 2.0.0 " + h + " Bye\r\n", true, false
	case "AUTH", "MAIL", "RCPT", "DATA", "BDAT":
		return "530 5.7.0 Authentication required (not available yet)\r\n", false, false
	}
	cl.bad++
	if cl.bad >= 10 {
		return "421 4.7.0 " + h + " Too many invalid commands.\r\n", false, true
	}
	return "500 5.5.1 Unknown command\r\n", false, false
}
func (submission) notice(lp *loginProc, r CloseReason) string {
	switch r {
	case CloseEvicted:
		return "421 4.3.2 " + lp.host + " Connection queue full\r\n"
	case CloseTimeout:
		return "421 4.4.2 " + lp.host + " Disconnected for inactivity\r\n"
	case CloseShutdown:
		return "421 4.3.2 " + lp.host + " Shutting down\r\n"
	case closeInputFull:
		return "500 5.5.2 Line too long\r\n"
	}
	return ""
}

// ManageSieve (spec §9.4): 3 bad commands.

type sieve struct{}

const sieveCaps = "\"IMPLEMENTATION\" \"loginsvc\"\r\n\"SIEVE\" \"\"\r\n\"SASL\" \"\"\r\n\"VERSION\" \"1.0\"\r\n"

func (sieve) name() string { return "sieve" }
func (sieve) greeting(lp *loginProc, _ bool) string {
	return sieveCaps + "OK \"" + lp.in.Greeting + "\"\r\n"
}
func (sieve) command(cl *client, line string) (string, bool, bool) {
	cmd, _, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "CAPABILITY":
		return sieveCaps + "OK \"Capability completed.\"\r\n", false, false
	case "NOOP":
		return "OK \"NOOP completed.\"\r\n", false, false
	case "LOGOUT":
		return "OK \"Logout completed.\"\r\n", true, false
	case "AUTHENTICATE", "STARTTLS":
		return "NO \"Not available yet.\"\r\n", false, false
	}
	cl.bad++
	if cl.bad >= 3 {
		return "BYE \"Too many invalid MANAGESIEVE commands.\"\r\n", false, true
	}
	return "NO \"Error in MANAGESIEVE command received by server.\"\r\n", false, false
}
func (sieve) notice(lp *loginProc, r CloseReason) string {
	switch r {
	case CloseEvicted:
		return "BYE \"Connection queue full\"\r\n"
	case CloseTimeout:
		return "BYE \"Disconnected for inactivity.\"\r\n"
	case CloseShutdown:
		return "BYE \"Shutting down\"\r\n"
	case closeInputFull:
		return "BYE \"Input buffer full, aborting\"\r\n"
	}
	return ""
}

// testHook implements the test-only commands: XALLOC <MiB> allocates and
// keeps that much memory (vsz_limit tests); XPROXY marks the client as
// proxying (eviction tests before authentication exists); XOPEN <path>
// tries to open a file from inside the login process (TLS key tests) and
// answers "* XOPEN ok" or "* XOPEN <error>" before ok; XADDR answers
// "* XADDR <remote> <local> tls=<yes|no>" before ok: the client's
// addresses as the process sees them and whether a PROXY header said the
// proxy terminated TLS (haproxy tests).
func (cl *client) testHook(cmd, args, ok string) string {
	switch cmd {
	case "XADDR":
		tls := map[bool]string{true: "yes", false: "no"}[cl.haproxyTLS]
		return "* XADDR " + cl.c.RemoteAddr().String() + " " + cl.c.LocalAddr().String() + " tls=" + tls + "\r\n" + ok
	case "XALLOC":
		n := 0
		for _, ch := range strings.TrimSpace(args) {
			if ch >= '0' && ch <= '9' {
				n = n*10 + int(ch-'0')
			}
		}
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			cl.mem = append(cl.mem, b)
		}
		_ = os.Getpid
	case "XPROXY":
		cl.lp.report(msgState, cl.id, uint8(StateProxying))
	case "XOPEN":
		f, err := os.Open(strings.TrimSpace(args))
		if err != nil {
			return "* XOPEN " + err.Error() + "\r\n" + ok
		}
		f.Close()
		return "* XOPEN ok\r\n" + ok
	}
	return ok
}
