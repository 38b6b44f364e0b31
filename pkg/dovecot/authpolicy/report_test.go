package authpolicy

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// reportSink collects what OnReport receives.
type reportSink struct {
	mu  sync.Mutex
	got []Report
}

func (r *reportSink) on(_ context.Context, rep Report) {
	r.mu.Lock()
	r.got = append(r.got, rep)
	r.mu.Unlock()
}

func TestOnReport(t *testing.T) {
	tests := []struct {
		name, body string
		want       []Report
	}{
		{"2.3 failure", `{"device_id":"","login":"alice","protocol":"imap","pwhash":"0a1b","remote":"127.0.0.2","session_id":"s1","success":false,"policy_reject":false,"tls":false}`,
			[]Report{{Protocol: "imap", Remote: netip.MustParseAddr("127.0.0.2"), Login: "alice", Pwhash: "0a1b", SessionID: "s1"}}},
		{"2.4 success", `{"fail_type":"","login":"bob","protocol":"pop3","pwhash":"ff","remote":"::ffff:192.0.2.1","success":true,"policy_reject":false,"tls":true}`,
			[]Report{{Protocol: "pop3", Remote: netip.MustParseAddr("192.0.2.1"), Login: "bob", Pwhash: "ff", Success: true}}},
		{"2.4 policy reject", `{"fail_type":"policy","login":"c","protocol":"imap","pwhash":"aa","remote":"2001:db8::1","success":false,"policy_reject":true}`,
			[]Report{{Protocol: "imap", Remote: netip.MustParseAddr("2001:db8::1"), Login: "c", Pwhash: "aa", PolicyReject: true, FailType: "policy"}}},
		{"no remote", `{"protocol":"imap","success":false}`, []Report{{Protocol: "imap"}}},
		{"remote not an address", `{"protocol":"imap","remote":"nowhere","success":false}`, []Report{{Protocol: "imap"}}},
		{"no success: not a report", `{"protocol":"imap","remote":"127.0.0.2"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &reportSink{}
			url := serve(t, &Server{Check: compile("", ""), OnReport: sink.on})
			if code, body := post(t, &http.Client{}, url+"?command=report", tt.body); code != 200 || body != "" {
				t.Errorf("got %d %q, want 200 and no body", code, body)
			}
			// An allow request never reaches OnReport.
			post(t, &http.Client{}, url+"?command=allow", fmt.Sprintf(body23, "127.0.0.1"))
			if diff := cmp.Diff(tt.want, sink.got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("reports (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPasswordFailure(t *testing.T) {
	tests := []struct {
		r    Report
		want bool
	}{
		{Report{}, true}, // 2.3: every failure
		{Report{FailType: "credentials"}, true},
		{Report{FailType: "account"}, true},
		{Report{FailType: "expired"}, false},
		{Report{FailType: "disabled"}, false},
		{Report{FailType: "internal"}, false},
		{Report{FailType: "policy", PolicyReject: true}, false},
		{Report{PolicyReject: true}, false},
		{Report{Success: true}, false},
	}
	for _, tt := range tests {
		if got := tt.r.PasswordFailure(); got != tt.want {
			t.Errorf("%+v: PasswordFailure() = %v, want %v", tt.r, got, tt.want)
		}
	}
}

func TestBannedHook(t *testing.T) {
	var mu sync.Mutex
	var asked []netip.Addr
	banned := func(a netip.Addr) (string, bool) {
		mu.Lock()
		asked = append(asked, a)
		mu.Unlock()
		return a.String() + " banned for testing", a == netip.MustParseAddr("192.0.2.66")
	}
	var logs logBuffer
	s := &Server{Check: compile("imap: 192.0.2.66\n", "imap: 127.0.0.2\n"), Banned: banned, Log: testLogger(&logs)}
	url := serve(t, s)
	c := &http.Client{}
	tests := []struct {
		name, body, want string
	}{
		{"banned before the rules grant", fmt.Sprintf(body23, "192.0.2.66"), `{"status":-1,"msg":"` + DefaultBanMessage + `"}`},
		{"banned, mapped address", fmt.Sprintf(body23, "::ffff:192.0.2.66"), `{"status":-1,"msg":"` + DefaultBanMessage + `"}`},
		{"not banned: the rules grant", fmt.Sprintf(body23, "127.0.0.1"), `{"status":0}`},
		{"not banned: the rules deny", fmt.Sprintf(body23, "127.0.0.2"), `{"status":-1,"msg":"Access denied."}`},
		{"unknown client: not asked", `{"protocol":"imap","remote":""}`, `{"status":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, got := post(t, c, url+"?command=allow", tt.body); code != 200 || got != tt.want {
				t.Errorf("got %d %q, want 200 %q", code, got, tt.want)
			}
		})
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.66"), netip.MustParseAddr("192.0.2.66"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	if !cmp.Equal(asked, want, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })) {
		t.Errorf("Banned asked about %v, want %v", asked, want)
	}
	if l := logs.String(); !strings.Contains(l, `rule="banned: 192.0.2.66 banned for testing"`) {
		t.Errorf("the denial log does not give the ban:\n%s", l)
	}
	// Decide (the replay path) gives the ban as the deciding reason, and
	// BanMessage replaces the default text.
	s2 := &Server{Check: compile("", ""), Banned: banned, BanMessage: "Go away."}
	reply, d := s2.Decide(context.Background(), &hostsrules.Request{Daemon: "imap",
		Client: hostsrules.Endpoint{Addr: netip.MustParseAddrPort("192.0.2.66:1234")}})
	if reply != (Reply{Status: -1, Msg: "Go away."}) || d.Verdict != hostsrules.Denied || d.Reason != "banned: 192.0.2.66 banned for testing" || d.File != "" {
		t.Errorf("Decide: %+v %+v", reply, d)
	}
}

