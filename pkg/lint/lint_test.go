package lint

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// lintText lints allow (and deny, if not empty) written to a temporary
// directory and returns "file:line:col code" for each diagnostic.
func lintText(t *testing.T, allow, deny string) []string {
	t.Helper()
	dir := t.TempDir()
	tables := []Table{{Path: filepath.Join(dir, "hosts.allow"), Role: RoleAllow}}
	if err := os.WriteFile(tables[0].Path, []byte(allow), 0o644); err != nil {
		t.Fatal(err)
	}
	if deny != "" {
		tables = append(tables, Table{Path: filepath.Join(dir, "hosts.deny"), Role: RoleDeny})
		if err := os.WriteFile(tables[1].Path, []byte(deny), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := testOptions(t)
	opts.Resolver = nil
	rep := Lint(context.Background(), tables, opts)
	var got []string
	for _, d := range rep.Diagnostics {
		got = append(got, fmt.Sprintf("%s:%d:%d %s", filepath.Base(d.File), d.Line, d.Col, d.Code))
	}
	return got
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny string
		want        []string
	}{
		{"clean", "imap pop3: 192.0.2.0/24 [2001:db8::]/32 .example.com\n", "ALL: ALL\n", nil},
		{"host bits", "imap: 10.1.2.3/8\n", "", []string{"hosts.allow:1:7 netmask-host-bits"}},
		{"host bits with mask", "imap: 10.0.0.1/255.255.255.0\n", "", []string{"hosts.allow:1:7 netmask-host-bits"}},
		{"all-ones mask", "imap: 10.0.0.1/255.255.255.255\n", "", []string{"hosts.allow:1:7 netmask-all-ones"}},
		{"slash 32 is fine", "imap: 10.0.0.1/32\n", "", nil},
		{"slash 0", "imap: 0.0.0.0/0\n", "", []string{"hosts.allow:1:7 netmask-zero"}},
		{"all-zero mask is fine", "imap: 0.0.0.0/0.0.0.0\n", "", nil},
		{"atoi prefix", "imap: 10.0.0.0/8x\n", "", []string{"hosts.allow:1:7 netmask-atoi"}},
		{"bad prefix", "imap: 10.0.0.0/33 [2001:db8::]/129\n", "", []string{"hosts.allow:1:7 bad-netmask", "hosts.allow:1:19 bad-netmask"}},
		{"three-part net", "imap: 10.0.0/24\n", "", []string{"hosts.allow:1:7 bad-netmask"}},
		{"octal net", "imap: 010.0.0.0/8\n", "", []string{"hosts.allow:1:7 nondecimal-address"}},
		{"noncontiguous", "imap: 10.0.0.0/255.0.255.0\n", "", []string{"hosts.allow:1:7 netmask-noncontiguous"}},
		{"bare ipv6", "sshd: ::1\n", "", []string{"hosts.allow:1:7 bare-ipv6"}},
		{"bare ipv6 later in list", "ALL: 10.0.0.1 2001:db8::1 10.0.0.2\n", "", []string{"hosts.allow:1:15 bare-ipv6"}},
		{"scope refused", "imap: [::1%lo] [fe80::1%no-such-if] [fe80::%zz]/64\n", "", []string{"hosts.allow:1:7 bad-ipv6-scope", "hosts.allow:1:16 bad-ipv6-scope", "hosts.allow:1:37 bad-ipv6-scope"}},
		{"scope accepted", "imap: [fe80::1%lo] [::1%1] [fe80::%lo]/64\n", "", nil},
		{"bare ipv6 net with a mask", "imap: 2001:db8::/255.255.0.0\n", "", []string{"hosts.allow:1:7 bare-ipv6"}},
		{"ipv4 in brackets", "imap: [10.0.0.1]\n", "", []string{"hosts.allow:1:7 bad-ipv6"}},
		{"comment after rule", "sshd: 10.0.0.2 # trusted box\n", "", []string{"hosts.allow:1:16 comment-in-rule"}},
		{"comment with ALL", "sshd: 10.0.0.2 # ALL\n", "", []string{"hosts.allow:1:16 comment-in-rule"}},
		{"indented comment rule", "  # imap: ALL\n", "", []string{"hosts.allow:1:3 indented-comment"}},
		{"indented comment text", "  # just words\n", "", []string{"hosts.allow:1:3 indented-comment"}},
		{"missing separator", "imap 10.0.0.1\n", "", []string{"hosts.allow:1:0 missing-separator"}},
		{"no final newline", "imap: ALL", "", []string{"hosts.allow:1:0 missing-newline"}},
		{"comment continuation", "# note \\\nimap: ALL\n", "", []string{"hosts.allow:2:0 comment-continuation"}},
		{"empty lists", ": ALL\nimap:\n", "", []string{"hosts.allow:1:0 empty-list", "hosts.allow:2:0 empty-list"}},
		{"except at ends", "EXCEPT imap: ALL\nALL EXCEPT: ALL\n", "", []string{"hosts.allow:1:1 leading-except", "hosts.allow:2:5 trailing-except"}},
		{"fail", "imap: FAIL\n", "", []string{"hosts.allow:1:7 fail-keyword"}},
		{"misspelt wildcards", "ALLL: LOCALL PARANIOD unkown\n", "", []string{"hosts.allow:1:1 misspelt-wildcard", "hosts.allow:1:7 misspelt-wildcard", "hosts.allow:1:14 misspelt-wildcard", "hosts.allow:1:23 misspelt-wildcard"}},
		{"misspelt wildcard, no DNS noise", "submission: ALLL\n", "", []string{"hosts.allow:1:13 misspelt-wildcard"}},
		{"upper-case non-wildcard", "imap: BLOCKED EVERYONE\n", "", []string{"hosts.allow:1:7 unknown-wildcard", "hosts.allow:1:15 unknown-wildcard"}},
		{"misspelt dovecot daemons", "submision imapp pop sieeve: ALL\n", "", []string{"hosts.allow:1:1 misspelt-daemon", "hosts.allow:1:11 misspelt-daemon", "hosts.allow:1:17 misspelt-daemon", "hosts.allow:1:21 misspelt-daemon"}},
		{"classic daemon names are not slips", "ipop3d imapd pop3d sshd in.ftpd: all\n", "", nil},
		{"reserved daemon", "KNOWN LOCAL: ALL\n", "", []string{"hosts.allow:1:1 reserved-word", "hosts.allow:1:7 reserved-word"}},
		{"daemon name dots", "foo. .bar @x /y: 10.0.0.1\n", "", []string{"hosts.allow:1:1 daemon-name", "hosts.allow:1:6 daemon-name", "hosts.allow:1:11 daemon-name", "hosts.allow:1:14 daemon-name"}},
		{"user name", "imap: LOCAL@10.0.0.1 .x@10.0.0.2\n", "", []string{"hosts.allow:1:7 reserved-word", "hosts.allow:1:22 user-name"}},
		{"empty host", "imap: root@\n", "", []string{"hosts.allow:1:7 empty-host"}},
		{"dovecot names", "imaps pop3s imap-login managesieve dovecot IMAP: ALL\n", "", []string{
			"hosts.allow:1:1 dovecot-daemon-name", "hosts.allow:1:7 dovecot-daemon-name", "hosts.allow:1:13 dovecot-daemon-name",
			"hosts.allow:1:24 dovecot-daemon-name", "hosts.allow:1:36 dovecot-daemon-name"}},
		{"dovecot name with server", "imap-login@192.0.2.1: ALL\n", "", []string{"hosts.allow:1:1 dovecot-daemon-name"}},
		{"netgroups", "imap: @trusted @nosuch\n", "", []string{"hosts.allow:1:16 unknown-netgroup"}},
		{"numeric", "imap: .1 192.168 300.1.2.3 010.0.0.1 192.0.2. 10.0.0.1.\n", "", []string{
			"hosts.allow:1:7 numeric-begins-with-dot", "hosts.allow:1:10 incomplete-address", "hosts.allow:1:18 bad-address",
			"hosts.allow:1:28 bad-address", "hosts.allow:1:47 bad-address"}},
		{"name ends in dot", "imap: mail.example.com.\n", "", []string{"hosts.allow:1:7 name-ends-in-dot"}},
		{"options", "a: 10.0.0.1: spawn echo %z\nb: 10.0.0.2: setenv A=B\nc: 10.0.0.3: allow: deny\nd: 10.0.0.4:\n", "", []string{
			"hosts.allow:1:14 unknown-percent", "hosts.allow:2:14 bad-option", "hosts.allow:3:14 bad-option", "hosts.allow:4:13 bad-option"}},
		{"file list", "imap: /etc/dovecot/trusted.hosts /nonexistent\n", "", []string{
			"hosts.allow:1:34 missing-file-list", "trusted.hosts:1:1 file-list-word", "trusted.hosts:3:1 file-list-word"}},
		{"duplicate", "imap: 10.0.0.1\nIMAP: 10.0.0.1\n", "", []string{"hosts.allow:2:0 shadowed-rule"}},
		{"inside cidr", "imap: 10.0.0.0/8\nimap pop3: 10.0.0.0/8\nimap: 10.1.2.3 10.2.0.0/255.255.0.0\n", "", []string{"hosts.allow:3:0 shadowed-rule"}},
		{"inside prefix and suffix", "ALL: 192.0.2. .example.com\nimap: 192.0.2.7 mail.example.com root@.example.com\n", "", []string{"hosts.allow:2:0 shadowed-rule"}},
		{"not inside", "imap: 10.0.0.0/8\nimap: 11.0.0.1\npop3: 10.0.0.1\nimap: example.com\n", "", nil},
		{"union of earlier rules", "imap: 10.0.0.1\nimap: 10.0.0.2\nimap: 10.0.0.1 10.0.0.2\n", "", []string{"hosts.allow:3:0 shadowed-rule"}},
		{"except does not cover", "imap: ALL EXCEPT 10.0.0.1\nimap: 10.0.0.2\n", "", nil},
		{"aclexec does not cover", "imap: ALL: aclexec /bin/check\nimap: 10.0.0.2\n", "", nil},
		{"catch-all in allow", "imap: 10.0.0.1\nALL: ALL\nimap: 10.0.0.2\n", "sshd: ALL\n", []string{"hosts.allow:2:0 unreachable-rules"}},
		{"slash 32 is the address", "imap: 10.0.0.1/32\nimap: 10.0.0.1\n", "", []string{"hosts.allow:2:0 shadowed-rule"}},
		{"ipv6 inside net", "imap: [2001:db8::]/32\nimap: [2001:db8::1] [2001:db8:0:1::]/64\nimap: [2001:db9::1]\n", "", []string{"hosts.allow:2:0 shadowed-rule"}},
		{"aclexec then allow covers", "imap: ALL: aclexec /bin/check: allow\nimap: 10.0.0.2\n", "", []string{"hosts.allow:1:32 aclexec-decided", "hosts.allow:2:0 shadowed-rule"}},
		{"aclexec then deny", "imap: ALL: aclexec /bin/check : deny\n", "", []string{"hosts.allow:1:33 aclexec-decided"}},
		{"allow without aclexec", "imap: ALL: spawn echo: allow\n", "", nil},
		{"continuation at end", "imap: 10.0.0.1\npop3: 10.0.0.2 \\\n", "", []string{"hosts.allow:2:16 continuation-at-end"}},
		{"continued lines at end", "imap: 10.0.0.1 \\\n 10.0.0.2 \\\n", "", []string{"hosts.allow:2:11 continuation-at-end"}},
		{"comment continued at end", "imap: 10.0.0.1\n# note \\\n", "", []string{"hosts.allow:2:8 continuation-at-end"}},
		{"crlf", "imap: 10.0.0.1\r\n# note\r\npop3: 10.0.0.2, 10.0.0.3\r\n", "", nil},
		{"crlf continuation", "imap: 10.0.0.1 \\\r\n 10.0.0.2\r\n# note \\\r\n", "", []string{"hosts.allow:1:16 crlf-continuation", "hosts.allow:2:0 missing-separator"}},
		{"allow covers deny", "imap: 10.0.0.0/8: allow\n", "imap: 10.1.1.1\nimap: 11.1.1.1\n", []string{"hosts.deny:1:0 shadowed-rule"}},
		{"policy tarpit", "imap: 10.0.0.1: setenv TCPWRAPD_POLICY_STATUS 10\nimap: 10.0.0.2: setenv TCPWRAPD_POLICY_STATUS 99\n",
			"imap: 10.0.0.3: setenv TCPWRAPD_POLICY_STATUS 5: allow\n", []string{
				"hosts.allow:1:17 policy-tarpit", "hosts.allow:2:17 policy-tarpit", "hosts.deny:1:17 policy-tarpit"}},
		{"policy tarpit bad values", "imap: 10.0.0.1: setenv TCPWRAPD_POLICY_STATUS ten\nimap: 10.0.0.2: setenv TCPWRAPD_POLICY_STATUS 0\nimap: 10.0.0.3: setenv TCPWRAPD_POLICY_STATUS\n", "", []string{
			"hosts.allow:1:17 bad-policy-status", "hosts.allow:2:17 bad-policy-status", "hosts.allow:3:17 bad-policy-status"}},
		{"policy tarpit in a denial", "imap: 10.0.0.1: setenv TCPWRAPD_POLICY_STATUS 5: deny\n", "imap: 10.0.0.2: setenv TCPWRAPD_POLICY_STATUS 5\n", []string{
			"hosts.allow:1:17 policy-tarpit-denied", "hosts.deny:1:17 policy-tarpit-denied"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lintText(t, tt.allow, tt.deny)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}

// TestShadowFirstEntry checks that, of several earlier rules that cover a
// token, the first one is named, whatever the prefix lengths.
func TestShadowFirstEntry(t *testing.T) {
	for _, tt := range []struct{ name, allow, want string }{
		{"longer net first", "imap: 10.1.0.0/16\nimap: 10.0.0.0/8\nimap: 10.1.2.3\n", "line 1"},
		{"shorter net first", "imap: 10.0.0.0/8\npop3 imap: 10.1.0.0/16\nimap: 10.1.2.3\n", "line 1"},
		{"address before net", "imap: 10.1.2.3\nimap: 10.0.0.0/8\nimap: 10.1.2.3 10.9.9.9\n", "line 1, line 2 together"},
		{"longer suffix first", "imap: .mail.example.com\nimap: .example.com\nimap: a.mail.example.com\n", "line 1"},
		{"shorter suffix first", "imap: .example.com\npop3 imap: .mail.example.com\nimap: a.mail.example.com\n", "line 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hosts.allow")
			os.WriteFile(p, []byte(tt.allow), 0o644)
			rep := Lint(context.Background(), []Table{{Path: p, Role: RoleAllow}}, Options{})
			if len(rep.Diagnostics) != 1 || rep.Diagnostics[0].Line != 3 || !strings.HasPrefix(rep.Diagnostics[0].Msg, "rule is never used: "+tt.want+" ") {
				t.Errorf("got %v, want line 3 shadowed by %s", rep.Diagnostics, tt.want)
			}
		})
	}
}

// TestBlocklistShadow lints a long blocklist with a repeated address and
// an address inside an earlier net at its end.
func TestBlocklistShadow(t *testing.T) {
	list := "ALL: 192.0.2.0/24\n" + blocklist(20_000) + "ALL: 10.0.0.7\nALL: 192.0.2.9\n"
	p := filepath.Join(t.TempDir(), "hosts.deny")
	os.WriteFile(p, []byte(list), 0o644)
	rep := Lint(context.Background(), []Table{{Path: p, Role: RoleDeny}}, Options{})
	var got []string
	for _, d := range rep.Diagnostics {
		got = append(got, d.String())
	}
	want := []string{
		p + `:20002: warning: rule is never used: it repeats the daemons and clients of line 8 ("ALL: 10.0.0.7"), which decides first [shadowed-rule]`,
		p + `:20003: warning: rule is never used: line 1 ("ALL: 192.0.2.0/24") matches every request it matches and decides first [shadowed-rule]`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDNSChecks(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hosts.allow")
	os.WriteFile(p, []byte("imap: localhost ip6-loopback nosuch.example 192.0.2.1 127.0.0.1 *.example.com\n"), 0o644)
	opts := testOptions(t)
	opts.ReverseLookups = true
	rep := Lint(context.Background(), []Table{{Path: p, Role: RoleAllow}}, opts)
	var got []string
	for _, d := range rep.Diagnostics {
		got = append(got, fmt.Sprintf("%d %s %s: %s", d.Col, d.Severity, d.Code, d.Msg))
	}
	want := []string{
		"17 warning host-alias: ip6-loopback: hostname alias (official name: localhost); libwrap compares the verified name, which is the official one",
		"30 warning host-not-found: nosuch.example: host not found",
		"45 info no-reverse-name: host address 192.0.2.1->name lookup failed",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if rep.Errors != 0 || rep.Warnings != 2 || rep.Infos != 1 {
		t.Errorf("counts = %d/%d/%d, want 0/2/1", rep.Errors, rep.Warnings, rep.Infos)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	ww := filepath.Join(dir, "ww.allow")
	os.WriteFile(ww, []byte("ALL: ALL\n"), 0o666)
	os.Chmod(ww, 0o666)
	tests := []struct {
		name  string
		table Table
		want  string
	}{
		{"missing default", Table{Path: filepath.Join(dir, "none"), Role: RoleAllow}, "info file-missing"},
		{"missing explicit", Table{Path: filepath.Join(dir, "none"), Role: RoleAllow, Explicit: true}, "error cannot-open"},
		{"directory", Table{Path: dir, Role: RoleDeny}, "warning not-a-file"},
		{"world writable", Table{Path: ww, Role: RoleAllow}, "warning world-writable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := Lint(context.Background(), []Table{tt.table}, Options{})
			if len(rep.Diagnostics) != 1 {
				t.Fatalf("got %v", rep.Diagnostics)
			}
			d := rep.Diagnostics[0]
			if got := d.Severity.String() + " " + d.Code; got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGuessRole(t *testing.T) {
	for in, want := range map[string]Role{
		"/etc/hosts.allow": RoleAllow, "x/hosts.deny": RoleDeny, "rules.txt": RoleTable, "fail2ban.hosts.deny": RoleDeny,
	} {
		if got := GuessRole(in); got != want {
			t.Errorf("GuessRole(%q) = %q, want %q", in, got, want)
		}
	}
}
