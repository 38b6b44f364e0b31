// Package dovecot24lab starts a real, throwaway Dovecot 2.4 master for
// tests: Debian 13's dovecot 2.4.1 in a Debian 13 (trixie) root built by
// setup.sh next to this file (debootstrap --variant=minbase; cached at
// DefaultRoot), on loopback high ports with a configuration the test
// provides. It is the 2.4 sibling of internal/dovecotlab (2.3, the
// installed package).
//
// Each lab gets its own directory ROOT/lab/<instance>/ (base_dir, state,
// mail, log, passwd file), which the harness removes when the test ends.
// The master runs as
//
//	unshare -m --propagation private sh -c 'mount -t proc proc ROOT/proc && exec chroot ROOT dovecot -F -c CONF'
//
// so /proc is mounted only in the master's private mount namespace and
// disappears with it: nothing is mounted on the host, and the host's /etc
// is never read or written (the root has its own). The root shares the
// host's network: the listeners are on the host's 127.0.0.1, and a server
// a test runs on 127.0.0.1 (an auth policy server) is reachable from
// inside. Every process is stopped by a t.Cleanup (SIGTERM, then SIGKILL
// for anything left, as dovecotlab.Process does).
//
// Root is required. Require builds the root if it is missing (about a
// minute, once per machine) and fails the test under CI=true when it
// cannot; elsewhere it skips with the reason.
package dovecot24lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
)

// DefaultRoot is where setup.sh builds the trixie root. The environment
// variable TCPWRAPD_DOVECOT24_ROOT overrides it.
const DefaultRoot = "/var/tmp/tcpwrapd-trixie-dovecot24"

// RootDir returns the root's path: $TCPWRAPD_DOVECOT24_ROOT or DefaultRoot.
func RootDir() string {
	if d := os.Getenv("TCPWRAPD_DOVECOT24_ROOT"); d != "" {
		return d
	}
	return DefaultRoot
}

var (
	rootOnce sync.Once
	rootErr  error
)

// SetupScript returns the path of setup.sh in the source tree.
func SetupScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "setup.sh")
}

// EnsureRoot builds the root with setup.sh unless it is complete, once per
// process, and returns its path or why it cannot be used.
func EnsureRoot() (string, error) {
	root := RootDir()
	rootOnce.Do(func() {
		if os.Geteuid() != 0 {
			rootErr = errors.New("dovecot24lab needs root (debootstrap, chroot, mount namespaces)")
			return
		}
		out, err := exec.Command("sh", SetupScript(), root).CombinedOutput()
		if err != nil {
			rootErr = fmt.Errorf("%s %s: %v\n%s", SetupScript(), root, err, out)
		}
	})
	return root, rootErr
}

// Require returns the root's path, building it if needed. When the root
// cannot be built it fails the test under CI=true and skips it elsewhere.
func Require(t testing.TB) string {
	t.Helper()
	root, err := EnsureRoot()
	peertest.Require(t, "Dovecot 2.4", err)
	return root
}

// Config describes a lab Dovecot 2.4. The zero value serves imap and pop3
// with the user alice / secret.
type Config struct {
	// Protocols to serve, each on one 127.0.0.1 listener on a free port:
	// "imap", "pop3", "submission", "sieve" (ManageSieve). Empty means
	// imap and pop3.
	Protocols []string
	// Users maps user names to their plain-text passwords (a passwd-file
	// passdb). Nil means alice / secret.
	Users map[string]string
	// Extra is appended to the generated configuration (2.4 syntax), e.g.
	// auth_policy_server_url = ... Paths in it are the root's.
	Extra string
	// StartTimeout bounds the wait for the listeners; zero means 30 s.
	StartTimeout time.Duration
	// NoLoginListeners gives the login services no listeners: the lab
	// is Dovecot's auth and post-login services behind loginsvc, whose
	// login processes use BaseDir()/login/login and BaseDir()/login/PROTO.
	// Start then waits for those sockets and makes BaseDir()/login
	// searchable by everyone (the host's login user is not the root's).
	NoLoginListeners bool
}