// failureFeed is the glue tcpwrapd will use: password failures go to
// the bans, allow requests ask them.
func failureFeed(b *bans.Bans) (func(context.Context, Report), func(netip.Addr) (string, bool)) {
	return func(_ context.Context, r Report) {
			if r.PasswordFailure() {
				b.ReportFailure(r.Remote, string(r.Pwhash))
			}
		}, func(a netip.Addr) (string, bool) {
			ban, ok := b.Banned(a)
			return ban.String(), ok
		}
}

// TestBansOverHTTP: the report and allow hooks with pkg/bans behind
// them, over HTTP as Dovecot speaks it: six distinct wrong passwords ban
// the client, one wrong password ten times does not, a policy reject
// never counts, and the ban ends.
func TestBansOverHTTP(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b, err := bans.New(bans.Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	onReport, banned := failureFeed(b)
	url := serve(t, &Server{Check: compile("", ""), OnReport: onReport, Banned: banned})
	c := &http.Client{}
	report := func(remote, pwhash string, policyReject bool) {
		t.Helper()
		body := fmt.Sprintf(`{"fail_type":"credentials","login":"alice","protocol":"imap","pwhash":%q,"remote":%q,"success":false,"policy_reject":%v}`, pwhash, remote, policyReject)
		if code, _ := post(t, c, url+"?command=report", body); code != 200 {
			t.Fatalf("report: %d", code)
		}
	}
	allow := func(remote string) string {
		t.Helper()
		_, got := post(t, c, url+"?command=allow", fmt.Sprintf(body24, "imap", remote))
		return got
	}
	denied := `{"status":-1,"msg":"` + DefaultBanMessage + `"}`
	for i := range 10 {
		report("127.0.0.3", "stale", false)
		report("127.0.0.4", fmt.Sprintf("policy-rejected-%d", i), true)
	}
	for i := range 6 {
		report("127.0.0.2", fmt.Sprintf("guess-%d", i), false)
	}
	for _, tt := range []struct{ remote, want string }{
		{"127.0.0.2", denied}, {"127.0.0.3", `{"status":0}`}, {"127.0.0.4", `{"status":0}`}, {"127.0.0.1", `{"status":0}`},
	} {
		if got := allow(tt.remote); got != tt.want {
			t.Errorf("allow %s: %s, want %s", tt.remote, got, tt.want)
		}
	}
	mu.Lock()
	now = now.Add(bans.DefaultBanFor)
	mu.Unlock()
	if got := allow("127.0.0.2"); got != `{"status":0}` {
		t.Errorf("allow after the ban ended: %s", got)
	}
}
