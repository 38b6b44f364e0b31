package wrapopts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Defaults for the zero values of Runner's fields.
const (
	// DefaultMaxBackground is how many spawn and twist commands may run at
	// once, across all checks.
	DefaultMaxBackground = 32
	// DefaultBackgroundTimeout is how long a spawn or twist command may
	// run before its process group is killed.
	DefaultBackgroundTimeout = 60 * time.Second
	// DefaultACLExecTimeout is how long an aclexec command may run; one
	// that runs out of time counts as failed.
	DefaultACLExecTimeout = 30 * time.Second
	// DefaultBannerTimeout is how long writing a banner to the client may
	// wait for room in the socket buffer.
	DefaultBannerTimeout = 2 * time.Second
)

// Runner carries out rule options for a long-running access service (such
// as tcpwrapd) whose checks each come with the live client socket. It holds
// what checks share: the bound on background commands and the time limits.
// Each check gets its own Service from Runner.Service.
//
// The exported fields must not change once Service has been called. A
// Runner is safe for concurrent use.
type Runner struct {
	// MaxBackground caps the spawn and twist commands running at once;
	// zero means DefaultMaxBackground. When the cap is reached, further
	// commands are skipped and logged, never queued: they must not delay
	// a verdict.
	MaxBackground int
	// BackgroundTimeout limits a spawn or twist command's run time; zero
	// means DefaultBackgroundTimeout. When it expires the command's process
	// group gets SIGKILL.
	BackgroundTimeout time.Duration
	// ACLExecTimeout limits an aclexec command's run time (it is also
	// bounded by the check's context); zero means DefaultACLExecTimeout.
	ACLExecTimeout time.Duration
	// BannerTimeout limits the wait for socket buffer space while writing
	// a banner; zero means DefaultBannerTimeout.
	BannerTimeout time.Duration
	// Environ is the environment commands start from, before setenv
	// options. Nil means this process's environment at the first
	// Service call, without LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES and
	// NOTIFY_SOCKET.
	Environ []string
	// Shell runs the commands as Shell -c CMD; empty means /bin/sh.
	Shell string

	once    sync.Once
	stopCtx context.Context // cancelled by Stop: kills background commands
	stop    context.CancelFunc
	sem     chan struct{}
	mu      sync.Mutex
	idle    *sync.Cond // signalled when running drops to 0
	running int        // started and not yet reaped, guarded by mu
	environ []string
	nice    string
}

func (r *Runner) init() {
	r.once.Do(func() {
		n := r.MaxBackground
		if n <= 0 {
			n = DefaultMaxBackground
		}
		r.sem = make(chan struct{}, n)
		r.stopCtx, r.stop = context.WithCancel(context.Background())
		r.idle = sync.NewCond(&r.mu)
		r.environ = r.Environ
		if r.environ == nil {
			for _, kv := range os.Environ() {
				switch name, _, _ := strings.Cut(kv, "="); name {
				case "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET":
					continue
				}
				r.environ = append(r.environ, kv)
			}
		}
		if p, err := exec.LookPath("nice"); err == nil {
			r.nice = p
		} else {
			r.nice = "/usr/bin/nice"
		}
	})
}

// Running returns the number of spawn and twist commands running now.
func (r *Runner) Running() int {
	r.init()
	return len(r.sem)
}

// Wait waits until no spawn or twist command is running (each is killed
// at BackgroundTimeout at the latest). Commands started while Wait waits
// are waited for too.
func (r *Runner) Wait() {
	r.init()
	r.mu.Lock()
	for r.running > 0 {
		r.idle.Wait()
	}
	r.mu.Unlock()
}

// Stop kills the process group of every spawn and twist command still
// running and makes later ones fail to start; Wait then returns once they
// are reaped. A daemon calls it on its way out, so that no command
// outlives it unsupervised.
func (r *Runner) Stop() {
	r.init()
	r.stop()
}

// Service returns the hostsrules.Effects for one check. fd is the client's
// socket (the descriptor whose peer is the client), or -1 when the check
// has none; it is used only during the check (until Policy.Check returns),
// and commands get their own duplicates, so the caller may close fd as soon
// as the check is decided. log receives what the options do (nil
// discards); give it the check's attributes (daemon, client address).
func (r *Runner) Service(fd int, log *slog.Logger) *Service {
	r.init()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{r: r, fd: fd, log: log, umask: -1}
}

