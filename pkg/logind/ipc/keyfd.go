package ipc

import (
	"crypto/tls"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// TLS in loginsvc, as in Dovecot (docs/loginsvc.md, "Where the key lives,
// and who can read it"): the supervisor (root) has
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

// tlsSeals are the seals a key memfd must carry: nobody can change its
// contents or size, or remove the seals.
const tlsSeals = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// maxKeyMaterial bounds what a login process reads from the memfd.
const maxKeyMaterial = 1 << 20

// NewKeyMemfd returns a sealed, close-on-exec memfd holding cert followed
// by key (the caller passes len(cert) along), to be sent to one login
// process and closed by the caller. Nothing of it is ever on disk.
func NewKeyMemfd(cert, key string) (int, error) {
	fd, err := unix.MemfdCreate("loginsvc-tls", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	buf := make([]byte, 0, len(cert)+len(key))
	buf = append(append(buf, cert...), key...)
	defer clear(buf)
	for b := buf; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("memfd write: %w", err)
		}
		b = b[n:]
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, tlsSeals); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("memfd seal: %w", err)
	}
	return fd, nil
}

// LoadKeyMemfd reads the certificate (the first certLen bytes) and key
// from a memfd made by NewKeyMemfd, checks its seals, wipes the PEM text
// and closes fd in every case. It returns the parsed key pair.
func LoadKeyMemfd(fd, certLen int) (tls.Certificate, error) {
	defer unix.Close(fd)
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key memfd: %w", err)
	}
	if seals&tlsSeals != tlsSeals {
		return tls.Certificate{}, fmt.Errorf("key memfd: not sealed (seals %#x)", seals)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return tls.Certificate{}, fmt.Errorf("key memfd: %w", err)
	}
	if st.Size > maxKeyMaterial || certLen < 0 || int64(certLen) > st.Size {
		return tls.Certificate{}, fmt.Errorf("key memfd: bad size %d (certificate %d)", st.Size, certLen)
	}
	buf := make([]byte, st.Size)
	defer clear(buf)
	for off := 0; off < len(buf); {
		n, err := unix.Pread(fd, buf[off:], int64(off)) // pread: the offset is not shared with anyone
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("key memfd: %w", err)
		}
		if n == 0 {
			return tls.Certificate{}, errors.New("key memfd: short read")
		}
		off += n
	}
	cert, err := tls.X509KeyPair(buf[:certLen], buf[certLen:])
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ssl_cert, ssl_key: %w", err)
	}
	return cert, nil
}
