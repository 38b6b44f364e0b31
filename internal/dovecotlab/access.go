package dovecotlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
)

// LookupIDs returns the uid and gid of user name (its primary group).
func LookupIDs(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	return uid, gid, nil
}

// ExternalSocketDir creates base_dir/login/NAME for an external access
// daemon's socket (docs/dovecot-managed.md, "The login access-check protocol") and returns its path. The directory is owned
// by dovenull:dovenull with mode 0750, so the chrooted login processes
// (which run as dovenull) can traverse it, and the login_access_sockets
// entry for a socket S in it is "NAME/S".
//
// It may be called before or after the master starts. If base_dir/login
// does not exist yet it is created as the master would create it
// (root:dovenull 0750); the master accepts the existing directory and its
// start-up scan of base_dir/login does not descend into NAME, so a live
// socket there neither blocks the start nor is deleted (see the package
// tests).
func (d *Dovecot) ExternalSocketDir(name string) (string, error) {
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return "", fmt.Errorf("external socket dir: bad name %q", name)
	}
	uid, gid, err := LookupIDs(LoginUser)
	if err != nil {
		return "", fmt.Errorf("external socket dir: %w", err)
	}
	login := d.LoginDir()
	if err := os.MkdirAll(d.BaseDir, 0o755); err != nil {
		return "", fmt.Errorf("external socket dir: %w", err)
	}
	if err := os.Mkdir(login, 0o750); err == nil {
		if err := os.Chown(login, 0, gid); err != nil {
			return "", fmt.Errorf("external socket dir: %w", err)
		}
	} else if !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("external socket dir: %w", err)
	}
	dir := filepath.Join(login, name)
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("external socket dir: %w", err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return "", fmt.Errorf("external socket dir: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return "", fmt.Errorf("external socket dir: %w", err)
	}
	return dir, nil
}

// SocketPerm is the ownership and mode given to an access socket so that
// login processes can connect. Connecting to a unix socket needs write
// permission on it.
type SocketPerm struct {
	// User and Group name the owner; empty means LoginUser (dovenull)
	// and that user's primary group.
	User, Group string
	// Mode is the permission bits; zero means 0600, like Dovecot's own
	// login/tcpwrap listener.
	Mode os.FileMode
}