// Service is a hostsrules.Effects that carries out every hosts_options(5)
// option of one check for real, in a long-running service whose client is
// the socket fd (see Runner.Service). Options run as the Policy calls Apply,
// left to right:
//
//   - spawn CMD: CMD runs as `/bin/sh -c CMD` in its own process group with
//     stdin, stdout and stderr on /dev/null, in the background: Apply does not
//     wait for it. At most Runner.MaxBackground run at once (beyond that the
//     command is skipped with a warning) and each is killed after
//     Runner.BackgroundTimeout. (tcpd waits for spawn commands.)
//   - twist CMD: CMD runs the same way, bounded and timed the same way, but
//     with the client socket as stdin, stdout and stderr. The Policy then
//     marks the decision delegated and denied; the service answers nothing.
//     (tcpd replaces itself with the command.) Without a client socket
//     (fd -1: a policy front end, which answers for a connection another
//     server holds) CMD is not run, since there is no service to replace
//     and no client to talk to; the skip is logged and the check is still
//     delegated and denied.
//   - aclexec CMD: CMD runs with the client socket (without one, fd -1:
//     /dev/null) as stdin, stdout and stderr and is waited for, at most Runner.ACLExecTimeout or until the
//     check's context ends; keep is true only for exit status 0 (Debian).
//   - banners DIR: Banner(DIR, x) is written to the client socket at once,
//     before the verdict, waiting at most Runner.BannerTimeout for buffer
//     space. A missing directory, a daemon name that is not a plain name
//     or a DIR/<daemon> that is not a regular file (see Banner), or a
//     failed write is logged, not an error, and sends nothing; a too-long
//     expansion is an error (as libwrap, which exits).
//   - setenv NAME VALUE, umask OCTAL, nice [N] (default 10, cumulative),
//     user NAME[.GROUP], group NAME: recorded and applied to every later
//     spawn, twist and aclexec command of this check (not to this
//     process): environment, umask (set by the shell before CMD), nice
//     increment (through nice(1)), and credentials (setgroups, setgid,
//     setuid in the child; user sets the user's groups and primary group
//     unless a group is given, group alone keeps the uid and drops the
//     supplementary groups). tcpd changes its own process; Debian's tcpd
//     ignores user and group (a bug).
//   - keepalive, linger SECS: SO_KEEPALIVE, SO_LINGER on the client
//     socket; a failure is logged.
//   - severity [FAC.]LEVEL: recorded; see Severity.
//   - rfc931 [SECS]: nothing here; the Policy looks the user up.
//
// The socket's file status flags (O_NONBLOCK, shared with the process that
// passed it) are never changed: commands inherit it as it is.
//
// A Service is used by one check at a time and is not safe for concurrent
// use; Severity may be called after the check.
type Service struct {
	r   *Runner
	fd  int
	log *slog.Logger

	env     []string // NAME=value from setenv, in order
	umask   int      // -1: not set
	nice    int
	user    *user.User
	gid     string // from group or user NAME.GROUP, "" if none
	prio    hostsrules.SyslogPriority
	hasPrio bool
}

var _ hostsrules.Effects = (*Service)(nil)

// Severity returns the syslog priority set by the check's last severity
// option and true, or false when there was none. A service logs the
// decision at that priority (SlogLevel), as tcpd logs its connect or
// refusal line; unlike tcpd's global allow_severity/deny_severity, it
// applies to this check only.
func (s *Service) Severity() (hostsrules.SyslogPriority, bool) { return s.prio, s.hasPrio }

