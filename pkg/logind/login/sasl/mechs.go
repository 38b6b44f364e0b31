package sasl

import (
	"encoding/base64"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
)

// Policy is what decides which mechanisms a client may use now.
type Policy struct {
	// Secured: the connection is secured (TLS, trusted, local).
	Secured bool
	// AllowCleartext: plaintext authentication is allowed without a
	// secured connection (disable_plaintext_auth = no).
	AllowCleartext bool
	// SSLRequired: ssl = required.
	SSLRequired bool
	// NoAnonymous: the protocol refuses anonymous mechanisms (Dovecot's
	// anonymous_login_acceptable is false for submission and
	// ManageSieve).
	NoAnonymous bool
}

// PlaintextAllowed is Dovecot's client_check_plaintext_auth without its
// side effects.
func (p Policy) PlaintextAllowed() bool {
	return p.Secured || (p.AllowCleartext && !p.SSLRequired)
}

// Advertised lists the mechanisms of mechs a client may be offered, as
// sasl_server_get_advertised_mechs does: none before TLS with ssl =
// required, never private ones, plaintext ones only when secured or
// allowed.
func Advertised(mechs []authclient.Mech, p Policy) []string {
	if !p.Secured && p.SSLRequired {
		return nil
	}
	var out []string
	for _, m := range mechs {
		if m.Flags&authclient.MechPrivate != 0 || (p.NoAnonymous && m.Flags&authclient.MechAnonymous != 0) {
			continue
		}
		if p.Secured || p.AllowCleartext || m.Flags&authclient.MechPlaintext == 0 {
			out = append(out, m.Name)
		}
	}
	return out
}

// Check is sasl_server_auth_begin's check of the mechanism the client
// named: the mechanism as auth names it, or a refusal (MechInvalid for
// an unknown or private one, MechSSLRequired for a plaintext one that
// is not allowed) with its text and code.
func Check(mechs []authclient.Mech, name string, p Policy) (mech string, v Verdict, ok bool) {
	for _, m := range mechs {
		if !strings.EqualFold(m.Name, name) {
			continue
		}
		if m.Flags&authclient.MechPrivate != 0 || (p.NoAnonymous && m.Flags&authclient.MechAnonymous != 0) {
			break
		}
		if !p.Secured && !p.AllowCleartext && m.Flags&authclient.MechPlaintext != 0 {
			return "", Verdict{Result: MechSSLRequired, Text: PlaintextMechText, Code: CodeMechSSLRequired}, false
		}
		return m.Name, Verdict{}, true
	}
	return "", Verdict{Result: MechInvalid, Text: UnsupportedMechText, Code: CodeMechInvalid}, false
}

// PlainResponse is the PLAIN initial response for user and pass, base64
// ("\0user\0pass": no authorization identity).
func PlainResponse(user, pass string) string {
	b := make([]byte, 0, 2+len(user)+len(pass))
	b = append(b, 0)
	b = append(b, user...)
	b = append(b, 0)
	b = append(b, pass...)
	return base64.StdEncoding.EncodeToString(b)
}
