package accessd

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// startAdmin serves an AdminServer for rules in a temporary directory and
// returns a function that sends one request line and decodes the reply.
func startAdmin(t *testing.T, allow, deny string, opts ...func(*AdminServer)) (ask func(string) AdminReply, a *AdminServer, dir string) {
	t.Helper()
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "hosts.allow"), []byte(allow), 0o644)
	os.WriteFile(filepath.Join(dir, "hosts.deny"), []byte(deny), 0o644)
	rl, _ := NewReloader(context.Background(), ReloaderConfig{AllowFile: filepath.Join(dir, "hosts.allow"), DenyFile: filepath.Join(dir, "hosts.deny")})
	ln, owner, err := ListenAdmin(filepath.Join(dir, "run", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	a = &AdminServer{Reloader: rl, Stats: NewStats(), OwnerUID: owner,
		Env: &hostsrules.Env{Resolver: hostsrules.ParseHosts([]byte("192.0.2.7 mail.example.com\n2001:db8::7 mail.example.com\n"))}}
	for _, o := range opts {
		o(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	c, err := net.Dial("unix", filepath.Join(dir, "run", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc := bufio.NewScanner(c)
	sc.Buffer(nil, 1<<20)
	ask = func(line string) AdminReply {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		if !sc.Scan() {
			t.Fatalf("no reply to %s: %v", line, sc.Err())
		}
		var r AdminReply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Schema != AdminSchema {
			t.Errorf("schema %q", r.Schema)
		}
		return r
	}
	return ask, a, dir
}

func TestAdminCheck(t *testing.T) {
	ask, _, _ := startAdmin(t, "imap: 10.0.0.0/8: deny\nimap: .example.com\n", "ALL: ALL\n")
	tests := []struct {
		name, req string
		want      []string // client access file:line
		err       string
	}{
		{"address denied by option", `{"op":"check","daemon":"imap","client":"10.1.2.3"}`, []string{"10.1.2.3 denied hosts.allow:1"}, ""},
		{"name with two addresses", `{"op":"check","daemon":"imap","client":"mail.example.com"}`,
			[]string{"192.0.2.7 granted hosts.allow:2", "2001:db8::7 granted hosts.allow:2"}, ""},
		{"default deny", `{"op":"check","daemon":"pop3","client":"192.0.2.9"}`, []string{"192.0.2.9 denied hosts.deny:1"}, ""},
		{"unknown host", `{"op":"check","daemon":"imap","client":"nosuch.example"}`, nil, "client nosuch.example: host not found"},
		{"missing daemon", `{"op":"check","client":"10.0.0.1"}`, nil, `invalid request: "check" needs "daemon"`},
		{"bad json", `{"op":`, nil, "invalid request: unexpected EOF"},
		{"unknown field", `{"op":"stats","x":1}`, nil, `invalid request: json: unknown field "x"`},
		{"unknown op", `{"op":"frob"}`, nil, `invalid request: unknown op "frob" (check, stats, reload, bans, ban-explain or ban-lift)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ask(tt.req)
			if r.Error != tt.err || r.OK != (tt.err == "") {
				t.Fatalf("ok=%v error=%q, want error %q", r.OK, r.Error, tt.err)
			}
			var got []string
			for _, res := range r.Results {
				got = append(got, res.Client+" "+res.Access+" "+filepath.Base(res.Decision.File)+":"+itoa(res.Decision.Line))
				if len(res.Decision.Trace) == 0 {
					t.Errorf("no trace for %s", res.Client)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestAdminStatsAndReload(t *testing.T) {
	ask, a, dir := startAdmin(t, "imap: 10.0.0.1\n", "imap: 1.2.3.x/8\n")
	d := hostsrules.Decision{Verdict: hostsrules.Granted}
	a.Stats.Decision(&d, 100*time.Microsecond)
	a.Stats.Decision(&hostsrules.Decision{Verdict: hostsrules.Denied}, 3*time.Millisecond)
	a.Stats.Decision(&hostsrules.Decision{Delegated: true}, time.Millisecond)
	a.Stats.Error(dovecotsock.ErrKindInvalidRequest)
	a.Stats.Error(dovecotsock.ErrKindReplyGone)
	a.Stats.Error(dovecotsock.ErrKindReplyGone)
	r := ask(`{"op":"stats"}`)
	if !r.OK || r.Stats == nil {
		t.Fatalf("stats: %+v", r)
	}
	st := r.Stats
	got := []any{st.Checks, st.Granted, st.Refused, st.Delegated, st.Errors, st.Latency, st.Rules.Generation, st.Rules.Reason, st.Rules.AllowRules, st.Rules.DenyRules, len(st.Rules.Files)}
	want := []any{uint64(3), uint64(1), uint64(1), uint64(1), map[string]uint64{"invalid_request": 1, "reply_gone": 2},
		Latency{Samples: 3, P50us: 1000, P99us: 3000, MaxUs: 3000}, uint64(1), "initial", 1, 1, 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if st.Rules.Files[0].ModTime.IsZero() || st.Rules.LoadedAt.IsZero() {
		t.Errorf("missing times: %+v", st.Rules)
	}
	os.WriteFile(filepath.Join(dir, "hosts.allow"), []byte("imap: 10.0.0.1\npop3: ALL\n"), 0o644)
	r = ask(`{"op":"reload"}`)
	if !r.OK || r.Stats.Rules.Generation != 2 || r.Stats.Rules.Reason != "admin" || r.Stats.Rules.AllowRules != 2 {
		t.Errorf("reload: %+v", r.Stats.Rules)
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	if got, want := percentiles(d), (Latency{Samples: 100, P50us: 50, P99us: 99, MaxUs: 100}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	var nilStats *Stats
	nilStats.Error(dovecotsock.ErrKindNotUnix) // must not panic
	nilStats.Decision(&hostsrules.Decision{}, 0)
	if s := nilStats.Snapshot(); s.Checks != 0 {
		t.Errorf("nil snapshot %+v", s)
	}
}

// TestServerStats checks that a Server with Stats counts real checks,
// verdicts and invalid requests.
func TestServerStats(t *testing.T) {
	stats := NewStats()
	ts := startServer(t, "imap: 127.0.0.1\n", "ALL: ALL\n", func(s *server) { s.Stats = stats })
	if got, _ := askAccess(t, ts.sock, "imap", "127.0.0.1"); got != "1\n" {
		t.Fatalf("imap: %q", got)
	}
	if got, _ := askAccess(t, ts.sock, "pop3", "127.0.0.1"); got != "0\n" {
		t.Fatalf("pop3: %q", got)
	}
	c := dialAccess(t, ts.sock)
	sendRequest(t, c, []byte("no newline"))
	if got := readReply(t, c); got != "" {
		t.Fatalf("invalid request answered %q", got)
	}
	waitFor(t, "invalid request counted", func() bool { return stats.Snapshot().Errors[dovecotsock.ErrKindInvalidRequest] == 1 })
	s := stats.Snapshot()
	if s.Checks != 2 || s.Granted != 1 || s.Refused != 1 || s.Latency.Samples != 2 {
		t.Errorf("snapshot %+v", s)
	}
}

func TestAdminBans(t *testing.T) {
	off, _, _ := startAdmin(t, "ALL: ALL\n", "")
	if r := off(`{"op":"bans"}`); r.OK || r.Error != "failure-driven bans are off (tcpwrapd --bans)" {
		t.Fatalf("bans off: %+v", r)
	}
	b, err := bans.New(bans.Config{Threshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	ask, _, _ := startAdmin(t, "ALL: ALL\n", "", func(a *AdminServer) { a.Bans = b })
	b.ReportFailure(netip.MustParseAddr("192.0.2.9"), "x")
	b.ReportFailure(netip.MustParseAddr("192.0.2.7"), "x")
	b.ReportFailure(netip.MustParseAddr("192.0.2.7"), "y")

	r := ask(`{"op":"bans"}`)
	if !r.OK || len(r.Bans) != 1 || r.Bans[0].Prefix.String() != "192.0.2.7/32" || r.Bans[0].Count != 2 {
		t.Fatalf("bans: %+v", r)
	}
	r = ask(`{"op":"check","daemon":"imap","client":"192.0.2.7"}`)
	if len(r.Results) != 1 || r.Results[0].Access != "denied" || r.Results[0].Ban == nil ||
		!strings.HasPrefix(r.Results[0].Decision.Reason, "banned: 192.0.2.7/32 banned until ") || r.Results[0].Decision.File != "" {
		t.Errorf("check banned: %+v", r)
	}
	r = ask(`{"op":"ban-explain","client":"192.0.2.9"}`)
	want := &AdminBanExplain{Client: "192.0.2.9", Source: "192.0.2.9/32", Failures: 1, Threshold: 1, WindowSeconds: 600}
	if diff := cmp.Diff(want, r.BanExplain); !r.OK || diff != "" {
		t.Errorf("ban-explain not banned: %v (-want +got):\n%s", r.Error, diff)
	}
	if r = ask(`{"op":"ban-explain","client":"192.0.2.7"}`); r.BanExplain == nil || r.BanExplain.Ban == nil {
		t.Errorf("ban-explain banned: %+v", r)
	}
	for _, tc := range []struct {
		req    string
		lifted int
		err    string
	}{
		{`{"op":"ban-lift","prefix":"192.0.2.8"}`, 0, ""},
		{`{"op":"ban-lift","prefix":"192.0.2.0/24"}`, 1, ""},
		{`{"op":"ban-lift","prefix":"192.0.2.0/24"}`, 0, ""},
		{`{"op":"ban-lift","prefix":"nonsense"}`, 0, `invalid request: "ban-lift": "nonsense" is neither an address nor a prefix`},
		{`{"op":"ban-explain","client":"mail.example.com"}`, 0, `invalid request: "ban-explain" needs "client", an address`},
	} {
		r := ask(tc.req)
		if r.Lifted != tc.lifted || r.Error != tc.err || r.OK != (tc.err == "") {
			t.Errorf("%s: %+v", tc.req, r)
		}
	}
	if r := ask(`{"op":"check","daemon":"imap","client":"192.0.2.7"}`); r.Results[0].Access != "granted" || r.Results[0].Ban != nil {
		t.Errorf("check after lift: %+v", r)
	}
}
