package login

import (
	"crypto/tls"
)

// TLS in loginsvc, as in Dovecot (spec §6.3): the supervisor (root) has
// the certificate and key in memory (the "<file" values of ssl_cert and
// ssl_key, read by the configuration parser as root). For each login
// process it writes them into a fresh memfd (memfd_create, no name in any
// file system), seals it (F_SEAL_WRITE, F_SEAL_SHRINK, F_SEAL_GROW,
// F_SEAL_SEAL) and sends it with the settings over the control socket
// (SCM_RIGHTS), before the process exists; the process reads it with
// pread, parses it with tls.X509KeyPair, wipes the PEM bytes and closes
// the memfd, all before it chroots and drops to the login user. The key
// then exists only in that process's memory: never in the chroot, never
// in an open descriptor.

// serverTLSConfig is a login process's TLS configuration.
func serverTLSConfig(cert tls.Certificate, minVersion uint16) *tls.Config {
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion}
}
