package lint

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// applyFixes applies every Fix of diags to text (one rule per line) and
// fails the test if a Fix does not find its Old text at its column.
func applyFixes(t *testing.T, text string, diags []Diagnostic) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	// Right to left within a line, so earlier columns stay valid.
	for i := len(diags) - 1; i >= 0; i-- {
		d := diags[i]
		if d.Fix == nil {
			continue
		}
		line := lines[d.Line-1]
		at := d.Col - 1
		if at < 0 || at+len(d.Fix.Old) > len(line) || line[at:at+len(d.Fix.Old)] != d.Fix.Old {
			t.Fatalf("%s: fix %+v: %q is not at column %d of %q", d, *d.Fix, d.Fix.Old, d.Col, line)
		}
		lines[d.Line-1] = line[:at] + d.Fix.New + line[at+len(d.Fix.Old):]
	}
	return strings.Join(lines, "\n")
}

func lintAllow(t *testing.T, allow string) []Diagnostic {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts.allow")
	if err := os.WriteFile(path, []byte(allow), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t)
	opts.Resolver = nil
	return Lint(context.Background(), []Table{{Path: path, Role: RoleAllow}}, opts).Diagnostics
}

// TestFixesDoWhatTheAdminMeant applies every machine-readable fix lint
// offers, lints the result again (nothing left at Warning or above) and
// asks the evaluator: the fixed rule grants the client the admin meant and
// not one outside it.
func TestFixesDoWhatTheAdminMeant(t *testing.T) {
	tests := []struct {
		name, rule   string
		code         string // the diagnostic that carries the fix
		fixed        string // the rule after the fix
		match, other string // a client the admin meant, and one outside
	}{
		{"bare ipv6 prefix", "imap: 2001:db8::/32\n", "bare-ipv6", "imap: [2001:db8::]/32\n", "2001:db8:1::5", "2001:db9::5"},
		{"bare scoped ipv6", "imap: fe80::1%lo\n", "bare-ipv6", "imap: [fe80::1%lo]\n", "fe80::1", "fe80::2"},
		{"bare ipv6 address", "imap: 2001:db8::1\n", "bare-ipv6", "imap: [2001:db8::1]\n", "2001:db8::1", "2001:db8::2"},
		{"prefix inside brackets", "imap: [2001:db8::/32]\n", "bad-ipv6", "imap: [2001:db8::]/32\n", "2001:db8:ff::1", "2001:db9::1"},
		{"ipv4 in brackets", "imap: [192.0.2.7]\n", "bad-ipv6", "imap: 192.0.2.7\n", "192.0.2.7", "192.0.2.8"},
		{"incomplete address", "imap: 192.0.2\n", "incomplete-address", "imap: 192.0.2.\n", "192.0.2.7", "192.0.3.7"},
		{"four parts and a dot", "imap: 192.0.2.7.\n", "bad-address", "imap: 192.0.2.7\n", "192.0.2.7", "192.0.2.8"},
		{"host bits", "imap: 10.1.2.3/8\n", "netmask-host-bits", "imap: 10.0.0.0/8\n", "10.200.0.1", "11.0.0.1"},
		{"host bits with mask", "imap: 10.0.0.1/255.255.255.0\n", "netmask-host-bits", "imap: 10.0.0.0/255.255.255.0\n", "10.0.0.9", "10.0.1.9"},
		{"all-ones mask", "imap: 10.0.0.1/255.255.255.255\n", "netmask-all-ones", "imap: 10.0.0.1\n", "10.0.0.1", "10.0.0.2"},
		{"atoi prefix", "imap: 10.0.0.0/8x\n", "netmask-atoi", "imap: 10.0.0.0/8\n", "10.9.9.9", "11.0.0.1"},
		{"atoi ipv6 prefix", "imap: [2001:db8::]/32x\n", "netmask-atoi", "imap: [2001:db8::]/32\n", "2001:db8::9", "2001:db9::9"},
		{"misspelt ALL", "imap: ALLL\n", "misspelt-wildcard", "imap: ALL\n", "192.0.2.1", ""},
		{"misspelt daemon", "imapp: 192.0.2.1\n", "misspelt-daemon", "imap: 192.0.2.1\n", "192.0.2.1", "192.0.2.2"},
		{"empty host", "imap: ALL@\n", "empty-host", "imap: ALL@ALL\n", "192.0.2.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diags := lintAllow(t, tt.rule)
			var found bool
			for _, d := range diags {
				if d.Code == tt.code {
					found = d.Fix != nil
				}
			}
			if !found {
				t.Fatalf("no %s diagnostic with a fix: %v", tt.code, diags)
			}
			fixed := applyFixes(t, tt.rule, diags)
			if fixed != tt.fixed {
				t.Errorf("fixed rule %q, want %q", fixed, tt.fixed)
			}
			for _, d := range lintAllow(t, fixed) {
				if d.Severity >= Warning {
					t.Errorf("after the fix: %s (hint %q)", d, d.Hint)
				}
			}
			p := hostsrules.Compile(hostsrules.Source{Name: "hosts.allow", Data: []byte(fixed)},
				hostsrules.Source{Name: "hosts.deny", Data: []byte("ALL: ALL\n")})
			ask := func(addr string) hostsrules.Verdict {
				req := hostsrules.Request{Daemon: "imap", Client: hostsrules.Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr(addr), 1)}}
				return p.Check(context.Background(), &req, nil).Verdict
			}
			if v := ask(tt.match); v != hostsrules.Granted {
				t.Errorf("%s after the fix: %v, want granted", tt.match, v)
			}
			if tt.other != "" {
				if v := ask(tt.other); v != hostsrules.Denied {
					t.Errorf("%s after the fix: %v, want denied", tt.other, v)
				}
			}
		})
	}
}

// TestEveryHintWithAnEditHasAFix: a hint that says "write X" is an
// edit, and lint must offer it as a Fix (so the test above covers it).
func TestEveryHintWithAnEditHasAFix(t *testing.T) {
	rules := "ALLL imapp: LOCALL 2001:db8::/32\nimap: [2001:db8::/32]\nimap: 192.0.2\nimap: 10.1.2.3/8\n" +
		"imap: 10.0.0.1/255.255.255.255\nimap: 10.0.0.0/8x\nimap: ALL@\nimap: 192.0.2.7.\n"
	for _, d := range lintAllow(t, rules) {
		if strings.HasPrefix(d.Hint, "write ") && !strings.Contains(d.Hint, "IPv6-net") && !strings.Contains(d.Hint, "/LENGTH") && d.Fix == nil {
			t.Errorf("%s: hint %q has no Fix", d, d.Hint)
		}
	}
}
