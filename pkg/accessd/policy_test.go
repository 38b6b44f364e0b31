package accessd

import (
	"os"
	"path/filepath"
	"testing"
)

// TestListenPolicy: a policy listener is a loopback TCP address or a unix
// socket path (with its mode); other addresses are refused.
func TestListenPolicy(t *testing.T) {
	sock := filepath.Join(shortDir(t), "pf")
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{"[::1]:0", true},
		{"localhost:0", true},
		{sock, true},
		{"0.0.0.0:0", false},
		{"[::]:0", false},
		{":0", false},
		{"192.0.2.1:0", false},
		{"example.org:0", false},
		{"127.0.0.1", false},
		{"relative/path", false},
	} {
		ln, err := ListenPolicy(tt.addr, 0o640, -1, -1)
		if (err == nil) != tt.ok {
			t.Errorf("ListenPolicy(%q): %v, want ok=%v", tt.addr, err, tt.ok)
		}
		if err != nil {
			continue
		}
		if tt.addr == sock {
			if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("%s: %v, %v; want mode 0640", sock, fi, err)
			}
		}
		ln.Close()
	}
}
