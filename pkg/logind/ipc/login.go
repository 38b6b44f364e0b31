package ipc

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unicode/utf8"
)

// Login reports, login process to supervisor (the admin view: loginctl
// who, procs, login-status):
//
//	'L' id:u64 flags:u8 mpid:u32 rip:16 rport:u16 ulen:u8 user mlen:u8 mech
//	                            client id logged in as user with SASL
//	                            mechanism mech and was handed to the mail
//	                            process mpid (0 if unknown); rip and rport
//	                            (AppendAddr) are its address as the log
//	                            lines give it (that of a PROXY header, or
//	                            forwarded by a trusted peer); flags is
//	                            LoginTLS. Always a packet of its own,
//	                            never in a MsgBatch.
//	'F' id:u64 n:u8             client id failed its nth authentication
//	                            (1, 2, ...); a fixed record (ReportLen),
//	                            alone or in a MsgBatch
//
// The supervisor checks both (ParseLogin here; the order and the ids in
// pkg/logind/master): a login report for a client the process does not
// hold, a second one for the same client, one for a client still being
// checked, an 'F' whose n is not the next, a user that is not printable
// UTF-8 or a mechanism that is not a SASL mechanism name are lies, and
// the process is killed.
const (
	MsgLogin      = 'L'
	MsgAuthFailed = 'F'
)

// LoginTLS is the flag of a login report whose client speaks TLS with
// the login process (implicit TLS or STARTTLS): the process relays it to
// the mail process for the whole session.
const LoginTLS = 1

// Bounds of a login report.
const (
	// MaxLoginUser is the longest user name reported, in bytes; the login
	// process cuts a longer one (at a UTF-8 boundary, see CutUser).
	MaxLoginUser = 255
	// MaxLoginMech is the longest SASL mechanism name (RFC 4422 allows
	// 20 characters).
	MaxLoginMech = 20
	// MaxMailPID bounds the mail process id (Linux's PID_MAX_LIMIT).
	MaxMailPID = 1 << 22
	// loginFixed is the length of a login report without its strings.
	loginFixed = 1 + 8 + 1 + 4 + ConnAddrLen + 1 + 1
)

// Login is one login report.
type Login struct {
	ID      uint64         // the connection's id (as in the connection reports)
	User    string         // the user auth logged in (user=<%u>)
	Mech    string         // the SASL mechanism (method=%m; PLAIN for IMAP LOGIN, POP3 USER/PASS)
	MailPID uint32         // the mail process (mpid=%e); 0: unknown
	Remote  netip.AddrPort // the client's address (rip=%r, rport); the zero AddrPort if unknown
	TLS     bool           // TLS with the login process (implicit or STARTTLS)
}

// AppendLogin appends l's report (MsgLogin); l.User is cut to
// MaxLoginUser bytes, and a bad user or mechanism is sent as it is (the
// supervisor refuses it: the caller passes what auth returned).
func AppendLogin(b []byte, l Login) []byte {
	user := CutUser(l.User)
	flags := byte(0)
	if l.TLS {
		flags |= LoginTLS
	}
	b = append(b, MsgLogin)
	b = binary.LittleEndian.AppendUint64(b, l.ID)
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint32(b, l.MailPID)
	b = AppendAddr(b, l.Remote)
	b = append(append(b, byte(len(user))), user...)
	mech := l.Mech
	if len(mech) > 255 {
		mech = mech[:255] // refused anyway: longer than MaxLoginMech
	}
	return append(append(b, byte(len(mech))), mech...)
}

// CutUser cuts user to at most MaxLoginUser bytes at a UTF-8 boundary.
func CutUser(user string) string {
	if len(user) <= MaxLoginUser {
		return user
	}
	n := MaxLoginUser
	for n > 0 && !utf8.RuneStart(user[n]) {
		n--
	}
	return user[:n]
}

// ParseLogin decodes and checks a login report (the whole packet, type
// byte first): its length must be exactly what its string lengths say,
// the user 1 to MaxLoginUser bytes of UTF-8 without control characters,
// the mechanism a SASL mechanism name (ValidMech), the mail pid at most
// MaxMailPID, and no flag but LoginTLS set. The error says what is
// wrong, for the supervisor's log.
func ParseLogin(b []byte) (Login, error) {
	if len(b) < loginFixed || b[0] != MsgLogin {
		return Login{}, fmt.Errorf("a malformed login report (%d bytes)", len(b))
	}
	var l Login
	l.ID = binary.LittleEndian.Uint64(b[1:])
	flags := b[9]
	l.MailPID = binary.LittleEndian.Uint32(b[10:])
	l.Remote = DecodeAddr(b[14:])
	rest := b[14+ConnAddrLen:]
	ulen := int(rest[0])
	if len(rest) < 1+ulen+1 {
		return Login{}, fmt.Errorf("a malformed login report (%d bytes, user of %d)", len(b), ulen)
	}
	user := rest[1 : 1+ulen]
	rest = rest[1+ulen:]
	mlen := int(rest[0])
	if len(rest) != 1+mlen {
		return Login{}, fmt.Errorf("a malformed login report (%d bytes, user of %d, mechanism of %d)", len(b), ulen, mlen)
	}
	mech := rest[1:]
	switch {
	case flags&^LoginTLS != 0:
		return Login{}, fmt.Errorf("a login report with unknown flags %#x", flags)
	case l.MailPID > MaxMailPID:
		return Login{}, fmt.Errorf("a login report with mail pid %d", l.MailPID)
	case !ValidUser(user):
		return Login{}, fmt.Errorf("a login report with an invalid user (%d bytes %q)", len(user), cutForLog(user))
	case !ValidMech(mech):
		return Login{}, fmt.Errorf("a login report with an invalid mechanism %q", cutForLog(mech))
	}
	l.User, l.Mech, l.TLS = string(user), string(mech), flags&LoginTLS != 0
	return l, nil
}

// cutForLog bounds what of a liar's string goes into the log.
func cutForLog(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// ValidUser reports whether user may be shown: 1 to MaxLoginUser bytes of
// UTF-8 with no control character (C0, DEL, C1), so that printing it
// cannot move a terminal's cursor or forge a line.
func ValidUser(user []byte) bool {
	if len(user) == 0 || len(user) > MaxLoginUser || !utf8.Valid(user) {
		return false
	}
	for _, r := range string(user) {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// ValidMech reports whether mech is a SASL mechanism name (RFC 4422
// section 3.1): 1 to MaxLoginMech characters of A-Z, 0-9, '-' and '_'.
func ValidMech(mech []byte) bool {
	if len(mech) == 0 || len(mech) > MaxLoginMech {
		return false
	}
	for _, c := range mech {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
