package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/ctl"
)

// postPolicy posts one auth policy request body with ?command= and
// returns the reply body (HTTP 200 required).
func postPolicy(t *testing.T, c *http.Client, addr, command, body string) string {
	t.Helper()
	resp, err := c.Post("http://"+addr+"/?command="+command, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("auth policy %s: %v", command, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("auth policy %s: HTTP %d %q, %v", command, resp.StatusCode, b, err)
	}
	return string(b)
}

// report posts a failed login's report from src with pwhash.
func report(t *testing.T, c *http.Client, addr, src, pwhash string) {
	t.Helper()
	postPolicy(t, c, addr, "report", fmt.Sprintf(
		`{"login":"alice","protocol":"imap","pwhash":%q,"remote":%q,"success":false,"policy_reject":false,"tls":false}`, pwhash, src))
}

// allow posts an allow request for an IMAP login from src.
func allow(t *testing.T, c *http.Client, addr, src string) string {
	t.Helper()
	return postPolicy(t, c, addr, "allow", fmt.Sprintf(`{"login":"alice","protocol":"imap","pwhash":"0a1b","remote":%q,"tls":false}`, src))
}

// loginctl runs loginctl in process and returns its stdout and exit
// status.
func loginctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := ctl.Run(append([]string{"loginctl"}, args...), &out, &errOut, "e2e")
	if errOut.Len() > 0 {
		t.Logf("loginctl %q: stderr %s", args, errOut.String())
	}
	return out.String(), code
}

// TestBansHTTP drives the tcpwrapd binary with --bans over real HTTP:
// six reports with distinct wrong passwords from 127.0.0.2 ban it (its
// next allow is answered status -1 with the ban message), ten with one
// wrong password from 127.0.0.3 do not; loginctl lists and lifts the ban;
// with --ban-state the ban survives a restart.
func TestBansHTTP(t *testing.T) {
	dir, err := os.MkdirTemp("", "bans")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	allowFile, denyFile, state := filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny"), filepath.Join(dir, "bans.json")
	os.WriteFile(allowFile, []byte("imap: 127.0.0.0/8\n"), 0o644)
	os.WriteFile(denyFile, []byte("ALL: ALL\n"), 0o644)
	ln := listenPassed(t, accessd.FrontEndAuthPolicy, "tcp", "127.0.0.1:0")
	args := []string{"--allow-file", allowFile, "--deny-file", denyFile, "--bans", "--ban-state", state}
	start := func(sub string) *daemon {
		d := filepath.Join(dir, sub)
		os.Mkdir(d, 0o755)
		return startDaemon(t, d, []passed{ln}, 1, args...)
	}
	d := start("1")
	hc := &http.Client{Timeout: 30 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	const denied = `{"status":-1,"msg":"Too many failed logins from your address; try again later."}`

	for i := range 6 {
		if got := allow(t, hc, ln.addr, "127.0.0.2"); got != `{"status":0}` {
			t.Fatalf("allow before failure %d: %s", i+1, got)
		}
		report(t, hc, ln.addr, "127.0.0.2", fmt.Sprintf("guess%d", i))
	}
	for range 10 {
		report(t, hc, ln.addr, "127.0.0.3", "stale")
	}
	if got := allow(t, hc, ln.addr, "127.0.0.2"); got != denied {
		t.Errorf("allow after six distinct failures: %s, want %s", got, denied)
	}
	if got := allow(t, hc, ln.addr, "127.0.0.3"); got != `{"status":0}` {
		t.Errorf("allow after ten failures with one password: %s", got)
	}
	d.waitLog(t, "bans: banned", 1)

	out, code := loginctl(t, "bans", "--admin-socket", d.admin)
	if code != 0 || !strings.Contains(out, "127.0.0.2/32 ") || strings.Contains(out, "127.0.0.3") {
		t.Errorf("loginctl bans: exit %d:\n%s", code, out)
	}
	out, code = loginctl(t, "bans", "explain", "--admin-socket", d.admin, "127.0.0.3")
	if code != 0 || !strings.Contains(out, "127.0.0.3: not banned: source 127.0.0.3/32 has 1 distinct failed passwords") {
		t.Errorf("loginctl bans explain: exit %d:\n%s", code, out)
	}

	// Restart: SIGTERM saves the state file, the next start loads it.
	if err := d.p.Stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.p.Output(), "bans: state file saved") {
		t.Errorf("no save logged on stop:\n%s", d.p.Output())
	}
	d = start("2")
	if got := allow(t, hc, ln.addr, "127.0.0.2"); got != denied {
		t.Errorf("allow after the restart: %s, want the ban", got)
	}

	out, code = loginctl(t, "bans", "lift", "--admin-socket", d.admin, "127.0.0.2")
	if code != 0 || out != "lifted 1 ban overlapping 127.0.0.2\n" {
		t.Errorf("loginctl bans lift: exit %d: %q", code, out)
	}
	if got := allow(t, hc, ln.addr, "127.0.0.2"); got != `{"status":0}` {
		t.Errorf("allow after the lift: %s", got)
	}
	if _, code := loginctl(t, "bans", "lift", "--admin-socket", d.admin, "127.0.0.2"); code != 1 {
		t.Errorf("second lift: exit %d, want 1", code)
	}
}
