package login

import (
	"crypto/tls"
)

// The certificate and key reach a login process in a sealed memfd
// (ipc.LoadKeyMemfd), read before the sandbox; see ipc/keyfd.go.

// serverTLSConfig is a login process's TLS configuration.
func serverTLSConfig(cert tls.Certificate, minVersion uint16) *tls.Config {
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion}
}
