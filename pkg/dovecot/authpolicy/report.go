package authpolicy

import (
	"context"
	"net/netip"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Report is one report request, as Server.OnReport receives it: Dovecot
// sends one after every authentication.
type Report struct {
	// Protocol is the "protocol" attribute (imap, pop3, ...).
	Protocol string
	// Remote is the client address of "remote", IPv4-mapped addresses
	// unmapped; invalid when the attribute is absent or not an address.
	Remote netip.Addr
	// Login is the user name the client asked for.
	Login string
	// Pwhash is Dovecot's hash of nonce, login and password; never
	// logged. The same password for the same login gives the same hash
	// (for one auth_policy_hash_nonce).
	Pwhash Secret
	// Success is whether the authentication succeeded.
	Success bool
	// PolicyReject is whether the policy server's allow answer refused it.
	PolicyReject bool
	// FailType is 2.4's fail_type ("" from 2.3).
	FailType string
	// SessionID is Dovecot's session id, for logs.
	SessionID string
}

// PasswordFailure reports whether r is a failed password guess, the kind
// failure-driven bans count: not a success, not refused by the policy
// server itself (the password was never checked), and from 2.4 a
// fail_type of "credentials" (wrong password) or "account" (no such user),
// not "expired", "disabled", "policy" or "internal" (a passdb that is down
// is no guess). 2.3 sends no fail_type: every failure counts.
func (r *Report) PasswordFailure() bool {
	if r.Success || r.PolicyReject {
		return false
	}
	switch r.FailType {
	case "", "credentials", "account":
		return true
	}
	return false
}

// report turns a report request into a Report; ok is false when the body
// has no "success" (it is no report).
func (r *Request) report() (Report, bool) {
	if r.Success == nil {
		return Report{}, false
	}
	rep := Report{Protocol: r.Protocol, Login: r.Login, Pwhash: r.Pwhash, Success: *r.Success,
		FailType: r.FailType, SessionID: r.SessionID}
	if r.PolicyReject != nil {
		rep.PolicyReject = *r.PolicyReject
	}
	if a, err := netip.ParseAddr(r.Remote); err == nil {
		rep.Remote = a.Unmap().WithZone("")
	}
	return rep, true
}

// BannedReason begins the Reason of a Decision made by Server.Banned.
const BannedReason = "banned"

// DefaultBanMessage is the msg of a denial by Server.Banned when
// Server.BanMessage is empty.
const DefaultBanMessage = "Too many failed logins from your address; try again later."

// banned asks s.Banned about hreq's client; ok is true with the denial's
// reply and decision when it is banned.
func (s *Server) banned(hreq *hostsrules.Request) (Reply, hostsrules.Decision, bool) {
	if s.Banned == nil || !hreq.Client.Addr.Addr().IsValid() {
		return Reply{}, hostsrules.Decision{}, false
	}
	reason, banned := s.Banned(hreq.Client.Addr.Addr())
	if !banned {
		return Reply{}, hostsrules.Decision{}, false
	}
	msg := s.BanMessage
	if msg == "" {
		msg = DefaultBanMessage
	}
	r := BannedReason
	if reason != "" {
		r += ": " + reason
	}
	return Reply{Status: -1, Msg: msg}, hostsrules.Decision{Verdict: hostsrules.Denied, Reason: r}, true
}

// onReport hands a report request to s.OnReport.
func (s *Server) onReport(ctx context.Context, req *Request) {
	if s.OnReport == nil {
		return
	}
	rep, ok := req.report()
	if !ok {
		s.log.Warn("auth policy: report without success attribute ignored", "session", req.SessionID)
		return
	}
	s.OnReport(ctx, rep)
}
