package logind

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type netipPrefix = netip.Prefix

// MaxInputLine is the size of a client's input buffer in bytes (Dovecot's
// LOGIN_MAX_INBUF_SIZE, 1026): the longest POP3, submission or
// ManageSieve command line, CRLF included, and the longest piece of an
// IMAP command (tag, name, atom, quoted string, literal octets; a
// command with literals may be longer, up to 8192 bytes), before the
// client is dropped with "Input buffer full".
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
	// greetFailed: writing that greeting failed (the client is gone).
	greetFailed bool
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

	out string     // corked replies (queue, flush)
	bad int        // bad commands (cumulative or consecutive, per protocol)
	ir  imapReader // IMAP's command reader (imapcmd.go), set at the first command
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

// maxCorked is how many bytes of replies are held back at most (Dovecot's
// login output buffer).
const maxCorked = 4096

// queue adds replies to the output, which is corked while the client's
// input is being processed, as Dovecot's is: the replies to pipelined
// commands go out in one write, before the process waits for more input
// (flush, called by the input buffer), with a notice, or when more than
// maxCorked bytes are waiting. One write per batch also keeps a reply
// from being held back by Nagle's algorithm behind an earlier one and
// then lost when the process closes a socket with input unread (a
// reset).
func (cl *client) queue(s string) error {
	if cl.out == "" {
		cl.out = s
	} else {
		cl.out += s
	}
	if len(cl.out) > maxCorked {
		return cl.flush()
	}
	return nil
}

// flush writes the queued replies; an error is a *writeError.
func (cl *client) flush() error {
	if cl.out == "" {
		return nil
	}
	err := cl.write(cl.out)
	cl.out = ""
	if err != nil {
		return &writeError{err}
	}
	return nil
}

// writeError is a failed write to the client.
type writeError struct{ err error }

func (e *writeError) Error() string { return "write: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// serve runs the client: access check, greeting, commands, until it
// leaves or is dropped. The pre-login deadline is absolute from accept.
// A client that passed the checks (haproxy header, access sockets) is
// logged when it goes, as Dovecot's login processes do (disconnect.go).
func (cl *client) serve() {
	reason := CloseNormal
	why := "" // Dovecot's disconnect reason; "" logs nothing
	defer func() {
		if why != "" {
			// The addresses are needed after Close, which ends the
			// socket before the line is written.
			cl.c.RemoteAddr()
			cl.c.LocalAddr()
		}
		cl.conn.Close()
		if why != "" {
			cl.logDisconnect(why)
		}
		cl.lp.finished(cl, reason)
	}()
	if cl.greetFailed {
		reason, why = CloseError, "Connection closed"
		return
	}
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
			reason, why = r, closeWhy(r)
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
			reason, why = CloseError, "Connection closed"
			return
		}
	}
	cl.c.SetReadDeadline(deadline)
	if _, k := cl.killedReason(); k { // killed while greeting
		cl.c.SetReadDeadline(time.Unix(1, 0))
	}
	in := newInbuf(cl.conn)
	in.out = cl
	for {
		reply, end, err := cl.lp.proto.next(cl, in)
		if qerr := cl.queue(reply); qerr != nil && err == nil {
			err = qerr
		}
		if end.why != "" {
			reason, why = end.reason, end.why
			if cl.flush() != nil {
				why = "Connection closed"
			}
			return
		}
		if err != nil {
			reason, why = cl.inputFailure(err)
			return
		}
		if cl.wantTLS {
			cl.wantTLS = false
			if err := cl.flush(); err != nil {
				reason, why = CloseError, "Connection closed"
				return
			}
			// Plaintext pipelined after STARTTLS is dropped, never run
			// as if it had come over TLS (the CVE-2011-0411 class).
			in.discard()
			if err := cl.handshake(deadline); err != nil {
				reason = cl.tlsFailure(err)
				return
			}
			cl.c.SetReadDeadline(deadline)
			if _, k := cl.killedReason(); k {
				cl.c.SetReadDeadline(time.Unix(1, 0))
			}
			in.src = cl.conn
		}
	}
}

