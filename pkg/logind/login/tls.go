package login

import (
	"crypto/tls"
)

// The certificate and key reach a login process in a sealed memfd
// (ipc.LoadKeyMemfd), read before the sandbox; see ipc/keyfd.go.

// serverTLSConfig is a login process's TLS configuration: the lowest
// version minVersion (0: TLS 1.2) and the key exchanges curves (nil:
// Go's defaults).
func serverTLSConfig(cert tls.Certificate, minVersion uint16, curves []tls.CurveID) *tls.Config {
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion, CurvePreferences: curves}
}

// TLSRequired reports whether the client must start TLS before it may
// authenticate: ssl = required and the connection is not secured
// (submission-login's tls_required: commands other than EHLO, STARTTLS,
// NOOP and QUIT are refused, and EHLO lists no AUTH).
func (cl *Client) TLSRequired() bool { return cl.lp.in.SSL == "required" && !cl.Secured() }
