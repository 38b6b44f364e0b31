// Package postfixlab starts a private, throwaway Postfix (Debian 12's
// 3.7) for tests: its own config_directory, queue_directory,
// data_directory and log file in a temporary directory, smtpd on a free
// loopback port, mail for the test domain discarded. It never writes
// /etc/postfix (it reads Debian's postfix-files there, as every postfix
// command does) and stops the master and every process of the instance
// at the end of the test. Starting it needs root.
package postfixlab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
)

// Domain is the test domain: mail to any address in it is accepted
// (from clients the policy lets through) and discarded.
const Domain = "example.test"

// Config is what a test chooses of the instance.
type Config struct {
	// PolicyService is check_policy_service's argument in
	// smtpd_client_restrictions ("inet:127.0.0.1:PORT",
	// "unix:private/tcpwrapd"); empty means no policy check.
	PolicyService string
	// NoDelayReject sets smtpd_delay_reject = no (the client restrictions
	// then run when the client connects, not at RCPT TO).
	NoDelayReject bool
	// Chroot runs smtpd chrooted to the queue directory, as Debian's
	// default master.cf does.
	Chroot bool
	// Main holds extra main.cf lines.
	Main []string
	// StartTimeout bounds the start; zero means 60 s.
	StartTimeout time.Duration
}

// Postfix is a running instance.
type Postfix struct {
	// Dir holds conf/, queue/, data/ and maillog.
	Dir string
	// ConfigDir and QueueDir are its config_directory and
	// queue_directory; a unix policy socket "unix:private/NAME" is
	// QueueDir/private/NAME.
	ConfigDir, QueueDir string
	// Addr is smtpd's 127.0.0.1:PORT.
	Addr string

	t    testing.TB
	proc *dovecotlab.Process
}

// Available reports why a lab Postfix cannot start here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("postfixlab: needs root")
	}
	for _, p := range []string{"/usr/sbin/postfix", "/usr/lib/postfix/sbin/master", "/usr/lib/postfix/sbin/smtpd"} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("postfixlab: Postfix is not installed (apt-get install postfix): %w", err)
		}
	}
	if _, err := user.Lookup("postfix"); err != nil {
		return fmt.Errorf("postfixlab: %w", err)
	}
	return nil
}

// SkipIfUnavailable skips t when Available fails, or, when the
// environment variable CI is "true", fails it: CI must run the real
// Postfix tests.
func SkipIfUnavailable(t testing.TB) {
	t.Helper()
	peertest.Require(t, "real-Postfix", Available())
}

