package dovecotlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
)

// Installed programs, files and users the lab relies on (Debian 12).
const (
	// DovecotBin is the Dovecot master.
	DovecotBin = "/usr/sbin/dovecot"
	// OwnTcpwrapBin is Dovecot's own libwrap-based tcpwrap service.
	OwnTcpwrapBin = "/usr/lib/dovecot/tcpwrap"
	// EtcHostsAllow is the hosts.allow that libwrap always reads. The lab
	// never writes it.
	EtcHostsAllow = "/etc/hosts.allow"
	// EtcHostsDeny is the hosts.deny that libwrap always reads. The lab
	// never writes it.
	EtcHostsDeny = "/etc/hosts.deny"
	// LoginUser is default_login_user: login processes run as it, so
	// access sockets must be connectable by it.
	LoginUser = "dovenull"
	// InternalUser is default_internal_user: Dovecot's tcpwrap runs as it.
	InternalUser = "dovecot"
)

const (
	maxBaseDirLen  = 64 // leaves room for login/<dir>/<socket> in sun_path (108)
	addrInUseHint  = "Address already in use"
	startAttempts  = 3
	defaultTimeout = 30 * time.Second
)

// Available reports why a lab Dovecot cannot run here: nil if the process
// is root and the Dovecot binaries, the dovenull and dovecot users, unshare
// and mount are present.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("dovecotlab needs root (the Dovecot master and private mount namespaces need it)")
	}
	for _, bin := range []string{DovecotBin, OwnTcpwrapBin} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("dovecot is not installed (apt-get install dovecot-core dovecot-imapd dovecot-pop3d): %w", err)
		}
	}
	for _, name := range []string{LoginUser, InternalUser} {
		if _, err := user.Lookup(name); err != nil {
			return fmt.Errorf("user %s missing (it comes with dovecot-core): %w", name, err)
		}
	}
	for _, bin := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found (util-linux / mount packages): %w", bin, err)
		}
	}
	return nil
}

// SkipIfUnavailable skips the test with the reason from [Available]. When
// the environment variable CI is "true" it fails the test instead: CI
// installs Dovecot and runs as root, so a skip there would hide a broken
// job.
func SkipIfUnavailable(t testing.TB) {
	t.Helper()
	peertest.Require(t, "real-Dovecot", Available())
}

// Dovecot is a running lab Dovecot master. Its methods are safe for
// concurrent use, except Launch, Restart and Stop.
type Dovecot struct {
	// Dir is the lab directory; everything the lab writes is below it.
	Dir string
	// BaseDir is Dovecot's base_dir (Dir/run); the login chroot is
	// BaseDir/login.
	BaseDir string
	// ConfPath is the generated dovecot.conf.
	ConfPath string
	// LogPath is Dovecot's log_path (all services log here).
	LogPath string
	// HostsAllow and HostsDeny are the lab's rule files. With
	// PrivateHosts they appear as /etc/hosts.allow and /etc/hosts.deny
	// inside the master's mount namespace.
	HostsAllow, HostsDeny string
	// InstanceName is the unique instance_name.
	InstanceName string
	// Config is the configuration the lab was started with.
	Config Config

	t     testing.TB
	ports map[string]int
	proc  *Process
}

var labSeq atomic.Int64

// Start is [New] followed by [Dovecot.Launch]: it starts a lab Dovecot as
// described by cfg and waits until all its listeners accept connections.
// Stop is registered with t.Cleanup. Any failure is fatal to the test; the
// message includes the master's output and log.
func Start(t testing.TB, cfg Config) *Dovecot {
	t.Helper()
	d := New(t, cfg)
	if err := d.Launch(); err != nil {
		t.Fatalf("dovecotlab: %v", err)
	}
	return d
}

// New prepares a lab Dovecot without starting it: it skips the test if
// [Available] fails, creates the lab directory (with state/ and home/)
// and writes hosts.allow and hosts.deny. base_dir does not exist yet, so
// the caller may set it up (e.g. [Dovecot.ExternalSocketDir]) before
// [Dovecot.Launch]. Failures are fatal to the test.
func New(t testing.TB, cfg Config) *Dovecot {
	t.Helper()
	SkipIfUnavailable(t)
	if cfg.OwnTcpwrap {
		cfg.PrivateHosts = true
	}
	dir := labDir(t)
	d := &Dovecot{
		Dir:          dir,
		BaseDir:      filepath.Join(dir, "run"),
		ConfPath:     filepath.Join(dir, "dovecot.conf"),
		LogPath:      filepath.Join(dir, "dovecot.log"),
		HostsAllow:   filepath.Join(dir, "hosts.allow"),
		HostsDeny:    filepath.Join(dir, "hosts.deny"),
		InstanceName: fmt.Sprintf("dvlab%d-%d", os.Getpid(), labSeq.Add(1)),
		Config:       cfg,
		t:            t,
	}
	for _, sub := range []string{"state", "home"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("dovecotlab: %v", err)
		}
	}
	if err := d.SetHosts(cfg.HostsAllow, cfg.HostsDeny); err != nil {
		t.Fatalf("dovecotlab: %v", err)
	}
	return d
}

