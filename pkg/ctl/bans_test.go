package ctl

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
)

var banT0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// startBansDaemon serves an admin socket with bans at a fixed clock:
// 192.0.2.7 and 2001:db8::1's /64 banned (six distinct failed passwords),
// 192.0.2.9 with two.
func startBansDaemon(t *testing.T) (access, admin string) {
	t.Helper()
	b, err := bans.New(bans.Config{Now: func() time.Time { return banT0 }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		b.ReportFailure(netip.MustParseAddr("192.0.2.7"), fmt.Sprint("p", i))
		b.ReportFailure(netip.MustParseAddr("2001:db8::1"), fmt.Sprint("p", i))
	}
	for range 3 {
		b.ReportFailure(netip.MustParseAddr("192.0.2.9"), "stale")
	}
	b.ReportFailure(netip.MustParseAddr("192.0.2.9"), "other")
	access, admin, _ = startDaemon(t, "imap: ALL\n", "", func(a *accessd.AdminServer) { a.Bans = b })
	return access, admin
}

func TestBans(t *testing.T) {
	_, admin := startBansDaemon(t)
	_, offAdmin, _ := startDaemon(t, "imap: ALL\n", "")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"bans-list", []string{"bans", "--admin-socket", admin}, 0, ""},
		{"bans-list-json", []string{"bans", "--json", "--admin-socket", admin}, 0, ""},
		{"bans-explain-banned", []string{"bans", "explain", "--admin-socket", admin, "2001:db8::99"}, 0, ""},
		{"bans-explain-not-banned", []string{"bans", "--admin-socket", admin, "explain", "192.0.2.9"}, 0, ""},
		{"bans-lift-none", []string{"bans", "lift", "--admin-socket", admin, "198.51.100.0/24"}, 1, ""},
		{"bans-lift", []string{"bans", "lift", "--admin-socket", admin, "192.0.2.7"}, 0, ""},
		{"bans-list-after-lift", []string{"bans", "--admin-socket", admin}, 0, ""},
		{"bans-off", []string{"bans", "--admin-socket", offAdmin}, 1, "loginctl: admin socket $DIR/admin: failure-driven bans are off (tcpwrapd --bans)\n"},
		{"bans-lift-usage", []string{"bans", "lift", "--admin-socket", admin, "nonsense"}, 2, "loginctl: bans lift: \"nonsense\" is neither an address nor a prefix\n"},
		{"bans-explain-usage", []string{"bans", "explain", "--admin-socket", admin}, 2, "loginctl: bans explain: need exactly one argument, ADDR (got 0)\n"},
		{"bans-unknown", []string{"bans", "--admin-socket", admin, "frob"}, 2, "loginctl: bans: unknown subcommand \"frob\" (lift, explain)\n"},
	}
	for _, tt := range tests {
		out, errOut, code := run(t, tt.args...)
		errOut = strings.ReplaceAll(errOut, filepath.Dir(offAdmin), "$DIR")
		if code != tt.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tt.name, code, tt.code, errOut)
		}
		if tt.stderr != "" && (len(errOut) < len(tt.stderr) || errOut[:len(tt.stderr)] != tt.stderr) || tt.stderr == "" && errOut != "" {
			t.Errorf("%s: stderr %q, want %q", tt.name, errOut, tt.stderr)
		}
		if tt.code != 2 && tt.stderr == "" {
			golden(t, tt.name, out, filepath.Dir(admin))
		}
	}
}

// TestQueryAdminBanned: the admin socket's check shows a ban as the
// deciding reason.
func TestQueryAdminBanned(t *testing.T) {
	access, admin := startBansDaemon(t)
	out, errOut, code := run(t, "query", "--socket", access, "--admin-socket", admin, "imap", "192.0.2.7")
	if code != 1 || errOut != "" || !strings.Contains(out, " imap from 192.0.2.7: refused\n  decided:  banned: 192.0.2.7/32 banned until 2025-06-01T13:00:00Z after 6 distinct failed passwords\n") {
		t.Errorf("exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
}

func TestCheckHostBanState(t *testing.T) {
	dir, allow, deny := tables(t, allowRules, denyRules)
	state := filepath.Join(dir, "bans.json")
	os.WriteFile(state, []byte(`{"version":1,"bans":[{"prefix":"192.0.2.10/32","since":"2025-06-01T12:00:05Z","until":"2099-06-01T13:00:05Z","count":6},`+
		`{"prefix":"2001:db8:1::/48","since":"2025-06-01T12:00:05Z","until":"2099-06-01T13:00:05Z","count":7}]}`+"\n"), 0o600)
	files := []string{"check-host", "--allow-file", allow, "--deny-file", deny, "--ban-state", state}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"checkhost-banned", []string{"--explain", "imap", "192.0.2.10"}, 0},
		{"checkhost-banned-json", []string{"--json", "imap", "192.0.2.10"}, 0},
		{"checkhost-not-banned", []string{"imap", "192.0.2.11"}, 0},
		{"checkhost-banned-v6-prefix", []string{"--ban-ipv6-prefix", "48", "imap", "2001:db8:1:2::5"}, 0},
	}
	for _, tt := range tests {
		out, errOut, code := run(t, append(files, tt.args...)...)
		if code != tt.code || errOut != "" {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tt.name, code, tt.code, errOut)
		}
		golden(t, tt.name, out, dir)
	}
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"check-host", "--allow-file", allow, "--deny-file", deny, "--ban-state", filepath.Join(dir, "none"), "imap", "192.0.2.10"}, 1, "loginctl: --ban-state: No such file or directory\n"},
		{[]string{"check-host", "--allow-file", allow, "--deny-file", deny, "--ban-ipv6-prefix", "48", "imap", "192.0.2.10"}, 2, "loginctl: check-host: --ban-ipv6-prefix needs --ban-state\n"},
		{[]string{"check-host", "--allow-file", allow, "--deny-file", deny, "--ban-state", allow, "imap", "192.0.2.10"}, 1, "loginctl: --ban-state: corrupt bans state file: "},
	} {
		_, errOut, code := run(t, tt.args...)
		if code != tt.code || len(errOut) < len(tt.stderr) || errOut[:len(tt.stderr)] != tt.stderr {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tt.args, code, errOut, tt.code, tt.stderr)
		}
	}
}
