package masterauth_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/masterauth"
)

// The same hand-off against a real Dovecot 2.4.1 (internal/dovecot24lab):
// the 104-byte login_request of the Dovecot24 layout, on 2.4's post-login
// imap socket base_dir/login/imap.

// rootUser returns the uid and gid of name in the trixie root's
// /etc/passwd: the lab's static userdb runs mail as the root's dovecot
// user, whose ids are the root's, not the host's.
func rootUser(t *testing.T, root, name string) (uid, gid int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 4 && f[0] == name {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				return uid, gid
			}
		}
	}
	t.Fatalf("no user %s in %s/etc/passwd", name, root)
	return 0, 0
}

func startLab24(t *testing.T) handoffLab {
	t.Helper()
	d := dovecot24lab.Start(t, dovecot24lab.Config{
		Protocols: []string{"imap"},
		Users:     map[string]string{labUser: labPass},
	})
	// mail_driver = maildir, mail_path = InRoot/mail/%{user}: the Maildir
	// is Dir/mail/alice itself.
	uid, gid := rootUser(t, d.Root, "dovecot")
	makeMaildir24(t, filepath.Join(d.Dir, "mail", labUser), uid, gid)
	run := filepath.Join(d.Dir, "run")
	return handoffLab{
		layout:     masterauth.Dovecot24,
		authSocket: filepath.Join(run, "login", "login"),
		imapSocket: filepath.Join(run, "login", "imap"),
		log:        d.Log,
		waitLog: func(ctx context.Context, substr string) (string, error) {
			for {
				if l := d.Log(); strings.Contains(l, substr) {
					return l, nil
				}
				select {
				case <-ctx.Done():
					return d.Log(), ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
		},
	}
}

func makeMaildir24(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	msg := "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: hand-off\r\n\r\nhello\r\n"
	paths := []string{dir, dir + "/cur", dir + "/new", dir + "/tmp"}
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f := dir + "/new/1700000000.M1P1.lab"
	if err := os.WriteFile(f, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(paths, f) {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDovecot24Handoff: a real client TCP connection, authenticated by
// 2.4's auth, handed off with a Dovecot24 (104-byte) login_request to
// 2.4.1's post-login imap, which answers the pipelined SELECT.
func TestDovecot24Handoff(t *testing.T) {
	testHandoff(t, startLab24(t))
}
