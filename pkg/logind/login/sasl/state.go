package sasl

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
)

// State is one client's authentication history, what Dovecot's struct
// client keeps to word the disconnect reason
// (client_get_extra_disconnect_reason).
type State struct {
	// AuthReady: the client was told auth is ready (greeted).
	AuthReady bool
	// Attempts and Successes count authentications started and OKs.
	Attempts, Successes int
	// FirstStarted is when the first authentication began.
	FirstStarted time.Time
	// LastFail is the failure code of the last attempt ("" none).
	LastFail string
	// Waiting: a challenge was sent and the client has not answered;
	// Requesting: auth has not answered; Finishing: auth said OK and
	// the hand-off is under way.
	Waiting, Requesting, Finishing bool
	// Aborted: the client cancelled an authentication; CommFail: the
	// connection to auth was lost during one.
	Aborted, CommFail bool
	// User is the user name as the client or auth last gave it;
	// Mech the mechanism, upper case.
	User, Mech string
}

// Begin records the start of an authentication with mech.
func (s *State) Begin(mech string, now time.Time) {
	s.Attempts++
	if s.FirstStarted.IsZero() {
		s.FirstStarted = now
	}
	s.Mech = strings.ToUpper(mech)
	s.Requesting, s.Waiting, s.Finishing = true, false, false
}

// Reply records the user= of an OK or FAIL reply.
func (s *State) Reply(r *authclient.Reply) {
	if r != nil && r.User != "" {
		s.User = r.User
	}
}

// Done records the end of an authentication that did not log in.
func (s *State) Done(code string) {
	s.Requesting, s.Waiting, s.Finishing = false, false, false
	s.LastFail = code
}

// ExtraReason is the parenthesised reason Dovecot adds to a
// "Disconnected: ..." line of a client created at created and greeted
// (bannerSent) or not.
func (s *State) ExtraReason(created, now time.Time, bannerSent bool) string {
	secs := func(since time.Time) int64 {
		if since.IsZero() {
			return 0
		}
		return now.Unix() - since.Unix()
	}
	auth := secs(s.FirstStarted)
	switch {
	case !s.AuthReady:
		return fmt.Sprintf("(disconnected before auth was ready, waited %d secs)", secs(created))
	case s.Attempts == 0 && !bannerSent:
		return ""
	case s.Attempts == 0:
		return fmt.Sprintf("(no auth attempts in %d secs)", secs(created))
	case s.Waiting && s.Attempts == 1:
		return fmt.Sprintf("(client didn't finish SASL auth, waited %d secs)", auth)
	case s.Requesting && s.Attempts == 1:
		return fmt.Sprintf("(disconnected while authenticating, waited %d secs)", auth)
	case s.Finishing && s.Attempts == 1:
		return fmt.Sprintf("(disconnected while finishing login, waited %d secs)", auth)
	case s.Aborted && s.Attempts == 1:
		return "(aborted authentication)"
	case s.CommFail:
		return "(auth process communication failure)"
	case s.Successes > 0:
		return fmt.Sprintf("(internal failure, %d successful auths)", s.Successes)
	}
	switch s.LastFail {
	case authclient.CodeAuthzFailed:
		return fmt.Sprintf("(authorization failed, %d attempts in %d secs)", s.Attempts, auth)
	case authclient.CodeTempFail:
		return "(auth service reported temporary failure)"
	case authclient.CodeUserDisabled:
		return "(user disabled)"
	case authclient.CodePassExpired:
		return "(password expired)"
	case authclient.CodeInvalidBase64:
		return "(sent invalid base64 in response)"
	case CodeLoginDisabled:
		return "(login disabled)"
	case CodeMechInvalid:
		return "(tried to use unsupported auth mechanism)"
	case CodeMechSSLRequired:
		return "(tried to use disallowed plaintext auth)"
	}
	return fmt.Sprintf("(auth failed, %d attempts in %d secs)", s.Attempts, auth)
}

// Elements are the values of a login log line (Dovecot's
// login_log_format_elements: "user=<%u> method=%m rip=%r lip=%l
// mpid=%e %c session=<%{session}>").
type Elements struct {
	// User is %u, Mech %m (left out when ""), RemoteIP %r, LocalIP %l.
	User, Mech, RemoteIP, LocalIP string
	// MailPID is %e, the mail process's pid (0: unknown, not logged).
	MailPID uint32
	// Conn is "TLS", "secured" or "".
	Conn string
	// Session is the login's session id (%{session}, base64).
	Session string
}

// String joins the elements as Dovecot does: ", " between them, empty
// ones left out except user=<>. It makes one allocation, the string
// (a login process writes one such line for every login and every
// disconnect: bench/README.md, "Hand-off").
func (e Elements) String() string {
	n := len("user=<>, ") + len(e.User) + len("rip=, lip=") + len(e.RemoteIP) + len(e.LocalIP) +
		len(", session=<>") + len(e.Session)
	if e.Mech != "" {
		n += len("method=, ") + len(e.Mech)
	}
	var pid [10]byte
	p := pid[:0]
	if e.MailPID != 0 {
		p = strconv.AppendUint(p, uint64(e.MailPID), 10)
		n += len(", mpid=") + len(p)
	}
	if e.Conn != "" {
		n += len(", ") + len(e.Conn)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString("user=<")
	b.WriteString(e.User)
	b.WriteString(">, ")
	if e.Mech != "" {
		b.WriteString("method=")
		b.WriteString(e.Mech)
		b.WriteString(", ")
	}
	b.WriteString("rip=")
	b.WriteString(e.RemoteIP)
	b.WriteString(", lip=")
	b.WriteString(e.LocalIP)
	if len(p) > 0 {
		b.WriteString(", mpid=")
		b.Write(p)
	}
	if e.Conn != "" {
		b.WriteString(", ")
		b.WriteString(e.Conn)
	}
	b.WriteString(", session=<")
	b.WriteString(e.Session)
	b.WriteString(">")
	return b.String()
}
