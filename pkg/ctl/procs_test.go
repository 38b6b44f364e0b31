package ctl

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// serveStatus answers loginsvc's control protocol ("status\n" → one JSON
// control.Status) on a socket in a temporary directory, as the supervisor's
// control socket does, and returns its path.
func serveStatus(t *testing.T, st *control.Status) string {
	t.Helper()
	return serveControl(t, map[string]any{control.StatusRequest: st})
}

// serveControl answers loginsvc's control protocol with answers, by
// request line, on a socket in a temporary directory, and returns its
// path.
func serveControl(t *testing.T, answers map[string]any) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "loginsvc.ctl")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			if v, ok := answers[line]; ok {
				json.NewEncoder(c).Encode(v)
			}
			c.Close()
		}
	}()
	return path
}

func sampleLoginStatus() *control.Status {
	started := time.Now().Add(-90 * time.Second)
	return &control.Status{Version: control.StatusSchemaVersion, PID: 4242, Started: started, Generation: 2,
		Services: []control.ServiceStatus{
			{Name: "imap-login", Mode: "high-performance", ProcessLimit: 4, ClientLimit: 1000, ProcessMinAvail: 1,
				Counters: control.Counters{Accepted: 120, Direct: 100, Refused: 3, AccessErrors: 4, Evicted: 1, Spawned: 2, Logins: 40, AuthFailures: 7},
				Procs: []control.ProcInfo{{PID: 5001, Service: "imap-login", Mode: "high-performance", Generation: 2,
					Started: started, Ready: true, Served: 117, LoggingIn: 2, Proxying: 5, Logins: 40}}},
			{Name: "pop3-login", Mode: "high-security", ProcessLimit: 100, ClientLimit: 1, Pending: 1,
				Counters: control.Counters{Accepted: 9, Spawned: 9, SpawnFailures: 1},
				Procs: []control.ProcInfo{{PID: 5002, Service: "pop3-login", Mode: "high-security", Generation: 2,
					Started: started, Checking: 1}}},
		}}
}

// ages hides the age columns, which depend on the clock.
var ages = regexp.MustCompile(`\b1m3[01]s\b`)

func TestProcsAndLoginStatus(t *testing.T) {
	st := sampleLoginStatus()
	sock := serveStatus(t, st)
	for _, tt := range []struct{ name, cmd string }{{"procs", "procs"}, {"login-status", "login-status"}} {
		out, errOut, code := run(t, tt.cmd, "--socket", sock)
		if code != 0 || errOut != "" {
			t.Fatalf("%s: exit %d, stderr %q", tt.cmd, code, errOut)
		}
		golden(t, tt.name, ages.ReplaceAllString(out, "$$AGE"), "")

		out, _, code = run(t, tt.cmd, "--socket", sock, "--json")
		var got control.Status
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
			t.Fatalf("%s --json: exit %d, %v:\n%s", tt.cmd, code, err, out)
		}
		if diff := cmp.Diff(st, &got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Errorf("%s --json (-want +got):\n%s", tt.cmd, diff)
		}
	}
	if _, errOut, code := run(t, "procs", "--socket", filepath.Join(t.TempDir(), "none")); code != 1 ||
		!strings.Contains(errOut, "give --socket PATH or -c CONFIG") {
		t.Errorf("no loginsvc: exit %d, stderr %q; want 1 and a message suggesting --socket", code, errOut)
	}

	// -c CONFIG finds the socket as base_dir/loginsvc.ctl.
	conf := filepath.Join(t.TempDir(), "loginsvc.conf")
	if err := os.WriteFile(conf, []byte("base_dir = "+filepath.Dir(sock)+"\nprotocols = imap\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"procs", "login-status"} {
		if out, errOut, code := run(t, cmd, "-c", conf); code != 0 || !strings.Contains(out, "imap-login") {
			t.Errorf("%s -c %s: exit %d, stderr %q, stdout:\n%s", cmd, conf, code, errOut, out)
		}
	}
	if _, errOut, code := run(t, "procs", "-c", conf, "--socket", sock); code != 2 {
		t.Errorf("-c and --socket: exit %d, stderr %q; want 2", code, errOut)
	}
}
