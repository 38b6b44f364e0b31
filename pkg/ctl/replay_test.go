package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplay: check-host --as replays captured Dovecot auth policy and
// Postfix policy requests through the front ends' code paths and prints
// the verdict, the deciding rule and the exact reply bytes (golden files
// testdata/replay-*.golden).
func TestReplay(t *testing.T) {
	dir, a, d := t.TempDir(), "", ""
	banners := filepath.Join(dir, "banners")
	os.Mkdir(banners, 0o755)
	os.WriteFile(filepath.Join(banners, "imap"), []byte("No IMAP for %a here\n"), 0o644)
	os.WriteFile(filepath.Join(banners, "smtpd"), []byte("No mail from %a here\n"), 0o644)
	allow := "imap: 192.0.2.0/24 : setenv TCPWRAPD_POLICY_STATUS 10\nimap: 192.0.2.99 EXCEPT 192.0.2.99 : deny\nimap: 198.51.100.8 : setenv TCPWRAPD_POLICY_STATUS soon\n"
	deny := "imap: 127.0.0.2 : banners " + banners + "\nsmtpd: 127.0.0.2 : banners " + banners + "\nsmtpd: 127.0.0.3 : nosuchoption\nsubmission: 127.0.0.2\n"
	for name, text := range map[string]string{"hosts.allow": allow, "hosts.deny": deny} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, d = filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	postfix37, err := os.ReadFile("testdata/replay-postfix37-rcpt.txt")
	if err != nil {
		t.Fatal(err)
	}
	block := func(client, context string) string {
		return strings.Replace(strings.Replace(string(postfix37), "client_address=127.0.0.2", "client_address="+client, 1),
			"policy_context=", "policy_context="+context, 1)
	}
	tests := []struct {
		name  string
		input string
		args  []string
		code  int
	}{
		{"replay-dovecot-denied", `{"device_id":"","login":"alice","protocol":"imap","pwhash":"7f3a","remote":"127.0.0.2","session_id":"abc","tls":false}`,
			[]string{"--as", "dovecot-policy"}, 0},
		{"replay-dovecot-granted", `{"login":"alice","protocol":"pop3","pwhash":"7f3a","remote":"127.0.0.2","tls":false}`,
			[]string{"--as", "dovecot-policy"}, 0},
		{"replay-dovecot-tarpit", `{"login":"alice","protocol":"imap","pwhash":"7f3a","remote":"192.0.2.7","remote_port":"50123","local":"192.0.2.1","local_port":"143","tls":true}`,
			[]string{"--as", "dovecot-policy", "--explain"}, 0},
		{"replay-dovecot-bad-tarpit", `{"protocol":"imap","remote":"198.51.100.8"}`,
			[]string{"--as", "dovecot-policy"}, 0},
		{"replay-dovecot-report", `{"login":"alice","protocol":"imap","pwhash":"7f3a","remote":"127.0.0.2","success":false,"policy_reject":true,"tls":false}`,
			[]string{"--as", "dovecot-policy", "--command", "report"}, 0},
		{"replay-dovecot-malformed", `{"protocol":"imap","remote":"not-an-address"}`,
			[]string{"--as", "dovecot-policy"}, 1},
		{"replay-dovecot-json", `{"protocol":"imap","remote":"127.0.0.2"}`,
			[]string{"--as", "dovecot-policy", "--json"}, 0},
		{"replay-postfix-denied", string(postfix37), []string{"--as", "postfix"}, 0},
		{"replay-postfix-521", block("127.0.0.2", ""), []string{"--as", "postfix", "--reject", "521 5.7.1"}, 0},
		{"replay-postfix-granted", strings.TrimSuffix(block("127.0.0.1", ""), "\n"), []string{"--as", "postfix"}, 0},
		{"replay-postfix-context", block("127.0.0.2", "submission"), []string{"--as", "postfix"}, 0},
		{"replay-postfix-daemon", block("127.0.0.2", ""), []string{"--as", "postfix", "--daemon", "submission"}, 0},
		{"replay-postfix-rules-error", block("127.0.0.3", ""), []string{"--as", "postfix"}, 1},
		{"replay-postfix-malformed", "request=smtpd_access_policy\nclient_address\n\n", []string{"--as", "postfix"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := filepath.Join(t.TempDir(), "request")
			if err := os.WriteFile(in, []byte(tt.input), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"check-host", "--allow-file", a, "--deny-file", d}, tt.args...)
			out, errOut, code := run(t, append(args, in)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, errOut)
			}
			golden(t, tt.name, out+"-- stderr --\n"+errOut, dir)
		})
	}
}

// TestCheckHostTarpit: a tcpdmatch-style check shows the auth policy
// tarpit of the granting rule.
func TestCheckHostTarpit(t *testing.T) {
	dir, a, d := tables(t, "imap: 192.0.2.0/24 : setenv TCPWRAPD_POLICY_STATUS 45\n", "ALL: ALL\n")
	out, errOut, code := run(t, "check-host", "--allow-file", a, "--deny-file", d, "imap", "192.0.2.7")
	if code != 0 {
		t.Errorf("exit %d; stderr %q", code, errOut)
	}
	golden(t, "checkhost-tarpit", out, dir)
}

// TestReplayUsage: the replay flags go together.
func TestReplayUsage(t *testing.T) {
	for _, args := range [][]string{
		{"check-host", "--as", "dovecot"},
		{"check-host", "--as", "postfix"},
		{"check-host", "--as", "postfix", "a", "b"},
		{"check-host", "--command", "report", "imap", "127.0.0.1"},
		{"check-host", "--as", "postfix", "--command", "report", "-"},
		{"check-host", "--as", "dovecot-policy", "--reject", "521", "-"},
		{"check-host", "--as", "postfix", "--reject", "250", "-"},
	} {
		if _, errOut, code := run(t, args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d (usage); stderr %q", args, code, ExitUsage, errOut)
		}
	}
}
