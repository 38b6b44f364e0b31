package master

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// packagedFlags are the go build flags deploy/build-packages.sh builds
// loginsvc with (besides -ldflags): a static executable, not PIE
// (docs/loginsvc.md, "Memory").
var packagedFlags = []string{"-buildmode=exe", "-trimpath"}

// maxGreetingAnon bounds the anonymous memory (smaps_rollup's
// Anonymous: the process's own pages, which no other process shares) of
// a high-security login process that has greeted its client and waits
// for its first command. Measured here: 788–796 KiB as packaged (a
// fourth thread adds about 24 KiB); 1,464 KiB in a PIE build, where
// ld.so's relocations of the read-only data make 0.65 MiB of private
// copies at every start (docs/loginsvc.md, "Memory"). The headroom is
// for the runtime's threads, of which a busy machine can make a process
// start one more (some tens of KiB each).
const maxGreetingAnon = 1100 << 10

// TestHighSecurityLoginProcessMemory runs the real loginsvc binary, built
// as packaged, in high-security mode with one client that has been
// greeted, and bounds its login process's own memory (maxGreetingAnon);
// it also checks that the process runs with GOMAXPROCS=1.
func TestHighSecurityLoginProcessMemory(t *testing.T) {
	r := newRealLoginsvc(t)
	text := fmt.Sprintf("base_dir = %s\nlogin_socket_path =\nprotocols = imap\nlisten = 127.0.0.1\n"+
		"service imap-login {\n inet_listener imap {\n  port = %d\n }\n service_count = 1\n process_min_avail = 0\n}\n",
		filepath.Join(r.dir, "run"), r.port)
	if err := os.WriteFile(r.conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, logs := r.cmd, r.logs
	startStopped(t, cmd, 10*time.Second, "loginsvc", logs)
	r.notify.expect(t, "READY=1")
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(r.port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if g, err := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q: %v\n%s", g, err, logs.String())
	}
	kids := childrenOf(t, cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("login processes %v, want one (process_min_avail = 0, one client)", kids)
	}
	pid := kids[0]
	if v := procEnv(t, pid, "GOMAXPROCS"); v != "1" {
		t.Errorf("high-security process %d: GOMAXPROCS=%q, want 1", pid, v)
	}
	rollup := procFields(t, fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	status := procFields(t, fmt.Sprintf("/proc/%d/status", pid))
	anon := rollup["Anonymous"] << 10
	t.Logf("login process %d: Anonymous %d KiB, Pss %d KiB, Private_Dirty %d KiB, Private_Clean %d KiB, Threads %d",
		pid, rollup["Anonymous"], rollup["Pss"], rollup["Private_Dirty"], rollup["Private_Clean"], status["Threads"])
	if anon == 0 || anon > maxGreetingAnon {
		t.Errorf("login process %d: %d KiB of anonymous memory, want at most %d KiB", pid, anon>>10, maxGreetingAnon>>10)
	}
}

// childrenOf is the pids of pid's child processes (/proc/*/stat).
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, p)
		}
	}
	return kids
}

// procFields reads a /proc file of "Name: value [kB]" lines (status,
// smaps_rollup) into the numbers of its fields (kB as written).
func procFields(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if f := strings.Fields(v); len(f) > 0 {
			if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				m[k] = n
			}
		}
	}
	return m
}
