// Package wrapopts carries out the side effects of hosts_options(5)
// options for tcpwrapd and loginctl: it implements hostsrules.Effects.
//
// The rules engine (package hostsrules) parses and validates every option,
// %-expands the values of spawn, twist, aclexec and setenv (sanitising
// every expansion as libwrap does), and decides allow and deny itself; what
// an option does beyond that depends on where the check runs, and lives
// here:
//
//   - Runner and Service: every option for real in a long-running access
//     service whose check carries the live client socket (tcpwrapd). See
//     Service for each option and for where this differs from tcpd.
//   - ACLExec: only aclexec, the one option that changes a verdict
//     (loginctl check-host).
//   - Banner and WriteClient: the banners option's text and a bounded,
//     flag-preserving write of it to a client socket.
//   - SlogLevel and FormatPriority: the severity option for log/slog.
package wrapopts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// ACLExec is a hostsrules.Effects that runs aclexec commands and no other
// option: the only option whose outcome changes a verdict (Debian
// hosts_options(5): a non-zero exit status makes the rule not match). The
// command runs as `/bin/sh -c CMD` with its standard input, output and
// error on Stdio (nil: /dev/null), and is waited for, as libwrap does.
// It is what `loginctl check-host` uses to give a live daemon's verdict.
type ACLExec struct {
	// Stdio, if set, becomes the command's stdin, stdout and stderr
	// (libwrap gives it the client socket).
	Stdio *os.File
	// Timeout bounds the command's run time; zero means 30 seconds. A
	// command that runs out of time counts as failed.
	Timeout time.Duration
}

// Apply runs opt when it is aclexec and reports whether the command exited
// with status 0. Every other option is accepted without effect.
func (a ACLExec) Apply(ctx context.Context, opt hostsrules.Option, _ *hostsrules.Expander) (bool, error) {
	if opt.Name != "aclexec" {
		return true, nil
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", opt.Expanded)
	if a.Stdio != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = a.Stdio, a.Stdio, a.Stdio
	}
	cmd.WaitDelay = time.Second
	return cmd.Run() == nil, nil
}

// Banner returns the banner the banners option sends for the request x
// belongs to (hosts_options(5)): the file DIR/<daemon>, with leading NUL
// bytes copied, then each line %-expanded and its newline turned into
// CR LF. A line with an unbalanced "[" keeps its bare LF, because libwrap
// finds the newline with its bracket-aware splitter. A missing file is not
// an error (nil, nil); a missing or unreadable directory is, with libwrap's
// message "DIR: strerror".
//
// Unlike libwrap, Banner never leaves DIR because of the request: a daemon
// name that is not a plain name (see CheckPlainName: "../../etc/shadow",
// "a/b", "..", "", control characters) is an error wrapping
// ErrNotPlainName, and nothing is read. DIR/<daemon> itself may be a
// symbolic link (DIR is the administrator's), but it must end at a regular
// file: a FIFO, device or directory is an error, and it is opened without
// blocking and never as a controlling terminal.
func Banner(dir string, x *hostsrules.Expander) ([]byte, error) {
	name := x.Daemon()
	if err := CheckPlainName(name); err != nil {
		return nil, fmt.Errorf("%s: daemon name: %w", dir, err)
	}
	data, err := readRegular(dir + "/" + name)
	switch {
	case errors.Is(err, errNotRegular):
		return nil, err
	case err != nil:
		if _, serr := os.Stat(dir); serr != nil {
			return nil, fmt.Errorf("%s: %w", dir, serr)
		}
		return nil, nil
	}
	var out []byte
	i := 0
	for i < len(data) && data[i] == 0 {
		out = append(out, 0)
		i++
	}
	for _, line := range splitLinesKeep(data[i:]) {
		if before, _, ok := hostsrules.SplitAt(line, '\n'); ok {
			line = before + "\r\n"
		}
		exp, err := x.Expand(line)
		if err != nil {
			return out, err
		}
		out = append(out, exp...)
	}
	return out, nil
}

// ErrNotPlainName is wrapped by the errors of CheckPlainName.
var ErrNotPlainName = errors.New("not a plain name")

// CheckPlainName returns nil when name can only ever name one entry of a
// directory: it is not empty, not "." or "..", and has no "/", NUL byte or
// other control character (a byte below 0x20, or 0x7f). Otherwise the
// error, which wraps ErrNotPlainName, says why. tcpwrapd refuses requests
// whose daemon name fails it, and Banner reads no file for one. It is safe
// for concurrent use.
func CheckPlainName(name string) error {
	switch name {
	case "":
		return fmt.Errorf("%w: empty", ErrNotPlainName)
	case ".", "..":
		return fmt.Errorf("%w: %q", ErrNotPlainName, name)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '/':
			return fmt.Errorf("%w: %q contains \"/\"", ErrNotPlainName, name)
		case c == 0:
			return fmt.Errorf("%w: %q contains a NUL byte", ErrNotPlainName, name)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("%w: %q contains control character %#02x", ErrNotPlainName, name, c)
		}
	}
	return nil
}

// errNotRegular: a banner path that does not end at a regular file.
var errNotRegular = errors.New("not a regular file")

// readRegular reads the regular file at path (following symbolic links),
// opened with O_NONBLOCK and O_NOCTTY so that a FIFO or terminal planted
// there can neither block nor become anything's terminal; other kinds of
// file give an error wrapping errNotRegular.
func readRegular(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", path, errNotRegular, fi.Mode().Type())
	}
	return io.ReadAll(f)
}

// splitLinesKeep splits data after each newline, keeping it.
func splitLinesKeep(data []byte) []string {
	var out []string
	for len(data) > 0 {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			out = append(out, string(data))
			break
		}
		out = append(out, string(data[:j+1]))
		data = data[j+1:]
	}
	return out
}
