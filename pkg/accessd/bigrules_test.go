package accessd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/service"
)

// rlimitASEnv, set in the environment of the test binary, makes it a
// launcher: it sets its RLIMIT_AS to the value (bytes) and execs
// os.Args[1:]. os/exec cannot set a resource limit for a child, and a limit
// set after the child started comes too late for the Go runtime's
// start-up reservations, which depend on it.
const rlimitASEnv = "ACCESSD_TEST_RLIMIT_AS"

func init() {
	v := os.Getenv(rlimitASEnv)
	if v == "" || len(os.Args) < 2 {
		return
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err == nil {
		err = unix.Setrlimit(unix.RLIMIT_AS, &unix.Rlimit{Cur: n, Max: n})
	}
	if err == nil {
		err = syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
	}
	fmt.Fprintf(os.Stderr, "rlimit launcher: %v\n", err)
	os.Exit(127)
}

// staticBinary builds cmd/tcpwrapd as packaged for Dovecot, without cgo
// (see MinAddressSpaceCgo), into a temporary directory of t.
func staticBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "tcpwrapd")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/tcpwrapd/tcpwrapd/cmd/tcpwrapd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tcpwrapd: %v\n%s", err, out)
	}
	return bin
}

// writeBlocklist writes a hosts.deny of n lines as a big blocklist looks:
// 1,000 CIDR rules, 1,000 IPv6 /64 rules, then address rules from
// 11.0.0.0 upwards, and last the sentinel "ALL: 127.0.0.<2+gen>". It
// replaces path atomically (rename), as editors and fail2ban do.
func writeBlocklist(t *testing.T, path string, n, gen int) {
	t.Helper()
	writeAtomically(t, path, func(w *bufio.Writer) {
		fmt.Fprintf(w, "# generated blocklist, generation %d\n", gen)
		for i := range 1000 {
			fmt.Fprintf(w, "ALL: 10.%d.%d.0/24\n", i/256, i%256)
			fmt.Fprintf(w, "ALL: [2001:db8:%x::]/64\n", i)
		}
		for i := range n - 2001 {
			a := 11<<24 + uint32(i)
			fmt.Fprintf(w, "ALL: %d.%d.%d.%d\n", a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
		}
		fmt.Fprintf(w, "ALL: 127.0.0.%d\n", 2+gen)
	})
}

// ask asks the access socket about a connection from client, without
// failing the test (it may run in a goroutine).
func ask(sock, client string) (accessclient.Verdict, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, done, err := accessclient.LocalConn(ctx, netip.MustParseAddr(client), netip.Addr{})
	if err != nil {
		return accessclient.Refused, err
	}
	defer done()
	return accessclient.Ask(ctx, sock, "imap", conn, 30*time.Second)
}

// vm returns the VmPeak, VmSize and VmRSS lines of pid's status.
func vm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmPeak") || strings.HasPrefix(l, "VmSize") || strings.HasPrefix(l, "VmRSS") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}

// TestBigRulesUnderVSZLimit runs the real tcpwrapd (static, as packaged for
// Dovecot) under Dovecot's documented vsz_limit = 1G (RLIMIT_AS) with a
// 1,000,000-line hosts.deny, replaces the file several times, and checks
// that every check is answered correctly throughout and that the process
// never dies. Before the rules were kept compactly, the first load
// already ran out of address space.
func TestBigRulesUnderVSZLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/tcpwrapd and loads a 1,000,000-line hosts.deny; skipped in -short mode")
	}
	const lines = 1_000_000
	runBigRules(t, staticBinary(t), lines, 3, func(t *testing.T, path string, gen int) {
		writeBlocklist(t, path, lines, gen)
	})
}

// bigShapes are the shapes of big hosts.deny files that
// TestBigRuleShapesUnderVSZLimit loads: n rules of line(i) each, then the
// sentinel. Every shape is one an outside tester crashed tcpwrapd with
// under vsz_limit = 1G (issue 10).
var bigShapes = []struct {
	name string
	n    int // rules before the sentinel
	line func(b []byte, i int) []byte
}{
	// "imap: [2001:db8:x:y::z]/len": IPv6 prefixes, kept as text (30 MB).
	{"v6net", 1_000_000, func(b []byte, i int) []byte {
		b = append(b, "imap: [2001:db8:"...)
		b = strconv.AppendUint(b, uint64(i>>16), 16)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(i&0xffff), 16)
		b = append(b, "::"...)
		b = strconv.AppendUint(b, uint64(i%7+1), 16)
		b = append(b, "]/"...)
		return strconv.AppendUint(b, uint64(64+i%65), 10)
	}},
	// "ALL: .hN-<hex>.example.com": domain patterns, kept as text (43 MB).
	{"names", 1_000_000, func(b []byte, i int) []byte {
		b = append(b, "ALL: .h"...)
		b = strconv.AppendUint(b, uint64(i), 10)
		b = append(b, '-')
		b = fmt.Appendf(b, "%016x", uint64(i)*0x9e3779b97f4a7c15)
		return append(b, ".example.com"...)
	}},
	// "ALL: 10.x.y.z: severity auth.info : setenv XN %a : deny": indexed
	// addresses with options, kept as text too (64 MB).
	{"options", 1_000_000, func(b []byte, i int) []byte {
		b = appendIPv4(append(b, "ALL: "...), 10<<24|uint32(i))
		b = append(b, ": severity auth.info : setenv X"...)
		b = strconv.AppendUint(b, uint64(i), 10)
		return append(b, " %a : deny"...)
	}},
	// 60,000 lines of 125 addresses each: 7,500,000 index entries (99 MB).
	{"multi", 60_000, func(b []byte, i int) []byte {
		b = append(b, "ALL:"...)
		for j := range 125 {
			b = appendIPv4(append(b, ' '), 11<<24+uint32(i*125+j))
		}
		return b
	}},
}

