package accessd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// TestDaemonNameNotPlain: the daemon name comes from the process that asks
// and becomes a path under a banners directory (libwrap opens DIR/<daemon>
// as it is). A name that is not a plain name is refused without a check:
// "0\n", logged, counted, and nothing of the file it names reaches the
// client.
func TestDaemonNameNotPlain(t *testing.T) {
	requireEngine(t)
	base := t.TempDir()
	dir := filepath.Join(base, "a", "banners")
	for _, d := range []string{dir, filepath.Join(dir, "sub"), filepath.Join(base, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(base, "etc"), "passwd", "root:SECRET\n")
	writeFile(t, filepath.Join(dir, "sub"), "imap", "SECRET\n")
	writeFile(t, dir, "imap", "Hello %d\n")
	stats := NewStats()
	r := &wrapopts.Runner{}
	env := testEnv()
	env.Effects = &ClientEffects{Runner: r}
	ts := startServer(t, "ALL: ALL: banners "+dir+"\n", "", func(s *server) { s.Env, s.Stats = env, stats })
	t.Cleanup(r.Wait)
	tests := []struct{ name, log string }{
		{"../../etc/passwd", `not a plain name: \"../../etc/passwd\" contains \"/\"`},
		{"sub/imap", `not a plain name: \"sub/imap\" contains \"/\"`},
		{"..", `not a plain name: \"..\"`},
		{".", `not a plain name: \".\"`},
		{"imap\x00/../../etc/passwd", `\"imap\\x00/../../etc/passwd\" contains a NUL byte`},
		{"\x00", `\"\\x00\" contains a NUL byte`},
		{"imap\r", "control character 0x0d"},
		{"imap\x1b[2J", "control character 0x1b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := stats.Snapshot().Errors[dovecotsock.ErrKindDaemonName]
			p := dialLoopback(t, "127.0.0.1")
			if got := askLive(t, ts.sock, tt.name, p); got != "0\n" {
				t.Errorf("reply %q, want %q", got, "0\n")
			}
			if got := clientGot(t, p); got != "" {
				t.Errorf("client got %q, want nothing", got)
			}
			waitFor(t, "log line", func() bool {
				return count(ts.log.String(), "level=WARN", `msg="daemon name is not a plain name, refused"`, tt.log) == 1
			})
			if n := stats.Snapshot().Errors[dovecotsock.ErrKindDaemonName] - before; n != 1 {
				t.Errorf("stats errors[%s] grew by %d, want 1", dovecotsock.ErrKindDaemonName, n)
			}
		})
	}
	t.Run("plain name", func(t *testing.T) {
		p := dialLoopback(t, "127.0.0.1")
		if got := askLive(t, ts.sock, "imap", p); got != "1\n" {
			t.Errorf("reply %q, want %q", got, "1\n")
		}
		if got := clientGot(t, p); got != "Hello imap\r\n" {
			t.Errorf("client got %q, want the banner", got)
		}
	})
	if strings.Contains(ts.log.String(), "SECRET") {
		t.Errorf("secret in the log:\n%s", ts.log)
	}
}
