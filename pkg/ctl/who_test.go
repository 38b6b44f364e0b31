package ctl

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

func sampleWho(recent bool) *control.Who {
	since := time.Date(2026, 12, 7, 9, 30, 5, 0, time.UTC)
	w := &control.Who{Version: control.WhoSchemaVersion, Sessions: []control.Session{
		{User: "alice", Service: "imap-login", Protocol: "imap", Mech: "PLAIN", RemoteIP: netip.MustParseAddr("192.0.2.7"), RemotePort: 51000,
			Since: since, TLS: true, PID: 5001, MailPID: 6001, State: "proxying"},
		{User: "bob@example.org", Service: "pop3-login", Protocol: "pop3", Mech: "SCRAM-SHA-256", RemoteIP: netip.MustParseAddr("2001:db8::5"), RemotePort: 995,
			Since: since.Add(time.Minute), TLS: true, PID: 5002, State: "proxying"},
	}}
	if recent {
		w.Sessions = append(w.Sessions, control.Session{User: "carol", Service: "imap-login", Protocol: "imap", Mech: "PLAIN",
			RemoteIP: netip.MustParseAddr("10.1.2.3"), RemotePort: 40000, Since: since.Add(2 * time.Minute), PID: 5003, MailPID: 6003, State: control.StateHandedOff})
	}
	return w
}

// TestWho: loginctl who prints one line per session (user, protocol,
// rip, since, TLS, login process pid, mail pid, mechanism, state), as
// doveadm who -1 does; --recent asks for the recent hand-offs too; a user
// mask and an IP[/BITS] filter as doveadm who's do; --json prints
// control.Who.
func TestWho(t *testing.T) {
	sock := serveControl(t, map[string]any{control.WhoRequest: sampleWho(false), control.WhoRecentRequest: sampleWho(true)})
	since := func(out string) string {
		for i := range 3 {
			out = strings.ReplaceAll(out, sampleWho(true).Sessions[i].Since.Local().Format(whoTimeFormat), "$SINCE")
		}
		return out
	}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"who", nil},
		{"who-recent", []string{"--recent"}},
		{"who-user-mask", []string{"-r", "*@example.org"}},
		{"who-ip", []string{"-r", "10.0.0.0/8"}},
		{"who-mask-and-ip", []string{"a?ice", "192.0.2.7"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, append([]string{"who", "--socket", sock}, tt.args...)...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			golden(t, tt.name, since(out), "")
		})
	}
	out, _, code := run(t, "who", "--socket", sock, "--json", "--recent")
	var got control.Who
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("--json: exit %d, %v:\n%s", code, err, out)
	}
	if d := cmp.Diff(sampleWho(true), &got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("--json (-want +got):\n%s", d)
	}
	if _, errOut, code := run(t, "who", "--socket", sock, "alice", "bob"); code != 2 || !strings.Contains(errOut, "one user mask") {
		t.Errorf("two masks: exit %d, stderr %q; want 2", code, errOut)
	}
	// A loginsvc that does not know the request (older) answers an error.
	old := serveControl(t, map[string]any{control.WhoRequest: map[string]string{"error": "unknown command"}})
	if _, errOut, code := run(t, "who", "--socket", old); code != 1 || !strings.Contains(errOut, "not answered (a loginsvc older than this loginctl?)") {
		t.Errorf("older loginsvc: exit %d, stderr %q", code, errOut)
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, tt := range []struct {
		mask, s string
		want    bool
	}{
		{"*", "", true},
		{"*", "alice", true},
		{"alice", "alice", true},
		{"alice", "alicea", false},
		{"a?ice", "alice", true},
		{"a*e", "alice", true},
		{"a*e", "alicex", false},
		{"*@example.org", "bob@example.org", true},
		{"*@example.org", "bob@example.org.evil", false},
		{"*a*a*", "banana", true},
		{"*a*a*a*a", "banana", false},
		{"b*n*", "b/n/x", true},
		{"?", "é", true},
		{"", "", true},
		{"", "a", false},
	} {
		if got := wildcardMatch(tt.mask, tt.s); got != tt.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tt.mask, tt.s, got, tt.want)
		}
	}
}
