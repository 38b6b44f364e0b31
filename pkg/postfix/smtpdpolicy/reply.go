package smtpdpolicy

import (
	"fmt"
	"strings"
)

// ActionDunno is the action of a grant: "no opinion", so that Postfix
// goes on with the rest of the restriction list. tcpwrapd never answers
// OK, which would skip the restrictions after check_policy_service
// (permit_mynetworks, reject_unauth_destination, ...).
const ActionDunno = "DUNNO"

// DefaultDenyMessage is the text of a denial whose rule has no banners
// option (or whose banner file is missing or empty) when
// Server.DenyMessage is empty.
const DefaultDenyMessage = "Access denied"

// maxText bounds the text of a REJECT action in bytes: Postfix puts it
// after "554 5.7.1 <name[addr]>: Client host rejected: " on one SMTP
// reply line (RFC 5321: 512 bytes at most).
const maxText = 256

// CheckRejectCode reports whether code is a valid Server.RejectCode: ""
// (the action REJECT), or a three-digit SMTP reply code from 400 to 599,
// optionally followed by one space and an enhanced status code of the
// same class ("521", "521 5.7.1", "450 4.7.1"). The error says why not.
// It is safe for concurrent use.
func CheckRejectCode(code string) error {
	if code == "" {
		return nil
	}
	reply, dsn, hasDSN := strings.Cut(code, " ")
	if len(reply) != 3 || (reply[0] != '4' && reply[0] != '5') || !digits(reply[1:]) {
		return fmt.Errorf("reject code %q: want a reply code from 400 to 599", code)
	}
	if !hasDSN {
		return nil
	}
	parts := strings.Split(dsn, ".")
	if len(parts) != 3 || parts[0] != reply[:1] || len(parts[1]) > 3 || len(parts[2]) > 3 || !digits(parts[1]) || !digits(parts[2]) {
		return fmt.Errorf("reject code %q: want an enhanced status code %s.X.Y after the reply code", code, reply[:1])
	}
	return nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// denyAction returns the action of a denial with text: "REJECT text"
// when code is "", else "code text" (code checked by CheckRejectCode).
// text is made ASCII (other characters become '?'; an SMTP reply without
// SMTPUTF8 is ASCII) and cut to maxText bytes.
func denyAction(code, text string) string {
	var b strings.Builder
	if code == "" {
		code = "REJECT"
	}
	b.Grow(len(code) + 1 + min(len(text), maxText))
	b.WriteString(code)
	b.WriteByte(' ')
	n := 0
	for _, r := range text {
		if n == maxText {
			break
		}
		if r >= 0x80 {
			r = '?'
		}
		b.WriteByte(byte(r))
		n++
	}
	return strings.TrimRight(b.String(), " ")
}

// AppendReply appends the reply block for action to b: "action=" action
// "\n\n", the bytes the Server writes.
func AppendReply(b []byte, action string) []byte {
	b = append(b, "action="...)
	b = append(b, action...)
	return append(b, '\n', '\n')
}
