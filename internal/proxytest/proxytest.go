// Package proxytest builds PROXY protocol headers for tests (with
// github.com/pires/go-proxyproto, the reference the login process's
// own reader is checked against).
package proxytest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// V2 builds a v2 header.
func V2(t testing.TB, cmd proxyproto.ProtocolVersionAndCommand, tp proxyproto.AddressFamilyAndProtocol, src, dst net.Addr, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: cmd, TransportProtocol: tp, SourceAddr: src, DestinationAddr: dst}
	if err := h.SetTLVs(tlvs); err != nil {
		t.Fatal(err)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TCP is the address "IP:port" (it must parse).
func TCP(s string) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

// SSLTLV is a PP2_TYPE_SSL TLV; client is its client bit field.
func SSLTLV(t testing.TB, client uint8) proxyproto.TLV {
	t.Helper()
	tlv, err := tlvparse.PP2SSL{Client: client, TLV: []proxyproto.TLV{{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")}}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return tlv
}

// Headers used by several tests.

// V2TCP4 forwards 198.51.100.4:40004 to 203.0.113.1:143.
func V2TCP4(t testing.TB) []byte {
	return V2(t, proxyproto.PROXY, proxyproto.TCPv4, TCP("198.51.100.4:40004"), TCP("203.0.113.1:143"))
}

// V2TCP6SSL forwards [2001:db8::5]:40005 to [2001:db8::1]:993, TLS
// terminated by the proxy.
func V2TCP6SSL(t testing.TB) []byte {
	return V2(t, proxyproto.PROXY, proxyproto.TCPv6, TCP("[2001:db8::5]:40005"), TCP("[2001:db8::1]:993"), SSLTLV(t, tlvparse.PP2_BITFIELD_CLIENT_SSL))
}

// V2Local is a LOCAL header (the proxy's own connection).
func V2Local(t testing.TB) []byte {
	return V2(t, proxyproto.LOCAL, proxyproto.UNSPEC, nil, nil)
}

// V1TCP4 is a v1 header forwarding 198.51.100.9:40001 to 203.0.113.1:143.
const V1TCP4 = "PROXY TCP4 198.51.100.9 203.0.113.1 40001 143\r\n"