// labDir returns a fresh lab directory that non-root Dovecot processes can
// traverse, short enough for unix socket paths below it.
func labDir(t testing.TB) string {
	dir := t.TempDir()
	if len(dir)+len("/run") > maxBaseDirLen {
		// t.TempDir embeds the test name; long names would overflow
		// sun_path for base_dir/login/<dir>/<socket>.
		short, err := os.MkdirTemp("", "dvlab")
		if err != nil {
			t.Fatalf("dovecotlab: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		dir = short
	} else if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatalf("dovecotlab: %v", err)
	}
	// t.TempDir and MkdirTemp make 0700 directories; Dovecot's
	// unprivileged processes (imap as dovecot, stats clients) need to
	// traverse to base_dir and the mail homes.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("dovecotlab: %v", err)
	}
	return dir
}

// Launch starts the master and waits until its listeners accept
// connections. The first Launch picks free ports (binding port 0 and
// closing it) and writes the configuration; if another process wins the
// race for a port, it retries with new ports. Later Launches (after Stop)
// reuse the configuration, base_dir and ports; the log file is kept.
// Each started master is stopped by a t.Cleanup.
//
// It returns an error that includes the master's output and log if the
// master exits or does not listen within Config.StartTimeout.
func (d *Dovecot) Launch() error {
	if d.ports != nil {
		return d.launch()
	}
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		ports, err := freePorts(len(d.Config.protocols()))
		if err != nil {
			return err
		}
		d.ports = map[string]int{}
		for i, p := range d.Config.protocols() {
			d.ports[p] = ports[i]
		}
		if err := d.writeConf(); err != nil {
			return err
		}
		lastErr = d.launch()
		if lastErr == nil {
			return nil
		}
		if !strings.Contains(lastErr.Error(), addrInUseHint) {
			return lastErr
		}
		d.t.Logf("dovecotlab: port taken, retrying: %v", lastErr)
	}
	return lastErr
}

func (d *Dovecot) writeConf() error {
	if len(d.Config.Users) > 0 {
		if err := os.WriteFile(filepath.Join(d.Dir, "users"), []byte(d.Config.passwdFile()), 0o644); err != nil {
			return err
		}
	}
	text, err := d.Config.render(d.Dir, d.BaseDir, filepath.Join(d.Dir, "state"), d.LogPath, d.InstanceName, d.ports)
	if err != nil {
		return err
	}
	return os.WriteFile(d.ConfPath, []byte(text), 0o644)
}

// launch starts the master with the current configuration and waits for
// its listeners.
func (d *Dovecot) launch() error {
	argv := []string{DovecotBin, "-F", "-c", d.ConfPath}
	if d.Config.PrivateHosts {
		// unshare and sh exec into dovecot, so the PID is the master's.
		argv = append([]string{"unshare", "-m", "--propagation", "private",
			"sh", "-c", `mount --bind "$1" /etc/hosts.allow && mount --bind "$2" /etc/hosts.deny && shift 2 && exec "$@"`,
			"sh", d.HostsAllow, d.HostsDeny}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = d.Dir
	// A clean environment: NOTIFY_SOCKET or LISTEN_FDS from a CI service
	// manager must not reach the master (it imports them by default).
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "TZ=UTC"}
	p, err := StartProcess(d.t, "dovecot", cmd, filepath.Join(d.Dir, "dovecot.out"))
	if err != nil {
		return err
	}
	p.Grace = d.Config.StopGrace
	d.proc = p
	timeout := d.Config.StartTimeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := d.WaitListening(ctx); err != nil {
		_ = p.Stop()
		return fmt.Errorf("dovecot did not come up: %w\n--- master output:\n%s--- log:\n%s", err, p.Output(), d.Log())
	}
	return nil
}

// Restart stops the master and launches it again with the same
// configuration, base_dir and ports. It is what a Dovecot restart does to
// an external daemon's socket in base_dir/login.
func (d *Dovecot) Restart() error {
	if err := d.Stop(); err != nil {
		d.t.Logf("dovecotlab: restart: %v", err)
	}
	return d.Launch()
}

// PID returns the master's process ID (0 before Launch).
func (d *Dovecot) PID() int {
	if d.proc == nil {
		return 0
	}
	return d.proc.PID()
}

// Process returns the master process.
func (d *Dovecot) Process() *Process { return d.proc }

// Port returns the port of the listener for protocol proto ("imap",
// "pop3"), or 0 if the lab does not serve it.
func (d *Dovecot) Port(proto string) int { return d.ports[proto] }

// Addr returns "127.0.0.1:PORT" of the listener for proto.
func (d *Dovecot) Addr(proto string) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.Port(proto)))
}

