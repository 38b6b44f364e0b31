package login

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/proxyhdr"
)

// HAProxy's PROXY protocol on haproxy = yes listeners, as Dovecot 2.3
// does it (src/lib-master/master-service-haproxy.c; docs/loginsvc.md,
// "HAProxy (PROXY protocol)"): before the access checks and before any
// byte goes out, the peer (the proxy) must be in
// haproxy_trusted_networks, then a v1 or v2 header must arrive within
// haproxy_timeout (read by package proxyhdr). On success the client's
// remote and local addresses are the header's; on any failure the
// connection is closed without a byte written.

// proxyHeader is the first step for a client of a haproxy = yes
// listener: the peer must be in haproxy_trusted_networks, then the PROXY
// header is read, within haproxy_timeout from accept (and the pre-login
// deadline), and the client's addresses become the header's. Nothing is
// written to the client. On failure (a kill included) it logs Dovecot's line (with the
// proxy's address as rip) and returns why the client is closed; ok
// reports success.
func (cl *Client) proxyHeader(deadline time.Time) (reason ipc.CloseReason, ok bool) {
	peer := remoteIP(cl.c)
	if !inNetworks(cl.lp.in.HAProxyTrusted, remoteAddr(cl.c)) {
		logLine("WARN", "haproxy: Client not trusted (rip=%s)", peer)
		return ipc.CloseRefused, false
	}
	if d := cl.accepted.Add(cl.lp.in.HAProxyTimeout); d.Before(deadline) {
		deadline = d
	}
	cl.c.SetReadDeadline(deadline)
	if r, k := cl.killedReason(); k { // a kill before SetReadDeadline must not be lost
		return cl.proxyKilled(r, peer)
	}
	h, err := proxyhdr.Read(cl.c)
	var p proxyhdr.Proxied
	if err == nil {
		p, err = proxyhdr.Interpret(h)
	}
	if err != nil {
		if r, k := cl.killedReason(); k {
			return cl.proxyKilled(r, peer)
		}
		var bad *proxyhdr.BadHeaderError
		switch {
		case errors.As(err, &bad):
			logLine("ERROR", "haproxy: Client disconnected: Failed to read valid HAproxy data: %s (rip=%s)", bad.Why, peer)
			return ipc.CloseError, false
		case errors.Is(err, os.ErrDeadlineExceeded):
			logLine("ERROR", "haproxy: Client timed out (rip=%s)", peer)
			return ipc.CloseTimeout, false
		case err == io.EOF:
			logLine("INFO", "haproxy: Client disconnected (rip=%s)", peer)
			return ipc.CloseNormal, false
		}
		logLine("INFO", "haproxy: Client disconnected (rip=%s): %v", peer, err)
		return ipc.CloseError, false
	}
	if p.Remote != nil {
		// The proxy's connection stays the auth request's real_* (auth.go).
		cl.realRemote, cl.realLocal = addrPortOf(cl.c.RemoteAddr()), addrPortOf(cl.c.LocalAddr())
		cl.c.SetAddrs(p.Remote, p.Local)
	}
	cl.haproxyTLS = p.TLS
	return ipc.CloseNormal, true
}

// inNetworks reports whether ip (unmapped) is in one of nets.
func inNetworks(nets []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// proxyKilled logs a client killed (shut down) while its PROXY header
// was awaited and returns r.
func (cl *Client) proxyKilled(r ipc.CloseReason, peer string) (ipc.CloseReason, bool) {
	logLine("INFO", "haproxy: Client disconnected (rip=%s): %s", peer, closeWhy(r))
	return r, false
}