// listeners maps a protocol to its login service and listener name.
var listeners = map[string][2]string{
	"imap": {"imap-login", "imap"}, "pop3": {"pop3-login", "pop3"}, "submission": {"submission-login", "submission"},
	"sieve": {"managesieve-login", "sieve"},
}

// Dovecot is a running lab Dovecot 2.4 master.
type Dovecot struct {
	// Root is the trixie root; Dir is the lab directory on the host
	// (Root + InRoot); InRoot is the same directory as the master sees it.
	Root, Dir, InRoot string
	// ConfPath and LogPath are host paths of dovecot.conf and the log.
	ConfPath, LogPath string

	ports map[string]int
	proc  *dovecotlab.Process
}

var seq atomic.Int64

// Start builds the root if needed (see Require), writes the lab's
// configuration and starts the master, waiting until every listener
// accepts connections. Failures are fatal to the test (with the master's
// output and log). The master is stopped and the lab directory removed at
// cleanup.
func Start(t testing.TB, cfg Config) *Dovecot {
	t.Helper()
	root := Require(t)
	name := fmt.Sprintf("t%d-%d", os.Getpid(), seq.Add(1))
	d := &Dovecot{Root: root, InRoot: "/lab/" + name}
	d.Dir = filepath.Join(root, d.InRoot)
	d.ConfPath, d.LogPath = filepath.Join(d.Dir, "dovecot.conf"), filepath.Join(d.Dir, "dovecot.log")
	t.Cleanup(func() {
		if d.proc != nil {
			if err := d.proc.Stop(); err != nil {
				t.Logf("dovecot24lab: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("dovecot24lab: log of %s:\n%s", d.InRoot, d.Log())
		}
		os.RemoveAll(d.Dir)
	})
	if err := d.launch(t, cfg); err != nil {
		t.Fatalf("dovecot24lab: %v", err)
	}
	return d
}

func (d *Dovecot) launch(t testing.TB, cfg Config) error {
	for _, sub := range []string{"run", "state", "mail", "home"} {
		if err := os.MkdirAll(filepath.Join(d.Dir, sub), 0o755); err != nil {
			return err
		}
	}
	users := cfg.Users
	if users == nil {
		users = map[string]string{"alice": "secret"}
	}
	var pw strings.Builder
	for _, u := range sortedKeys(users) {
		fmt.Fprintf(&pw, "%s:{PLAIN}%s\n", u, users[u])
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "passwd"), []byte(pw.String()), 0o644); err != nil {
		return err
	}
	protos := cfg.Protocols
	if len(protos) == 0 {
		protos = []string{"imap", "pop3"}
	}
	d.ports = map[string]int{}
	for _, p := range protos {
		if _, ok := listeners[p]; !ok {
			return fmt.Errorf("unsupported protocol %q", p)
		}
		port, err := dovecotlab.FreePort() // one record of given ports for 2.3 and 2.4 labs
		if err != nil {
			return err
		}
		d.ports[p] = port
	}
	if cfg.NoLoginListeners {
		for p := range d.ports {
			d.ports[p] = 0
		}
	}
	if err := os.WriteFile(d.ConfPath, []byte(d.render(protos, cfg.Extra)), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("chroot", d.Root, "chown", "-R", "dovecot:dovecot", d.InRoot+"/mail", d.InRoot+"/home").CombinedOutput(); err != nil {
		return fmt.Errorf("chown in root: %v: %s", err, out)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t proc proc "$1/proc" && exec chroot "$1" /usr/sbin/dovecot -F -c "$2"`, "sh", d.Root, d.InRoot+"/dovecot.conf")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "TZ=UTC"}
	p, err := dovecotlab.StartProcess(t, "dovecot 2.4", cmd, filepath.Join(d.Dir, "dovecot.out"))
	if err != nil {
		return err
	}
	d.proc = p
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, proto := range protos {
		if cfg.NoLoginListeners {
			if err := d.waitSockets(ctx, proto); err != nil {
				return fmt.Errorf("dovecot 2.4 did not come up: %w\n--- master output:\n%s--- log:\n%s", err, p.Output(), d.Log())
			}
			continue
		}
		if err := d.waitListening(ctx, proto); err != nil {
			return fmt.Errorf("dovecot 2.4 did not come up: %w\n--- master output:\n%s--- log:\n%s", err, p.Output(), d.Log())
		}
	}
	return nil
}

func (d *Dovecot) waitListening(ctx context.Context, proto string) error {
	var dl net.Dialer
	for {
		if done, err := d.proc.Exited(); done {
			return fmt.Errorf("master exited: %v", err)
		}
		c, err := dl.DialContext(ctx, "tcp", d.Addr(proto))
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s listener %s: %w", proto, d.Addr(proto), err)
		case <-d.proc.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitSockets waits for the auth socket and proto's post-login socket in
// BaseDir()/login, then makes that directory searchable by all.
func (d *Dovecot) waitSockets(ctx context.Context, proto string) error {
	for _, name := range []string{"login", proto} {
		path := filepath.Join(d.BaseDir(), "login", name)
		for {
			if _, err := os.Stat(path); err == nil {
				break
			}
			if done, err := d.proc.Exited(); done {
				return fmt.Errorf("master exited: %v", err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("no socket %s: %w", path, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return os.Chmod(filepath.Join(d.BaseDir(), "login"), 0o755)
}

// BaseDir is Dovecot's base_dir as the host sees it (Dir/run).
func (d *Dovecot) BaseDir() string { return filepath.Join(d.Dir, "run") }

// Deliver puts msg (CRLF line ends) into user's INBOX: the Maildir
// Dir/mail/USER (mail_path), owned by the root's dovecot user.
func (d *Dovecot) Deliver(user, msg string) error {
	uid, gid, err := d.rootIDs("dovecot")
	if err != nil {
		return err
	}
	return dovecotlab.DeliverMaildir(filepath.Join(d.Dir, "mail", user), msg, uid, gid)
}

// rootIDs are the uid and gid of name in the root's /etc/passwd.
func (d *Dovecot) rootIDs(name string) (uid, gid int, err error) {
	b, err := os.ReadFile(filepath.Join(d.Root, "etc", "passwd"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 4 && f[0] == name {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				return uid, gid, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("no user %s in %s/etc/passwd", name, d.Root)
}

func (d *Dovecot) render(protos []string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# generated by internal/dovecot24lab - throwaway test instance
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = dovecot24lab-%[2]s
listen = 127.0.0.1
protocols = %[3]s
log_path = %[1]s/dovecot.log
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_driver = maildir
mail_path = %[1]s/mail/%%{user}
submission_relay_host = 127.0.0.1
submission_relay_port = 9
passdb passwd-file {
  passwd_file_path = %[1]s/passwd
}
userdb static {
  fields {
    uid = dovecot
    gid = dovecot
    home = %[1]s/home/%%{user}
  }
}
`, d.InRoot, filepath.Base(d.InRoot), strings.Join(protos, " "))
	for _, p := range protos {
		l := listeners[p]
		fmt.Fprintf(&b, "service %s {\n  inet_listener %s {\n    port = %d\n  }\n}\n", l[0], l[1], d.ports[p])
	}
	b.WriteString(extra)
	b.WriteString("\n")
	return b.String()
}

// Addr returns "127.0.0.1:PORT" of proto's listener.
func (d *Dovecot) Addr(proto string) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.ports[proto]))
}

// PID returns the master's process ID (unshare, sh and chroot exec into
// it).
func (d *Dovecot) PID() int { return d.proc.PID() }

// Log returns Dovecot's log so far.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// Stop stops the master (SIGTERM, then SIGKILL for anything left). It is
// also called at cleanup; calling it again returns the first result.
func (d *Dovecot) Stop() error { return d.proc.Stop() }

// Version returns `dovecot --version` of the root.
func Version(root string) (string, error) {
	out, err := exec.Command("chroot", root, "/usr/sbin/dovecot", "--version").Output()
	return strings.TrimSpace(string(out)), err
}

// sortedKeys returns m's keys in order (the configuration is written
// the same for the same Config).
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