// LoginDir returns base_dir/login, the login processes' chroot, in which
// relative login_access_sockets entries resolve.
func (d *Dovecot) LoginDir() string { return filepath.Join(d.BaseDir, "login") }

// Stop stops the master (see [Process.Stop]). It is registered with
// t.Cleanup by Launch; calling it earlier is fine, and calling it again
// returns the first result. Before Launch it does nothing.
func (d *Dovecot) Stop() error {
	if d.proc == nil {
		return nil
	}
	return d.proc.Stop()
}

// WaitListening waits until every listener of the lab is in LISTEN state,
// which means connections will be accepted. It checks /proc/net/tcp
// rather than connecting, so that no access lookup is triggered; where
// /proc/net/tcp is unreadable it falls back to a TCP connect. It fails
// early if the master exits.
func (d *Dovecot) WaitListening(ctx context.Context) error {
	for {
		if done, err := d.proc.Exited(); done {
			return fmt.Errorf("master exited: %v", err)
		}
		missing := ""
		for _, p := range d.Config.protocols() {
			if d.Config.NoLoginListeners {
				// The auth and post-login sockets loginsvc uses.
				for _, name := range []string{"login", p} {
					if _, err := os.Stat(filepath.Join(d.LoginDir(), name)); err != nil {
						missing = "socket " + filepath.Join(d.LoginDir(), name)
					}
				}
				continue
			}
			ok, err := listening(ctx, d.ports[p])
			if err != nil || !ok {
				missing = fmt.Sprintf("%s listener 127.0.0.1:%d", p, d.ports[p])
				break
			}
		}
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening: %w", missing, ctx.Err())
		case <-d.proc.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// listening reports whether 127.0.0.1:port (or 0.0.0.0:port) is a TCP
// socket in LISTEN state.
func listening(ctx context.Context, port int) (bool, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		var dl net.Dialer
		c, err := dl.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	}
	defer f.Close()
	want := []string{fmt.Sprintf("0100007F:%04X", port), fmt.Sprintf("00000000:%04X", port)}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || fs[3] != "0A" { // 0A = TCP_LISTEN
			continue
		}
		for _, w := range want {
			if fs[1] == w {
				return true, nil
			}
		}
	}
	return false, sc.Err()
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		ln, err := listenFree()
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		lns = append(lns, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		if portsGiven[port] {
			if tries > 100 {
				return nil, fmt.Errorf("pick a free port: every one was handed out before")
			}
			continue
		}
		portsGiven[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}

// listenFree listens on a free port of 127.0.0.1, one below the kernel's
// ephemeral range (ip_local_port_range) when there is room: a port the
// kernel picked (port 0) is one of the range it also binds outgoing
// connections to, and between the test's closing its listener and a
// server's binding the port, any connection of the tests running beside
// it may take it ("address already in use").
func listenFree() (net.Listener, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				lo = v
			}
		}
	}
	const base = 20000
	for range 200 {
		if lo-base < 1000 {
			break
		}
		if ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(base+rand.IntN(lo-base))); err == nil {
			return ln, nil
		}
	}
	return net.Listen("tcp4", "127.0.0.1:0")
}

// FreePort returns a free port on 127.0.0.1 that no lab of this process
// has been given (a test's own extra listener, say): the kernel may hand
// out a just-closed port again, and two masters on one port collide.
func FreePort() (int, error) {
	p, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// SetHosts rewrites the lab's hosts.allow and hosts.deny in place (same
// inode, so bind mounts of them see the change at once; Dovecot's tcpwrap
// reads them on every lookup). Files are mode 0644 so that the tcpwrap
// service, which runs as user dovecot, can read them.
func (d *Dovecot) SetHosts(allow, deny string) error {
	for _, f := range []struct{ path, text string }{{d.HostsAllow, allow}, {d.HostsDeny, deny}} {
		if err := WriteInPlace(f.path, f.text); err != nil {
			return err
		}
	}
	return nil
}

// WriteInPlace replaces the contents of path with text without changing
// its inode (truncate and write), creating it with mode 0644 if needed.
// Use it for files that are bind-mounted; use [WriteAtomic] to mimic an
// editor that renames a new file into place.
func WriteInPlace(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, 0o644)
}

// WriteAtomic replaces path with a new file holding text (mode 0644),
// renamed over the old one: the inode changes, as with most editors and
// configuration-management tools.
func WriteAtomic(path, text string) error {
	tmp := path + ".dvlab-tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
