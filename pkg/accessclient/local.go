package accessclient

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// LocalConn makes a real loopback TCP connection whose peer address is
// client and returns the accepted, server-side end (what a login process
// passes to an access socket) and a cleanup function that closes both
// ends. client must be an address this host can bind, such as any of
// 127.0.0.0/8 or ::1. The server end listens on server if it is valid,
// else on 127.0.0.1 (IPv4 clients) or ::1 (IPv6 clients), port 0.
func LocalConn(ctx context.Context, client, server netip.Addr) (*net.TCPConn, func(), error) {
	client = client.Unmap()
	if !server.IsValid() {
		server = netip.MustParseAddr("127.0.0.1")
		if client.Is6() {
			server = netip.IPv6Loopback()
		}
	}
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(server, 0)))
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", server, err)
	}
	defer ln.Close()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(client, 0)), Timeout: 5 * time.Second}
	out, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, fmt.Errorf("cannot make a connection from %s locally: %w", client, err)
	}
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	in, err := ln.AcceptTCP()
	if err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("accept: %w", err)
	}
	return in, func() { in.Close(); out.Close() }, nil
}