// Apply carries out opt as the Service doc says. It returns keep=false only
// for an aclexec command that did not exit 0, and an error only when a
// value cannot be applied at all (a bad setenv name, an unknown user or
// group, a banner expansion over 8190 bytes); the Policy then denies.
func (s *Service) Apply(ctx context.Context, opt hostsrules.Option, x *hostsrules.Expander) (bool, error) {
	switch opt.Name {
	case "spawn":
		s.background(opt.Name, opt.Expanded, false)
	case "twist":
		if s.fd < 0 {
			// No client socket (a policy front end answers for a
			// connection it does not hold): there is no service to
			// replace and nobody to talk to.
			s.log.Info("twist not run: no client socket; the check is denied", "cmd", opt.Expanded)
			break
		}
		s.background(opt.Name, opt.Expanded, true)
	case "aclexec":
		return s.aclexec(ctx, opt.Expanded), nil
	case "banners":
		return true, s.banner(opt.Value, x)
	case "setenv":
		name, val, err := splitSetenv(opt.Expanded)
		if err != nil {
			return true, err
		}
		s.env = append(s.env, name+"="+val)
	case "umask":
		m, ok := parseOctal(opt.Value)
		if !ok || m > 0o777 {
			return true, errors.New("bad umask value")
		}
		s.umask = m
	case "nice":
		n := 10
		if opt.Value != "" {
			v, err := strconv.Atoi(strings.TrimLeft(strings.TrimSpace(opt.Value), "+"))
			if err != nil {
				return true, errors.New("bad nice value")
			}
			n = v
		}
		s.nice += n
	case "user":
		name, group, hasGroup := strings.Cut(opt.Value, ".")
		if hasGroup {
			g, err := user.LookupGroup(group)
			if err != nil {
				return true, fmt.Errorf("unknown group: %q", group)
			}
			s.gid = g.Gid
		}
		u, err := user.Lookup(name)
		if err != nil {
			return true, fmt.Errorf("unknown user: %q", name)
		}
		s.user = u
	case "group":
		g, err := user.LookupGroup(opt.Value)
		if err != nil {
			return true, fmt.Errorf("unknown group: %q", opt.Value)
		}
		s.gid = g.Gid
	case "keepalive":
		if s.fd >= 0 {
			if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1); err != nil {
				s.log.Warn("keepalive: setsockopt SO_KEEPALIVE failed", "err", err)
			}
		}
	case "linger":
		secs, err := strconv.Atoi(strings.TrimLeft(strings.TrimSpace(opt.Value), "+"))
		if err != nil || secs < 0 {
			return true, errors.New("bad linger value")
		}
		if s.fd >= 0 {
			l := &unix.Linger{Linger: int32(secs)}
			if secs > 0 {
				l.Onoff = 1
			}
			if err := unix.SetsockoptLinger(s.fd, unix.SOL_SOCKET, unix.SO_LINGER, l); err != nil {
				s.log.Warn("linger: setsockopt SO_LINGER failed", "err", err)
			}
		}
	case "severity":
		p, err := hostsrules.ParseSeverity(opt.Value)
		if err != nil {
			return true, err
		}
		s.prio, s.hasPrio = p, true
	}
	return true, nil
}

// splitSetenv splits a setenv value as libwrap: the name up to the first
// blank, the value the rest, both trimmed. glibc's setenv refuses an empty
// name or one with "=", which libwrap reports as below.
func splitSetenv(v string) (name, val string, err error) {
	name, val = v, ""
	if i := strings.IndexAny(v, " \t\r\n"); i >= 0 {
		name, val = v[:i], v[i+1:]
	}
	name, val = strings.TrimSpace(name), strings.TrimSpace(val)
	if name == "" || strings.Contains(name, "=") {
		return "", "", errors.New("memory allocation failure")
	}
	return name, val, nil
}

// parseOctal is sscanf %o: blanks, an optional sign, octal digits.
func parseOctal(s string) (int, bool) {
	s = strings.TrimSpace(s)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(s, "+-")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, false
	}
	if neg && v != 0 {
		return 0, false // wraps to a huge unsigned value: "bad umask value"
	}
	return int(v), true
}

// credential returns the child credentials the user and group options ask
// for, or nil to keep ours.
func (s *Service) credential() (*syscall.Credential, error) {
	if s.user == nil && s.gid == "" {
		return nil, nil
	}
	c := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Groups: []uint32{}}
	if s.user != nil {
		uid, err := strconv.ParseUint(s.user.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: uid %q", s.user.Username, s.user.Uid)
		}
		c.Uid = uint32(uid)
		gid, _ := strconv.ParseUint(s.user.Gid, 10, 32)
		c.Gid = uint32(gid)
		ids, err := s.user.GroupIds()
		if err != nil {
			return nil, fmt.Errorf("user %s: groups: %w", s.user.Username, err)
		}
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				c.Groups = append(c.Groups, uint32(g))
			}
		}
	}
	if s.gid != "" {
		gid, err := strconv.ParseUint(s.gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("group id %q", s.gid)
		}
		c.Gid = uint32(gid)
	}
	return c, nil
}