// apply sets the ownership and mode of the socket file at path.
func (p SocketPerm) apply(path string) error {
	name := p.User
	if name == "" {
		name = LoginUser
	}
	uid, gid, err := LookupIDs(name)
	if err != nil {
		return err
	}
	if p.Group != "" {
		g, err := user.LookupGroup(p.Group)
		if err != nil {
			return err
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fmt.Errorf("group %s: gid %q: %w", p.Group, g.Gid, err)
		}
	}
	mode := p.Mode
	if mode == 0 {
		mode = 0o600
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// SocketActivation describes a daemon run under systemd-socket-activate.
type SocketActivation struct {
	// Socket is the path of the unix socket to listen on.
	Socket string
	// Perm is applied to the socket file once it exists.
	Perm SocketPerm
	// FDName, if set, is passed as --fdname (LISTEN_FDNAMES).
	FDName string
	// Env lists NAME=VALUE pairs passed to the daemon with -E. The
	// daemon's environment is otherwise only PATH, LISTEN_FDS,
	// LISTEN_PID (and LISTEN_FDNAMES).
	Env []string
	// Argv is the daemon's command line; Argv[0] is looked up in PATH.
	Argv []string
	// OutputPath receives the daemon's stdout and stderr (and
	// systemd-socket-activate's own messages). Empty means a file in
	// t.TempDir().
	OutputPath string
	// Timeout bounds the wait for the socket file. Zero means 10 s.
	Timeout time.Duration
}

// StartSocketActivated starts sa.Argv under `systemd-socket-activate -l
// sa.Socket`, waits for the socket file, and applies sa.Perm to it. Stop
// is registered with t.Cleanup.
//
// systemd-socket-activate (systemd 252) binds the socket with the
// process umask (0644 as root with umask 022), has no option for the
// socket's owner or mode, and, without --accept, only execs the daemon
// when the first connection arrives (the PID stays the same). So the
// daemon is not running when this returns; the first access lookup starts
// it, and that connection waits in the backlog meanwhile.
func StartSocketActivated(t testing.TB, sa SocketActivation) (*Process, error) {
	t.Helper()
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		return nil, fmt.Errorf("systemd-socket-activate not found (package systemd): %w", err)
	}
	if len(sa.Argv) == 0 {
		return nil, errors.New("socket activation: no command")
	}
	args := []string{"-l", sa.Socket}
	if sa.FDName != "" {
		args = append(args, "--fdname="+sa.FDName)
	}
	for _, e := range sa.Env {
		args = append(args, "-E", e)
	}
	args = append(args, "--")
	args = append(args, sa.Argv...)
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	out := sa.OutputPath
	if out == "" {
		out = filepath.Join(t.TempDir(), filepath.Base(sa.Argv[0])+".out")
	}
	p, err := StartProcess(t, filepath.Base(sa.Argv[0]), cmd, out)
	if err != nil {
		return nil, err
	}
	timeout := sa.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := os.Lstat(sa.Socket)
		if err == nil && st.Mode()&os.ModeSocket != 0 {
			break
		}
		if done, werr := p.Exited(); done {
			return nil, fmt.Errorf("systemd-socket-activate exited (%v) before creating %s:\n%s", werr, sa.Socket, p.Output())
		}
		if time.Now().After(deadline) {
			_ = p.Stop()
			return nil, fmt.Errorf("socket %s did not appear in %v:\n%s", sa.Socket, timeout, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := sa.Perm.apply(sa.Socket); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("socket %s: %w", sa.Socket, err)
	}
	return p, nil
}

// ListenAccess creates a unix stream listener at path with perm applied,
// closed by t.Cleanup. It is for in-process access services
// ([ServeAccess]).
func ListenAccess(t testing.TB, path string, perm SocketPerm) (*net.UnixListener, error) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { ln.Close() })
	if err := perm.apply(path); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return ln, nil
}

// AccessRequest is one decoded access-check request.
type AccessRequest struct {
	// Name is the daemon name ("imap", "pop3", ...) without the newline.
	Name string
	// Peer is the remote address of the passed fd; invalid if no inet
	// socket was passed.
	Peer netip.AddrPort
	// Local is the local address of the passed fd (Dovecot's listener).
	Local netip.AddrPort
}

// AccessFunc decides a request: true answers "1\n", false "0\n".
type AccessFunc func(AccessRequest) bool

// ServeAccess is a minimal reference implementation of the service side of
// the access-check protocol (docs/dovecot-managed.md): for every connection on ln it reads
// one message of up to 1024 bytes with one SCM_RIGHTS fd, asks decide,
// closes the passed fd, writes "1\n" or "0\n" in one write and closes the
// connection. Invalid requests are closed without reply. It returns nil
// when ctx is done (and closes ln), or the Accept error.
//
// It exists to test the harness itself independently of tcpwrapd.
func ServeAccess(ctx context.Context, ln *net.UnixListener, decide AccessFunc) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go serveAccessConn(c, decide)
	}
}

func serveAccessConn(c *net.UnixConn, decide AccessFunc) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	oob := make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	var fds []int
	if err == nil && oobn > 0 {
		if msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if rights, rerr := syscall.ParseUnixRights(&m); rerr == nil {
					fds = append(fds, rights...)
				}
			}
		}
	}
	var req AccessRequest
	for i, fd := range fds {
		if i == 0 {
			req.Peer = sockaddrPort(syscall.Getpeername(fd))
			req.Local = sockaddrPort(syscall.Getsockname(fd))
		}
		syscall.Close(fd) // never keep the client's socket
	}
	if err != nil || n < 2 || n >= len(buf) || buf[n-1] != '\n' {
		return
	}
	req.Name = string(buf[:n-1])
	reply := "0\n"
	if decide(req) {
		reply = "1\n"
	}
	_, _ = c.Write([]byte(reply))
}

func sockaddrPort(sa syscall.Sockaddr, err error) netip.AddrPort {
	if err != nil {
		return netip.AddrPort{}
	}
	return sockfd.SyscallAddrPort(sa)
}
