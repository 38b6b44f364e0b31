package dovecot24lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartLogin: a lab 2.4.1 master comes up on loopback, logs alice in
// over IMAP and POP3 and refuses a wrong password; after the test nothing
// of it is left (its directory, its processes, its /proc mount).
func TestStartLogin(t *testing.T) {
	root := Require(t)
	if v, err := Version(root); err != nil || !strings.HasPrefix(v, "2.4") {
		t.Fatalf("dovecot --version in %s: %q, %v", root, v, err)
	}
	var dir string
	t.Run("lab", func(t *testing.T) {
		d := Start(t, Config{})
		dir = d.Dir
		ctx := context.Background()
		for _, tt := range []struct{ proto, pass, want string }{
			{"imap", "secret", "a OK"},
			{"imap", "wrong", "a NO"},
			{"pop3", "secret", "+OK"},
			{"pop3", "wrong", "-ERR"},
		} {
			got, err := Login(ctx, tt.proto, "127.0.0.1", d.Addr(tt.proto), "alice", tt.pass)
			if err != nil || !strings.HasPrefix(got, tt.want) {
				t.Errorf("%s login with %q: %q, %v; want %q...", tt.proto, tt.pass, got, err, tt.want)
			}
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab directory %s left behind: %v", dir, err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), filepath.Join(root, "proc")) {
		t.Errorf("%s/proc is mounted in the test's namespace", root)
	}
}
