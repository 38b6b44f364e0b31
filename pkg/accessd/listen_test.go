package accessd

import (
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestListen(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		mode    os.FileMode
		wantErr string
	}{
		{"fresh, parent created", nil, 0o600, ""},
		{"mode 0666", nil, 0o666, ""},
		{"stale socket removed", func(t *testing.T, p string) {
			os.MkdirAll(filepath.Dir(p), 0o755)
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}, 0o600, ""},
		{"live socket kept", func(t *testing.T, p string) {
			os.MkdirAll(filepath.Dir(p), 0o755)
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}, 0o600, "in use"},
		{"regular file kept", func(t *testing.T, p string) {
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, nil, 0o644)
		}, 0o600, "not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortDir(t), "sub", "access")
			if tt.setup != nil {
				tt.setup(t, path)
			}
			ln, err := Listen(path, tt.mode, -1, -1)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Listen error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode() != os.ModeSocket|tt.mode {
				t.Errorf("mode = %v, want %v", st.Mode(), os.ModeSocket|tt.mode)
			}
			dst, _ := os.Stat(filepath.Dir(path))
			if dst.Mode().Perm() != 0o755 {
				t.Errorf("parent mode = %v, want 0755", dst.Mode().Perm())
			}
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.Close()
		})
	}
}

// TestListenOwner checks --socket-user/--socket-group resolution and chown
// (needs root for a foreign owner).
func TestListenOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, err := LookupUser("nobody")
	if err != nil || strconv.Itoa(uid) != u.Uid {
		t.Fatalf("LookupUser(nobody) = %d, %v; want %s", uid, err, u.Uid)
	}
	if id, err := LookupUser("4242"); err != nil || id != 4242 {
		t.Errorf("LookupUser(4242) = %d, %v", id, err)
	}
	if id, err := LookupGroup(""); err != nil || id != -1 {
		t.Errorf("LookupGroup(\"\") = %d, %v", id, err)
	}
	if _, err := LookupGroup("no-such-group-xyz"); err == nil {
		t.Error("LookupGroup of an unknown name succeeded")
	}
	path := filepath.Join(shortDir(t), "access")
	ln, err := Listen(path, 0o660, uid, 4243)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, _ := os.Stat(path)
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != uid || sys.Gid != 4243 {
		t.Errorf("owner %d:%d, want %d:4243", sys.Uid, sys.Gid, uid)
	}
}

// TestListenCreatesLoginDirAsDovecotWants: missing directories named
// "login" and below are created root:dovenull 0750, as Dovecot enforces on
// base_dir/login (so it has nothing to "correct"); others 0755.
func TestListenCreatesLoginDirAsDovecotWants(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	gid, err := LookupGroup(loginGroup)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("group %s (dovecot-core) missing under CI: %v", loginGroup, err)
		}
		t.Skipf("no group %s: %v", loginGroup, err)
	}
	base := filepath.Join(shortDir(t), "dovecot")
	ln, err := Listen(filepath.Join(base, "login", "tcpwrapd", "access"), 0o660, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tt := range []struct {
		dir  string
		mode os.FileMode
		gid  int
	}{
		{base, 0o755, 0},
		{filepath.Join(base, "login"), 0o750, gid},
		{filepath.Join(base, "login", "tcpwrapd"), 0o750, gid},
	} {
		st, err := os.Stat(tt.dir)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != tt.mode || sys.Uid != 0 || int(sys.Gid) != tt.gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v 0:%d", tt.dir, st.Mode().Perm(), sys.Uid, sys.Gid, tt.mode, tt.gid)
		}
	}
}
