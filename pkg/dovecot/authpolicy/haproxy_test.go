package authpolicy

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
)

// TestDovecot23HAProxy: behind Dovecot's haproxy = yes listener the
// forwarded client, not the proxy, is judged: Dovecot sends the PROXY
// header's source as `remote`. The proxy is 127.0.0.1 (trusted, and
// allowed by the rules); a client forwarded as 127.0.0.2 is refused with
// the rule's banner, one forwarded as 127.0.0.9 logs in.
func TestDovecot23HAProxy(t *testing.T) {
	p := startPolicyLab(t)
	port, err := dovecotlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dovecotlab.Start(t, dovecotlab.Config{NoAccessCheck: true, Protocols: []string{"imap"}, Extra: fmt.Sprintf(`
auth_policy_server_url = %s
auth_policy_server_api_header = %s
auth_policy_hash_nonce = lab-nonce
auth_policy_request_attributes = login=%%{requested_username} pwhash=%%{hashed_password} remote=%%{rip} protocol=%%s session_id=%%{session}
haproxy_trusted_networks = 127.0.0.1
service imap-login {
  inet_listener imap_haproxy {
    address = 127.0.0.1
    port = %d
    haproxy = yes
  }
}
`, p.URL, labAPIHdr, port)})
	for _, tt := range []struct{ forwarded, want string }{
		{"127.0.0.2", "a NO [ALERT] " + labMsgWant},
		{"127.0.0.9", "a OK"},
	} {
		got, err := proxiedLogin(fmt.Sprintf("127.0.0.1:%d", port), tt.forwarded)
		if err != nil || !strings.HasPrefix(got, tt.want) {
			t.Errorf("login forwarded for %s: got %q, %v; want %q...", tt.forwarded, got, err, tt.want)
		}
	}
	if logs := p.Logs.String(); !strings.Contains(logs, "client=127.0.0.2") {
		t.Errorf("the policy server never judged the forwarded client 127.0.0.2:\n%s", logs)
	}
}

// proxiedLogin connects to addr as a proxy would, sends a PROXY v1 header
// naming client as the source, then an IMAP LOGIN, and returns the
// tagged reply.
func proxiedLogin(addr, client string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 50000 143\r\n", client); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	if g, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(g, "* OK") {
		return g, fmt.Errorf("greeting %q: %v", g, err)
	}
	fmt.Fprintf(c, "a LOGIN %s %s\r\n", labUser, labPass)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return line, err
		}
		if strings.HasPrefix(line, "a ") {
			return strings.TrimRight(line, "\r\n"), nil
		}
	}
}
