package main

import (
	"path/filepath"
	"testing"
)

// TestBanOptionsRefused: --bans without the auth policy front end, and a
// --ban-* option without --bans, are usage errors before anything listens.
func TestBanOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "access")
	for _, args := range [][]string{
		{"--listen", sock, "--bans"},
		{"--listen", sock, "--postfix-listen", filepath.Join(dir, "pf"), "--bans"},
		{"--policy-listen", "127.0.0.1:0", "--ban-threshold", "3"},
		{"--policy-listen", "127.0.0.1:0", "--ban-state", filepath.Join(dir, "bans.json")},
		{"--policy-listen", "127.0.0.1:0", "--bans", "--ban-threshold", "0"},
		{"--policy-listen", "127.0.0.1:0", "--bans", "--ban-ipv6-prefix", "129"},
		{"--dovecot", "--bans"},
	} {
		if got := run(append([]string{"tcpwrapd"}, args...)); got != 2 {
			t.Errorf("%q: exit %d, want 2", args, got)
		}
	}
}