// inputFailure handles an input error: the queued replies and the
// notice to the client (if any) are written, and the close reason and
// Dovecot's disconnect reason are returned.
func (cl *client) inputFailure(err error) (CloseReason, string) {
	defer cl.flush()
	if r, k := cl.killedReason(); k {
		cl.queue(cl.lp.proto.notice(cl.lp, r))
		return r, closeWhy(r)
	}
	var ne net.Error
	var we *writeError
	switch {
	case errors.As(err, &we):
		return CloseError, "Connection closed"
	case errors.Is(err, errInputFull):
		cl.queue(cl.lp.proto.notice(cl.lp, closeInputFull))
		return CloseError, "Input buffer full"
	case errors.Is(err, errAuthTooLarge):
		return CloseError, "Authentication response too large"
	case errors.As(err, &ne) && ne.Timeout():
		cl.queue(cl.lp.proto.notice(cl.lp, CloseTimeout))
		return CloseTimeout, closeWhy(CloseTimeout)
	case errors.Is(err, io.EOF):
		return CloseNormal, "Connection closed"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return CloseNormal, "Connection closed: read(size=" + strconv.Itoa(MaxInputLine) + ") failed: " + capitalize(errno.Error())
	}
	return CloseNormal, "Connection closed"
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
// handshaking: ...") and returns the close reason. A client killed in
// its handshake (evicted, shut down) gets the usual disconnect line.
func (cl *client) tlsFailure(err error) CloseReason {
	if r, k := cl.killedReason(); k {
		cl.logDisconnect(closeWhy(r))
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
	// next reads one command from in and runs it. reply is written to
	// the client (also when err is not nil); end, if set, ends the
	// session after the reply; err is an input error (end of stream, a
	// deadline, errInputFull, ...).
	next(cl *client, in *inbuf) (reply string, end ending, err error)
	notice(lp *loginProc, r CloseReason) string
}

// ending says why a command ends the session: why is Dovecot's
// disconnect reason (logged), reason what the supervisor is told. The
// zero ending goes on.
type ending struct {
	why    string
	reason CloseReason
}

// endLogout ends a session at the client's LOGOUT or QUIT.
var endLogout = ending{"Aborted login by logging out", CloseNormal}

// lineCommand reads one line (the line protocols: POP3, submission,
// ManageSieve) and runs it with command.
func lineCommand(cl *client, in *inbuf, command func(*client, string) (string, ending)) (string, ending, error) {
	line, err := in.line()
	if err != nil {
		return "", ending{}, err
	}
	reply, end := command(cl, string(bytes.TrimRight(line, "\r\n")))
	return reply, end, nil
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

// imapUnavailable answers LOGIN and AUTHENTICATE until authentication
// exists.
const imapUnavailable = " NO [UNAVAILABLE] Authentication is not available yet.\r\n"

// next reads a command with the client's IMAP reader (imapcmd.go) and
// runs it.
func (imap) next(cl *client, in *inbuf) (string, ending, error) {
	if cl.ir.in != in {
		cl.ir = imapReader{in: in, cont: cl}
	}
	cmd, ok, err := cl.ir.read()
	if !ok {
		return "", ending{}, err
	}
	reply, end := cl.imapRun(&cmd)
	return reply, end, err
}

// continueLiteral asks for a synchronizing literal's octets (with the
// replies queued before it).
func (cl *client) continueLiteral() error {
	cl.queue("+ OK\r\n")
	return cl.flush()
}

// imapRun answers one command as Dovecot's imap-login does (spec §9.2),
// authentication apart. Arguments are never echoed; the tag only if
// valid.
func (cl *client) imapRun(cmd *imapCommand) (string, ending) {
	tag := cmd.tag
	switch {
	case tag == "":
		return cl.imapBad("*")
	case cmd.err != nil && cmd.err.fatal:
		return "* BYE " + cmd.err.msg + "\r\n", ending{cmd.err.msg, CloseError}
	case cmd.err != nil:
		return tag + " BAD " + cmd.err.msg + "\r\n", ending{}
	}
	switch name := strings.ToUpper(cmd.name); name {
	case "CAPABILITY":
		return "* CAPABILITY " + imapCapsFor(cl.lp, cl.tlsActive) + "\r\n" + tag + " OK Pre-login capabilities listed, post-login capabilities have more.\r\n", ending{}
	case "NOOP":
		return tag + " OK NOOP completed.\r\n", ending{}
	case "LOGOUT":
		return "* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n", endLogout
	case "ID":
		if cmd.idInvalid {
			return tag + " BAD Invalid ID parameters\r\n", ending{}
		}
		return "* ID NIL\r\n" + tag + " OK ID completed.\r\n", ending{}
	case "ENABLE":
		return "* ENABLED\r\n" + tag + " OK ENABLE ignored in non-authenticated state.\r\n", ending{}
	case "STARTTLS":
		switch {
		case cl.tlsActive:
			return tag + " BAD TLS is already active.\r\n", ending{}
		case cl.lp.tls == nil:
			return tag + " BAD TLS support isn't enabled.\r\n", ending{}
		}
		cl.wantTLS = true
		return tag + " OK Begin TLS negotiation now.\r\n", ending{}
	case "LOGIN":
		// Dovecot: exactly two astrings, else a bad command.
		if len(cmd.args) == 2 && cmd.args[0].astring() && cmd.args[1].astring() {
			return tag + imapUnavailable, ending{}
		}
	case "AUTHENTICATE":
		// A mechanism name is needed, else a bad command.
		if mech, _, _ := strings.Cut(cmd.raw, " "); mech != "" {
			return tag + imapUnavailable, ending{}
		}
	case "XALLOC", "XPROXY", "XOPEN", "XADDR", "XORPHAN":
		if testHooks {
			arg := ""
			if len(cmd.args) > 0 {
				arg = cmd.args[0].str
			}
			return cl.testHook(name, arg, tag+" OK\r\n"), ending{}
		}
		fallthrough
	default:
		if strings.EqualFold(tag, "LOGIN") { // not counted
			return tag + " BAD First parameter in line is IMAP's command tag, not the command name. Add that before the command, like: a login user pass\r\n", ending{}
		}
	}
	return cl.imapBad(tag)
}

// imapBad counts a bad command: BAD, or at the third (cumulative) BYE.
func (cl *client) imapBad(tag string) (string, ending) {
	cl.bad++
	if cl.bad >= IMAPMaxBadCommands {
		return "* BYE Too many invalid IMAP commands.\r\n", ending{"Too many invalid commands", CloseError}
	}
	return tag + " BAD Error in IMAP command received by server.\r\n", ending{}
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
func (pop3) next(cl *client, in *inbuf) (string, ending, error) {
	return lineCommand(cl, in, pop3Command)
}

func pop3Command(cl *client, line string) (string, ending) {
	cmd, args, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "CAPA":
		cl.bad = 0
		stls := ""
		if cl.lp.tls != nil && !cl.tlsActive {
			stls = "STLS\r\n"
		}
		return "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n" + stls + ".\r\n", ending{}
	case "QUIT":
		return "+OK Logging out\r\n", endLogout
	case "STLS":
		cl.bad = 0
		switch {
		case cl.tlsActive:
			return "-ERR TLS is already active.\r\n", ending{}
		case cl.lp.tls == nil:
			return "-ERR TLS support isn't enabled.\r\n", ending{}
		}
		cl.wantTLS = true
		return "+OK Begin TLS negotiation now.\r\n", ending{}
	case "USER", "PASS", "AUTH", "APOP":
		cl.bad = 0
		return "-ERR [SYS/TEMP] Authentication is not available yet.\r\n", ending{}
	case "XALLOC", "XPROXY":
		if testHooks {
			cl.bad = 0
			return cl.testHook(strings.ToUpper(cmd), args, "+OK\r\n"), ending{}
		}
	}
	cl.bad++
	if cl.bad >= 3 {
		// Dovecot 2.3.19.1 logs "Disconnected: Disconnected: Too many
		// bad commands", the reason with its own prefix.
		return "-ERR Unknown command.\r\n-ERR Too many invalid bad commands.\r\n", ending{"Disconnected: Too many bad commands", CloseError}
	}
	return "-ERR Unknown command.\r\n", ending{}
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
func (submission) next(cl *client, in *inbuf) (string, ending, error) {
	return lineCommand(cl, in, submissionCommand)
}

func submissionCommand(cl *client, line string) (string, ending) {
	cmd, _, _ := strings.Cut(line, " ")
	h := cl.lp.host
	switch strings.ToUpper(cmd) {
	case "EHLO":
		return "250-" + h + "\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250 CHUNKING\r\n", ending{}
	case "HELO":
		return "250 " + h + "\r\n", ending{}
	case "NOOP", "RSET":
		return "250 2.0.0 OK\r\n", ending{}
	case "QUIT":
		return "221 2.0.0 " + h + " Bye\r\n", endLogout
	case "AUTH", "MAIL", "RCPT", "DATA", "BDAT":
		return "530 5.7.0 Authentication required (not available yet)\r\n", ending{}
	}
	cl.bad++
	if cl.bad >= 10 {
		return "421 4.7.0 " + h + " Too many invalid commands.\r\n", ending{"Too many invalid commands", CloseError}
	}
	return "500 5.5.1 Unknown command\r\n", ending{}
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
func (sieve) next(cl *client, in *inbuf) (string, ending, error) {
	return lineCommand(cl, in, sieveCommand)
}

func sieveCommand(cl *client, line string) (string, ending) {
	cmd, _, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "CAPABILITY":
		return sieveCaps + "OK \"Capability completed.\"\r\n", ending{}
	case "NOOP":
		return "OK \"NOOP completed.\"\r\n", ending{}
	case "LOGOUT":
		return "OK \"Logout completed.\"\r\n", endLogout
	case "AUTHENTICATE", "STARTTLS":
		return "NO \"Not available yet.\"\r\n", ending{}
	}
	cl.bad++
	if cl.bad >= 3 {
		return "BYE \"Too many invalid MANAGESIEVE commands.\"\r\n", ending{"Too many invalid commands", CloseError}
	}
	return "NO \"Error in MANAGESIEVE command received by server.\"\r\n", ending{}
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
// proxy terminated TLS (haproxy tests); XORPHAN makes the process ignore
// the end of its control socket, so that only the parent-death signal
// ends it when the supervisor dies (Pdeathsig tests).
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
	case "XORPHAN":
		cl.lp.orphan.Store(true)
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
