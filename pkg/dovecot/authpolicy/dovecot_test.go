package authpolicy

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
)

// The rules every real-Dovecot test serves: 127.0.0.2 may not use IMAP
// (with a banner), but may use POP3.
const (
	labAllow   = ""
	labDeny    = "imap: 127.0.0.2 : banners %s\n"
	labBanner  = "No IMAP for %a here"
	labAPIHdr  = "X-API-Key: lab-key-1"
	labUser    = "alice"
	labPass    = "secret"
	labMsgWant = "No IMAP for 127.0.0.2 here"
)

// policyLab is a running Server on 127.0.0.1 that a real Dovecot asks.
type policyLab struct {
	URL    string
	Logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

func startPolicyLab(t *testing.T) *policyLab {
	t.Helper()
	banners := t.TempDir()
	if err := os.WriteFile(filepath.Join(banners, "imap"), []byte(labBanner+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s := &Server{Check: compile(labAllow, fmt.Sprintf(labDeny, banners)), Log: testLogger(logs), APIHeader: labAPIHdr}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &policyLab{URL: "http://" + ln.Addr().String() + "/", Logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- s.Serve(ctx, ln) }()
	t.Cleanup(p.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("policy server log:\n%s", logs.String())
		}
	})
	return p
}

// Stop stops the server and waits for Serve to return.
func (p *policyLab) Stop() {
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
	}
}

// labLogin is what a test needs of a lab Dovecot: the address of a
// protocol's listener.
type labLogin func(proto string) string

// testRealDovecot runs the scenario against two masters of one Dovecot
// version started by start, one with auth_policy_reject_on_fail = no and
// one with yes: allowed, denied (with the banner as [ALERT]), per-daemon,
// and the policy server stopped.
func testRealDovecot(t *testing.T, start func(t *testing.T, p *policyLab, rejectOnFail bool) labLogin) {
	p := startPolicyLab(t)
	lenient, strict := start(t, p, false), start(t, p, true)
	ctx := context.Background()
	type step struct {
		name, proto, src string
		dovecot          labLogin
		want             string
	}
	check := func(steps []step) {
		t.Helper()
		for _, s := range steps {
			start := time.Now()
			got, err := dovecot24lab.Login(ctx, s.proto, s.src, s.dovecot(s.proto), labUser, labPass)
			if err != nil || !strings.HasPrefix(got, s.want) {
				t.Errorf("%s: %s login from %s: got %q, %v; want %q...", s.name, s.proto, s.src, got, err, s.want)
			} else {
				t.Logf("%s: %q (%v)", s.name, got, time.Since(start).Round(time.Millisecond))
			}
		}
	}
	check([]step{
		{"allowed", "imap", "127.0.0.1", lenient, "a OK"},
		{"denied by imap: rule", "imap", "127.0.0.2", lenient, "a NO [ALERT] " + labMsgWant},
		{"denied, reject_on_fail", "imap", "127.0.0.2", strict, "a NO [ALERT] " + labMsgWant},
		{"pop3 is another daemon", "pop3", "127.0.0.2", lenient, "+OK"},
		{"allowed, reject_on_fail", "imap", "127.0.0.1", strict, "a OK"},
	})
	// The optional attributes arrived: the client port and the server
	// address and port (the listener's).
	server := "server=" + lenient("imap")
	if logs := p.Logs.String(); !strings.Contains(logs, "auth policy: denied") || !strings.Contains(logs, "auth policy: report") ||
		!strings.Contains(logs, server) || !regexp.MustCompile(`client=127\.0\.0\.1:[1-9]`).MatchString(logs) {
		t.Errorf("the policy server logged no denial, no report, no %s or no client port:\n%s", server, logs)
	}
	p.Stop()
	check([]step{
		{"server stopped, reject_on_fail = no", "imap", "127.0.0.2", lenient, "a OK"},
		{"server stopped, reject_on_fail = yes", "imap", "127.0.0.1", strict, "a NO"},
	})
}

// TestDovecot23 runs the scenario against the installed Dovecot 2.3.
func TestDovecot23(t *testing.T) {
	testRealDovecot(t, func(t *testing.T, p *policyLab, rejectOnFail bool) labLogin {
		d := dovecotlab.Start(t, dovecotlab.Config{NoAccessCheck: true, Extra: fmt.Sprintf(`
auth_policy_server_url = %s
auth_policy_server_api_header = %s
auth_policy_hash_nonce = lab-nonce
auth_policy_reject_on_fail = %s
auth_policy_request_attributes = login=%%{requested_username} pwhash=%%{hashed_password} remote=%%{rip} remote_port=%%{rport} local=%%{lip} local_port=%%{lport} device_id=%%{client_id} protocol=%%s session_id=%%{session}
`, p.URL, labAPIHdr, yesNo(rejectOnFail))})
		return d.Addr
	})
}

// TestDovecot24 runs the scenario against Dovecot 2.4.1 in the trixie
// root (internal/dovecot24lab), with 2.4's settings.
func TestDovecot24(t *testing.T) {
	testRealDovecot(t, func(t *testing.T, p *policyLab, rejectOnFail bool) labLogin {
		d := dovecot24lab.Start(t, dovecot24lab.Config{Extra: fmt.Sprintf(`
auth_policy_server_url = %s
auth_policy_server_api_header = %s
auth_policy_hash_nonce = lab-nonce
auth_policy_reject_on_fail = %s
auth_policy_request_attributes {
  remote_port = %%{remote_port}
  local = %%{local_ip}
  local_port = %%{local_port}
}
`, p.URL, labAPIHdr, yesNo(rejectOnFail))})
		return d.Addr
	})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
