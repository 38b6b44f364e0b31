package listenopt

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// TestLookup checks that a client socket gets the options of its exact
// local address, else those of a wildcard listener on the same port and
// family, else none, and the local address read to find them; and that
// with the local address known it asks the kernel nothing (fd -1).
func TestLookup(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := sc.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	at := func(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }
	tests := []struct {
		name         string
		ssl, haproxy []string
		want         Flags
		known        bool // the local address passed, fd -1
	}{
		{"none", nil, nil, 0, false},
		{"exact ssl", []string{at("127.0.0.1")}, nil, SSL, false},
		{"exact both", []string{at("127.0.0.1")}, []string{at("127.0.0.1")}, SSL | HAProxy, false},
		{"wildcard haproxy", nil, []string{at("0.0.0.0")}, HAProxy, false},
		{"exact before wildcard", []string{at("0.0.0.0")}, []string{at("127.0.0.1")}, HAProxy, false},
		{"other family's wildcard", []string{at("::")}, nil, 0, false},
		{"other port", []string{"127.0.0.1:1"}, nil, 0, false},
		{"unparsable", []string{"localhost:143"}, nil, 0, false},
		{"known, exact ssl", []string{at("127.0.0.1")}, nil, SSL, true},
		{"known, wildcard haproxy", nil, []string{at("0.0.0.0")}, HAProxy, true},
		{"known, none", nil, nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := New(tt.ssl, tt.haproxy)
			fd, known := int(f.Fd()), netip.AddrPort{}
			if tt.known {
				fd, known = -1, sc.LocalAddr().(*net.TCPAddr).AddrPort()
			}
			got, local := set.Lookup(fd, known)
			if got != tt.want {
				t.Errorf("Lookup = %b, want %b", got, tt.want)
			}
			wantLocal := sc.LocalAddr().(*net.TCPAddr).AddrPort()
			if len(set) == 0 && !tt.known {
				wantLocal = netip.AddrPort{} // not asked
			}
			if local != wantLocal {
				t.Errorf("Lookup's local address %v, want %v", local, wantLocal)
			}
		})
	}
}