// command builds `sh -c script` with the recorded environment, umask, nice
// and credentials, in its own process group, killed as a group when ctx
// ends. stdio, if not nil, becomes its stdin, stdout and stderr; otherwise
// they are /dev/null.
func (s *Service) command(ctx context.Context, script string, stdio *os.File) (*exec.Cmd, error) {
	cred, err := s.credential()
	if err != nil {
		return nil, err
	}
	if s.umask >= 0 {
		script = fmt.Sprintf("umask %04o\n%s", s.umask, script)
	}
	shell := s.r.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	argv := []string{shell, "-c", script}
	if s.nice != 0 {
		argv = append([]string{s.r.nice, "-n", strconv.Itoa(s.nice)}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append([]string(nil), s.r.environ...), s.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if stdio != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio, stdio, stdio
	}
	return cmd, nil
}

// clientFile returns a new descriptor for the client socket, or nil when
// the check has none. The caller closes it.
func (s *Service) clientFile() (*os.File, error) {
	if s.fd < 0 {
		return nil, nil
	}
	nfd, err := unix.FcntlInt(uintptr(s.fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("dup client socket: %w", err)
	}
	// os.NewFile keeps a non-blocking descriptor non-blocking, also for
	// exec: the flag belongs to the description the login shares.
	return os.NewFile(uintptr(nfd), "client"), nil
}

// background starts a spawn or twist command without waiting for it.
func (s *Service) background(what, script string, client bool) {
	r := s.r
	select {
	case r.sem <- struct{}{}:
	default:
		s.log.Warn(what+" skipped: too many background commands", "running", cap(r.sem), "cmd", script)
		return
	}
	release := func() { <-r.sem }
	timeout := defaults.Positive(r.BackgroundTimeout, DefaultBackgroundTimeout)
	ctx, cancel := context.WithTimeout(r.stopCtx, timeout)
	var stdio *os.File
	if client {
		f, err := s.clientFile()
		if err != nil {
			s.log.Warn(what+" failed", "cmd", script, "err", err)
			cancel()
			release()
			return
		}
		stdio = f
	}
	cmd, err := s.command(ctx, script, stdio)
	if err == nil {
		err = cmd.Start()
	}
	if stdio != nil {
		stdio.Close() // the child has its own copies
	}
	if err != nil {
		s.log.Warn(what+" failed", "cmd", script, "err", err)
		cancel()
		release()
		return
	}
	pid := cmd.Process.Pid
	s.log.Debug(what+" started", "cmd", script, "pid", pid)
	log := s.log
	r.mu.Lock()
	r.running++
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			if r.running--; r.running == 0 {
				r.idle.Broadcast()
			}
			r.mu.Unlock()
		}()
		defer release()
		defer cancel()
		start := time.Now()
		err := cmd.Wait()
		switch {
		case ctx.Err() == context.DeadlineExceeded:
			log.Warn(what+" killed after time limit", "cmd", script, "pid", pid, "limit", timeout)
		case err != nil:
			log.Debug(what+" exited", "cmd", script, "pid", pid, "err", err, "took", time.Since(start))
		default:
			log.Debug(what+" exited", "cmd", script, "pid", pid, "status", 0, "took", time.Since(start))
		}
	}()
}

// aclexec runs a command in the foreground with the client socket as its
// stdio and reports whether it exited 0.
func (s *Service) aclexec(ctx context.Context, script string) bool {
	timeout := defaults.Positive(s.r.ACLExecTimeout, DefaultACLExecTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stdio, err := s.clientFile()
	if err != nil {
		s.log.Warn("aclexec failed", "cmd", script, "err", err)
		return false
	}
	if stdio == nil {
		stdio, err = os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			s.log.Warn("aclexec failed", "cmd", script, "err", err)
			return false
		}
	}
	defer stdio.Close()
	cmd, err := s.command(ctx, script, stdio)
	if err == nil {
		err = cmd.Run()
	}
	if err != nil {
		if ctx.Err() != nil {
			s.log.Warn("aclexec killed", "cmd", script, "err", ctx.Err(), "limit", timeout)
		} else {
			s.log.Debug("aclexec failed", "cmd", script, "err", err)
		}
		return false
	}
	return true
}

// banner writes the banners option's file to the client.
func (s *Service) banner(dir string, x *hostsrules.Expander) error {
	b, err := Banner(dir, x)
	if errors.Is(err, hostsrules.ErrExpansionTooLong) {
		return err
	}
	if err != nil {
		s.log.Warn("banners: " + err.Error())
	}
	if len(b) == 0 || s.fd < 0 {
		return nil
	}
	if err := WriteClient(s.fd, b, defaults.Positive(s.r.BannerTimeout, DefaultBannerTimeout)); err != nil {
		s.log.Warn("banners: write to client failed", "dir", dir, "err", err)
	}
	return nil
}

// WriteClient writes all of b to the socket fd, waiting at most timeout in
// total for buffer space, without changing the descriptor's flags (each
// send uses MSG_DONTWAIT and MSG_NOSIGNAL, so neither a blocking descriptor
// nor a vanished peer can hang or kill the caller). It returns an error
// wrapping os.ErrDeadlineExceeded when time runs out with bytes unsent, or
// the send error (EPIPE, ECONNRESET, ENOTSOCK, ...). Safe for concurrent use
// on distinct descriptors.
func WriteClient(fd int, b []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	sent := 0
	for sent < len(b) {
		n, err := unix.SendmsgN(fd, b[sent:], nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			left := time.Until(deadline)
			if left <= 0 {
				return fmt.Errorf("%d of %d bytes sent: %w", sent, len(b), os.ErrDeadlineExceeded)
			}
			ms := int(left/time.Millisecond) + 1
			if _, perr := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, ms); perr != nil && perr != unix.EINTR {
				return perr
			}
			continue
		case err != nil:
			return err
		}
		sent += n
	}
	return nil
}