func appendIPv4(b []byte, a uint32) []byte {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}).AppendTo(b)
}

// TestBigRuleShapesUnderVSZLimit is TestBigRulesUnderVSZLimit for the other
// shapes of big rule files (see bigShapes): IPv6 prefixes, name patterns,
// rules with options and long client lists. Each is loaded under
// RLIMIT_AS = 1 GiB and reloaded twice; before the building of a table was
// bounded, the last two died on their first load or reload with "out of
// memory" and names did on some runs.
func TestBigRuleShapesUnderVSZLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/tcpwrapd and loads 30-99 MB hosts.deny files; skipped in -short mode")
	}
	bin := staticBinary(t)
	for _, sh := range bigShapes {
		t.Run(sh.name, func(t *testing.T) {
			runBigRules(t, bin, sh.n+1, 2, func(t *testing.T, path string, gen int) {
				t.Helper()
				b := make([]byte, 0, 4<<10)
				writeAtomically(t, path, func(w *bufio.Writer) {
					for i := range sh.n {
						w.Write(append(sh.line(b[:0], i), '\n'))
					}
					fmt.Fprintf(w, "ALL: 127.0.0.%d\n", 2+gen)
				})
			})
		})
	}
}

// writeAtomically writes path with fill through a temporary file and a
// rename, as editors and fail2ban do.
func writeAtomically(t *testing.T, path string, fill func(*bufio.Writer)) {
	t.Helper()
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fill(w)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// runBigRules starts bin under RLIMIT_AS = MinAddressSpace with the
// hosts.deny write(gen=0) writes (lines rules, the last one refusing
// 127.0.0.<2+gen>), rewrites it reloads times, and checks that every check
// is answered correctly throughout and that the process never dies.
func runBigRules(t *testing.T, bin string, lines, reloads int, write func(t *testing.T, path string, gen int)) {
	t.Helper()
	dir := shortDir(t)
	sock := filepath.Join(dir, "access")
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := filepath.Join(dir, "hosts.deny")
	write(t, deny, 0)
	cmd := exec.Command(os.Args[0], bin, "--listen", sock, "--allow-file", allow, "--deny-file", deny,
		"--reload-interval", "100ms")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", rlimitASEnv, service.MinAddressSpace))
	out := startChild(t, cmd)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	// waitLoaded waits for the load of generation gen, failing at once if
	// the process dies.
	waitLoaded := func(gen int) {
		t.Helper()
		want := fmt.Sprintf("generation=%d ", gen)
		deadline := time.After(2 * time.Minute)
		for {
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.Contains(l, `msg="rules loaded"`) && strings.Contains(l, want) {
					if !strings.Contains(l, fmt.Sprintf("deny_rules=%d ", lines)) {
						t.Fatalf("load %d: %s", gen, l)
					}
					return
				}
			}
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("tcpwrapd died before loading generation %d: %v", gen, err)
			case <-deadline:
				t.Fatalf("no load of generation %d after 2 minutes", gen)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitLoaded(1)
	t.Logf("after the first load: %s", vm(cmd.Process.Pid))

	// A listed-nowhere client is granted at every moment, across reloads.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var checks int
	var checkErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			v, err := ask(sock, "127.0.0.1")
			if err == nil && v != accessclient.Allowed {
				err = errors.New("127.0.0.1 refused")
			}
			if err != nil {
				checkErr = err
				return
			}
			checks++
		}
	}()

	for gen := 0; gen <= reloads; gen++ {
		if gen > 0 {
			write(t, deny, gen)
			waitLoaded(gen + 1)
		}
		// The sentinel of this generation is refused, the previous one
		// granted again: the whole file was read, the new one adopted.
		cur := fmt.Sprintf("127.0.0.%d", 2+gen)
		if v, err := ask(sock, cur); err != nil || v != accessclient.Refused {
			t.Fatalf("generation %d: %s: %v %v, want refused", gen, cur, v, err)
		}
		if gen > 0 {
			prev := fmt.Sprintf("127.0.0.%d", 1+gen)
			if v, err := ask(sock, prev); err != nil || v != accessclient.Allowed {
				t.Fatalf("generation %d: %s: %v %v, want allowed", gen, prev, v, err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if checkErr != nil {
		t.Fatalf("check during reloads: %v", checkErr)
	}
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("tcpwrapd exited: %v", err)
	default:
	}
	t.Logf("after %d reloads and %d checks during them: %s", reloads, checks, vm(cmd.Process.Pid))
}
