// Package access asks a login process's login_access_sockets about a
// client, in order, as Dovecot's login processes do
// (src/login-common/access-lookup.c; docs/loginsvc.md), and words the
// outcome in Dovecot's log lines.
package access

import (
	"context"
	"errors"

	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// Check asks every entry of sockets in order about client socket c for
// service (imap, pop3, submission, sieve), each within timeout, and
// returns ipc.CloseNormal when all of them allowed the client. Otherwise
// it returns why the client is closed: ipc.CloseRefused when a socket
// said no (or answered badly, or not in time: "Client refused
// (rip=...)"), ipc.CloseAccessError when one could not be asked at all
// (connect or fd_send failed: tcpwrapd not running, or this process out
// of descriptors). Dovecot logs the latter without the client's address
// and closes the client just the same; here the line ends with
// "(rip=...)" and the supervisor counts it apart from the refusals,
// since no rule refused the client. rip is the client's address as
// logged; logf receives each line with its level (INFO, ERROR).
func Check(sockets []string, service string, c syscall.Conn, timeout time.Duration, rip string, logf func(level, format string, args ...any)) ipc.CloseReason {
	for _, entry := range sockets {
		v, err := accessclient.Ask(context.Background(), entry, service, c, timeout)
		if v == accessclient.Allowed {
			continue
		}
		switch {
		case errors.Is(err, accessclient.ErrInvalidInput):
			logf("ERROR", "access(%s): Invalid input", entry)
		case errors.Is(err, accessclient.ErrTimeout):
			logf("ERROR", "access(%s): Timed out while waiting for reply", entry)
		case errors.Is(err, accessclient.ErrNotAsked): // connect(...) or fd_send(...) failed
			logf("ERROR", "%v (rip=%s)", err, rip)
			return ipc.CloseAccessError
		case err != nil:
			logf("ERROR", "%v", err) // read(SOCKET) failed, then refused
		}
		logf("INFO", "access(%s): Client refused (rip=%s)", entry, rip)
		return ipc.CloseRefused
	}
	return ipc.CloseNormal
}
