package authpolicy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
)

// TestDovecot23Bans: a real Dovecot 2.3 reports its failures to a Server
// with pkg/bans behind it: six distinct wrong passwords from the source
// 127.0.0.8/29 and the next correct login from there is refused with the
// ban message; one wrong password repeated ten times from 127.0.0.3 and
// the correct login succeeds. The six guesses come from six addresses of
// the /29 (IPv4Prefix 29) because Dovecot's own auth penalty would delay
// the guesses from one address by 2+4+8+15+15 s; the counting is the
// same.
func TestDovecot23Bans(t *testing.T) {
	logs := &logBuffer{}
	b, err := bans.New(bans.Config{IPv4Prefix: 29, Log: testLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	onReport, banned := failureFeed(b)
	var reports atomic.Int64
	s := &Server{Check: compile("", ""), Log: testLogger(logs), Banned: banned,
		OnReport: func(ctx context.Context, r Report) { onReport(ctx, r); reports.Add(1) }}
	url := serve(t, s)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("policy server log:\n%s", logs.String())
		}
	})
	// auth_failure_delay = 0 spares the 2 s per failure; it does not
	// change what the policy server is told.
	d := dovecotlab.Start(t, dovecotlab.Config{NoAccessCheck: true, Protocols: []string{"imap"},
		Users: map[string]string{labUser: labPass}, Extra: fmt.Sprintf(`
auth_policy_server_url = %s
auth_policy_hash_nonce = lab-nonce
auth_failure_delay = 0
`, url)})
	ctx := context.Background()
	login := func(src, pass string) string {
		t.Helper()
		got, err := dovecot24lab.Login(ctx, "imap", src, d.Addr("imap"), labUser, pass)
		if err != nil {
			t.Fatalf("login from %s: %v", src, err)
		}
		return got
	}
	// waitReports waits until Dovecot's report requests (sent after the
	// client's answer) have all arrived.
	waitReports := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); reports.Load() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d reports arrived, want %d", reports.Load(), n)
			}
		}
	}
	for i := range 10 {
		if got := login("127.0.0.3", "stale-password"); !strings.HasPrefix(got, "a NO") {
			t.Fatalf("wrong password %d: %q", i, got)
		}
	}
	waitReports(10)
	if got := login("127.0.0.3", labPass); !strings.HasPrefix(got, "a OK") {
		t.Errorf("correct login after one wrong password ten times: %q, want a OK", got)
	}
	for i := range 6 {
		if got := login(fmt.Sprintf("127.0.0.%d", 8+i), fmt.Sprintf("guess-%d", i)); !strings.HasPrefix(got, "a NO") {
			t.Fatalf("guess %d: %q", i, got)
		}
	}
	waitReports(17)
	if _, ok := b.Banned(netip.MustParseAddr("127.0.0.8")); !ok {
		t.Fatalf("127.0.0.8/29 not banned after six distinct wrong passwords; bans: %v", b.List())
	}
	for _, src := range []string{"127.0.0.8", "127.0.0.15"} {
		if got, want := login(src, labPass), "a NO [ALERT] "+DefaultBanMessage; got != want {
			t.Errorf("correct login from %s in the banned source: %q, want %q", src, got, want)
		}
	}
	if got := login("127.0.0.1", labPass); !strings.HasPrefix(got, "a OK") {
		t.Errorf("login from another client: %q, want a OK", got)
	}
	if l := logs.String(); strings.Contains(l, "guess-") || strings.Contains(l, "stale-password") {
		t.Errorf("a password reached the log:\n%s", l)
	}
}