// Start writes the configuration, starts the master in the foreground
// (postfix start-fg) and waits until smtpd answers on Addr. Stop runs at
// cleanup. A failure to start fails t, with the log.
func Start(t testing.TB, cfg Config) *Postfix {
	t.Helper()
	SkipIfUnavailable(t)
	dir, err := os.MkdirTemp("", "pfxlab")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Postfix{Dir: dir, ConfigDir: filepath.Join(dir, "conf"), QueueDir: filepath.Join(dir, "queue"), t: t}
	if err := p.writeConfig(cfg); err != nil {
		t.Fatal(err)
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	cmd := exec.Command("/usr/sbin/postfix", "-c", p.ConfigDir, "start-fg")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	p.proc, err = dovecotlab.StartProcess(t, "postfix", cmd, filepath.Join(dir, "start-fg.out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop) // runs before StartProcess's own cleanup
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.waitGreeting(ctx); err != nil {
		t.Fatalf("postfixlab: smtpd on %s not ready: %v\nstart-fg: %s\nmaillog:\n%s", p.Addr, err, p.proc.Output(), p.Log())
	}
	return p
}

func (p *Postfix) writeConfig(cfg Config) error {
	for _, d := range []string{p.ConfigDir, p.QueueDir, filepath.Join(p.Dir, "data")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	uid, gid, err := dovecotlab.LookupIDs("postfix")
	if err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(p.Dir, "data"), uid, gid); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.Addr = ln.Addr().String()
	ln.Close()
	delay := "yes"
	if cfg.NoDelayReject {
		delay = "no"
	}
	restrictions := ""
	if cfg.PolicyService != "" {
		restrictions = "check_policy_service " + cfg.PolicyService
	}
	main := []string{
		"compatibility_level = 3.6",
		"queue_directory = " + p.QueueDir,
		"data_directory = " + filepath.Join(p.Dir, "data"),
		"mail_owner = postfix",
		"setgid_group = postdrop",
		"myhostname = lab.test",
		"mydomain = lab.test",
		"myorigin = lab.test",
		"mydestination = " + Domain,
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"local_recipient_maps =",
		"alias_maps =",
		"alias_database =",
		"local_transport = discard:",
		"default_transport = discard:",
		"relay_transport = discard:",
		"biff = no",
		"maillog_file = " + filepath.Join(p.Dir, "maillog"),
		"maillog_file_prefixes = " + p.Dir,
		"smtpd_delay_reject = " + delay,
		"smtpd_client_restrictions = " + restrictions,
		// Fail fast when the policy server does not answer.
		"smtpd_policy_service_timeout = 10s",
		"smtpd_policy_service_try_limit = 1",
	}
	main = append(main, cfg.Main...)
	chroot := "n"
	if cfg.Chroot {
		chroot = "y"
	}
	master := []string{
		p.Addr + " inet n - " + chroot + " - - smtpd",
		"pickup    unix  n - n 60   1 pickup",
		"cleanup   unix  n - n -    0 cleanup",
		"qmgr      unix  n - n 300  1 qmgr",
		"rewrite   unix  - - n -    - trivial-rewrite",
		"bounce    unix  - - n -    0 bounce",
		"defer     unix  - - n -    0 bounce",
		"trace     unix  - - n -    0 bounce",
		"verify    unix  - - n -    1 verify",
		"flush     unix  n - n 1000? 0 flush",
		"proxymap  unix  - - n -    - proxymap",
		"showq     unix  n - n -    - showq",
		"error     unix  - - n -    - error",
		"retry     unix  - - n -    - error",
		"discard   unix  - - n -    - discard",
		"anvil     unix  - - n -    1 anvil",
		"scache    unix  - - n -    1 scache",
		"postlog   unix-dgram n - n - 1 postlogd",
	}
	if err := os.WriteFile(filepath.Join(p.ConfigDir, "main.cf"), []byte(strings.Join(main, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.ConfigDir, "master.cf"), []byte(strings.Join(master, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	// Debian's postfix reads dynamicmaps.cf from the config directory.
	return os.WriteFile(filepath.Join(p.ConfigDir, "dynamicmaps.cf"), nil, 0o644)
}

// waitGreeting dials smtpd until it sends its first reply.
func (p *Postfix) waitGreeting(ctx context.Context) error {
	var last error
	for {
		if done, err := p.proc.Exited(); done {
			return fmt.Errorf("postfix start-fg exited: %v", err)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", p.Addr)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "QUIT\r\n")
			c.Close()
			// 220, or with smtpd_delay_reject = no and a client
			// restriction that rejects the prober, a 4xx/5xx reply:
			// either way smtpd answers.
			if len(line) > 4 && strings.ContainsRune("245", rune(line[0])) && (line[3] == ' ' || line[3] == '-') {
				return nil
			}
			err = fmt.Errorf("greeting %q: %v", line, rerr)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Log returns the instance's maillog so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	return string(b)
}

// WaitLog waits until the maillog contains substr.
func (p *Postfix) WaitLog(ctx context.Context, substr string) error {
	for !strings.Contains(p.Log(), substr) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("maillog has no %q: %w", substr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Stop stops the instance (postfix stop), waits for the master, and
// checks that no process of the instance (one with MAIL_CONFIG set to
// its config directory) is left; leftovers are killed and reported as a
// test error. It is called at cleanup; calling it again does nothing.
func (p *Postfix) Stop() {
	if p.proc == nil {
		return
	}
	proc := p.proc
	p.proc = nil
	if done, _ := proc.Exited(); !done {
		out, err := exec.Command("/usr/sbin/postfix", "-c", p.ConfigDir, "stop").CombinedOutput()
		if err != nil {
			p.t.Errorf("postfix stop: %v: %s", err, out)
		}
		select {
		case <-proc.Done():
		case <-time.After(30 * time.Second):
			p.t.Errorf("postfix master still running 30 s after postfix stop")
		}
	}
	if err := proc.Stop(); err != nil {
		p.t.Errorf("postfix: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := p.processes()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			p.t.Errorf("postfix processes left after stop (killed): %v", left)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processes lists the processes whose environment has MAIL_CONFIG set to
// this instance's config directory (every Postfix daemon inherits it).
func (p *Postfix) processes() []int {
	want := []byte("MAIL_CONFIG=" + p.ConfigDir + "\x00")
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		if bytes.Contains(append([]byte{0}, env...), append([]byte{0}, want...)) {
			pids = append(pids, pid)
		}
	}
	return pids
}
