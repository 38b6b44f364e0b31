package master

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// TestLoginProcessesDieWithTheSupervisor kills the supervisor (this test
// binary as loginsvc -F, with real sandboxed login processes) with
// SIGKILL and checks that every login process exits: preforked ones, one
// serving a client, and one that ignores the end of its control socket
// (XORPHAN), which only the parent-death signal ends. The kernel clears
// that signal when a process changes its uid, so the login process sets
// it again after dropping root.
func TestLoginProcessesDieWithTheSupervisor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (the uid change is what clears the parent-death signal)")
	}
	for _, mode := range []struct{ name, conf string }{
		{"high-security", "service_count = 1\nprocess_min_avail = 2"},
		{"high-performance", "service_count = 0\nprocess_min_avail = 2\nclient_limit = 1"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			port := freePort(t)
			text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nservice imap-login {\n inet_listener imap {\n  port = %d\n }\n%s\n}\n",
				filepath.Join(dir, "run"), port, mode.conf)
			sp := startSupervisorProc(t, dir, text)
			var pids []int
			t.Cleanup(func() {
				for _, pid := range pids {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			status := sp.status
			status(func(s control.ServiceStatus) bool { return readyProcs(s) == 2 })
			served := dialPort(t, port, "")
			served.line()
			orphan := dialPort(t, port, "")
			orphan.line()
			if r := orphan.cmd("o XORPHAN"); r != "o OK" {
				t.Fatalf("XORPHAN: %q", r)
			}
			st := status(func(s control.ServiceStatus) bool {
				clients := 0
				for _, p := range s.Procs {
					clients += p.LoggingIn
				}
				return clients == 2 && readyProcs(s) == 4
			})
			for _, p := range st.Procs {
				pids = append(pids, p.PID)
			}
			sp.cmd.Process.Kill()
			sp.wait(10 * time.Second)
			deadline := time.Now().Add(10 * time.Second)
			for _, pid := range pids {
				for alive(pid) {
					if time.Now().After(deadline) {
						t.Fatalf("login process %d still runs 10 s after the supervisor was killed", pid)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}
