package login_test

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/imap"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/forward"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/logintest"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/pop3"
)

// capture is a Protocol that keeps its client and session, to look at
// them afterwards.
type capture struct {
	login.Protocol
	cl *login.Client
	s  login.Session
}

func (p *capture) NewSession(c *login.Client) login.Session {
	p.cl, p.s = c, p.Protocol.NewSession(c)
	return p.s
}

// TestForwardedIdentity checks what the auth request, the hand-off and
// the log lines will use (the unexported identity) after IMAP ID and
// POP3 XCLIENT from trusted and untrusted peers.
func TestForwardedIdentity(t *testing.T) {
	peer := netip.MustParseAddrPort("192.0.2.10:40000")
	local := netip.MustParseAddrPort("192.0.2.1:143")
	ap := netip.MustParseAddrPort
	type want struct {
		Remote, Local netip.AddrPort
		ProxyTTL      int
		Session       string // "": generated
		ForwardFields []string
	}
	for _, tc := range []struct {
		name    string
		proto   login.Protocol
		trusted bool
		in      string
		want    want
	}{
		{"imap untrusted", imap.Protocol{}, false,
			`a ID ("x-originating-ip" "203.0.113.7" "x-proxy-ttl" "2" "x-forward-a" "1")` + "\r\nb LOGOUT\r\n",
			want{Remote: peer, Local: local, ProxyTTL: forward.DefaultProxyTTL}},
		{"imap nothing forwarded", imap.Protocol{}, true, "a ID NIL\r\nb LOGOUT\r\n",
			want{Remote: peer, Local: local, ProxyTTL: forward.DefaultProxyTTL}},
		{"imap all", imap.Protocol{}, true,
			`a ID ("x-originating-ip" "203.0.113.7" "x-originating-port" "51234" "x-connected-ip" "198.51.100.1" "x-connected-port" "993" ` +
				`"X-Proxy-TTL" "3" "x-session-ext-id" "ext-1" "x-forward-a" "1" "x-forward-tab" {3+}` + "\r\nx\ty" + ` "x-forward-n" NIL)` + "\r\nb LOGOUT\r\n",
			want{Remote: ap("203.0.113.7:51234"), Local: ap("198.51.100.1:993"), ProxyTTL: 3, Session: "ext-1", ForwardFields: []string{"a=1", "tab=x\ty"}}},
		{"imap session id over 64 bytes ignored", imap.Protocol{}, true,
			`a ID ("x-session-id" "` + strings.Repeat("s", 65) + `")` + "\r\nb LOGOUT\r\n",
			want{Remote: peer, Local: local, ProxyTTL: forward.DefaultProxyTTL}},
		{"imap second ID ignored", imap.Protocol{}, true,
			`a ID ("x-originating-ip" "203.0.113.7")` + "\r\n" + `b ID ("x-originating-ip" "203.0.113.8" "x-forward-b" "2")` + "\r\nc LOGOUT\r\n",
			want{Remote: ap("203.0.113.7:40000"), Local: local, ProxyTTL: forward.DefaultProxyTTL}},
		{"pop3 untrusted", pop3.Protocol{}, false, "XCLIENT ADDR=203.0.113.7 TTL=2\r\nQUIT\r\n",
			want{Remote: peer, Local: local, ProxyTTL: forward.DefaultProxyTTL}},
		{"pop3 all", pop3.Protocol{}, true,
			// FORWARD= is base64 of "a=1\tb=x\x01ty" (b's value "x\ty", tab-escaped).
			"XCLIENT ADDR=203.0.113.7 PORT=51234 SESSION=s-1 TTL=4 FORWARD=YT0xCWI9eAF0eQ==\r\nQUIT\r\n",
			want{Remote: ap("203.0.113.7:51234"), Local: local, ProxyTTL: 4, Session: "s-1", ForwardFields: []string{"a=1", "b=x\ty"}}},
		{"pop3 FORWARD replaces", pop3.Protocol{}, true,
			"XCLIENT FORWARD=YT0x\r\nXCLIENT FORWARD=Yz0z\r\nQUIT\r\n",
			want{Remote: peer, Local: local, ProxyTTL: forward.DefaultProxyTTL, ForwardFields: []string{"c=3"}}},
		{"pop3 repeated, bad PORT after a good ADDR", pop3.Protocol{}, true,
			"XCLIENT ADDR=203.0.113.7\r\nXCLIENT ADDR=[2001:db8::7] PORT=65536\r\nQUIT\r\n",
			want{Remote: ap("[2001:db8::7]:40000"), Local: local, ProxyTTL: forward.DefaultProxyTTL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &capture{Protocol: tc.proto}
			o := login.ServeOptions{Greeting: "ready", Host: "h", Timeout: time.Minute, Log: io.Discard}
			if tc.trusted {
				o.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			}
			srv, cli := net.Pipe()
			go cli.Write([]byte(tc.in))
			go io.Copy(io.Discard, cli)
			login.ServeConnWith(p, logintest.WithAddrs(srv, peer, local), o)
			cli.Close()
			id := login.IdentityOf(p.cl)
			if tc.want.Session == "" {
				if len(id.Session) != 16 {
					t.Errorf("session %q, want a generated one", id.Session)
				}
				id.Session = ""
			}
			got := want{id.Remote, id.Local, id.ProxyTTL, id.Session, id.ForwardFields}
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
				t.Errorf("identity (-want +got):\n%s", d)
			}
			if got := p.cl.Trusted(); got != tc.trusted {
				t.Errorf("Trusted() = %v", got)
			}
		})
	}
}
