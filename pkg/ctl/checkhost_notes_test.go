package ctl

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCheckHostSaysWhatLintSays: a daemon name Dovecot never sends, or a
// misspelt one, gets lint's note on standard error (and in --json), with
// tcpdmatch's report unchanged on standard output; a CLIENT written as in
// the rules, "[::1]", is the address ::1.
func TestCheckHostSaysWhatLintSays(t *testing.T) {
	_, allow, deny := tables(t, "imap: [::1] 127.0.0.1\n", "ALL: ALL\n")
	files := []string{"check-host", "--allow-file", allow, "--deny-file", deny}
	tests := []struct {
		args       []string
		stderr     string // a substring; "" for none at all
		wantStdout string // a substring
	}{
		{[]string{"imaps", "127.0.0.1"}, `loginctl: note: daemon name "imaps": no Dovecot login process sends it`, "access:   denied\n"},
		{[]string{"imap-login", "127.0.0.1"}, `loginctl: note: daemon name "imap-login"`, "server:   process  imap-login\n"},
		{[]string{"imapp", "127.0.0.1"}, "loginctl: note: imapp: did you mean imap?", "access:   denied\n"},
		{[]string{"imap", "127.0.0.1"}, "", "access:   granted\n"},
		{[]string{"imap", "[::1]"}, "", "client:   address  ::1\nserver:   process  imap\nmatched:"},
		{[]string{"imap", "alice@[::1]"}, "", "client:   username alice\n"},
		{[]string{"imap", "[::1]"}, "", "access:   granted\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := run(t, append(files, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if tt.stderr == "" && errOut != "" || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr %q, want %q", errOut, tt.stderr)
			}
			if !strings.Contains(out, tt.wantStdout) {
				t.Errorf("stdout:\n%s\nwant %q", out, tt.wantStdout)
			}
		})
	}
	out, _, _ := run(t, append(files, "--json", "imaps", "127.0.0.1")...)
	var rep CheckHostReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "(use imap)") {
		t.Errorf("--json notes %q", rep.Notes)
	}
}
