package access

import (
	"fmt"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// socket is an access socket in dir that answers every request with
// reply ("": no reply, the connection stays open until the test ends).
func socket(t *testing.T, dir, name, reply string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			b, oob := make([]byte, 64), make([]byte, syscall.CmsgSpace(4))
			_, oobn, _, _, _ := c.ReadMsgUnix(b, oob)
			if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) > 0 {
				if fds, err := syscall.ParseUnixRights(&msgs[0]); err == nil {
					for _, fd := range fds {
						syscall.Close(fd)
					}
				}
			}
			if reply == "" {
				t.Cleanup(func() { c.Close() })
				continue
			}
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	return path
}

// TestCheck checks the sockets asked in order and Dovecot's log lines
// for each way a check ends.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	yes, no := socket(t, dir, "yes", "1\n"), socket(t, dir, "no", "0\n")
	bad, silent := socket(t, dir, "bad", "2\n"), socket(t, dir, "silent", "")
	missing := filepath.Join(dir, "missing")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for _, tc := range []struct {
		name    string
		sockets []string
		want    ipc.CloseReason
		log     []string
	}{
		{"none", nil, ipc.CloseNormal, nil},
		{"all allow", []string{yes, yes}, ipc.CloseNormal, nil},
		{"refused by the second", []string{yes, no, yes}, ipc.CloseRefused,
			[]string{"INFO access(" + no + "): Client refused (rip=192.0.2.7)"}},
		{"invalid input", []string{bad}, ipc.CloseRefused,
			[]string{"ERROR access(" + bad + "): Invalid input", "INFO access(" + bad + "): Client refused (rip=192.0.2.7)"}},
		{"timed out", []string{silent}, ipc.CloseRefused,
			[]string{"ERROR access(" + silent + "): Timed out while waiting for reply", "INFO access(" + silent + "): Client refused (rip=192.0.2.7)"}},
		{"not asked", []string{yes, missing}, ipc.CloseAccessError,
			[]string{"ERROR connect(" + missing + ") failed: connect: no such file or directory (rip=192.0.2.7)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log []string
			logf := func(level, format string, args ...any) { log = append(log, level+" "+fmt.Sprintf(format, args...)) }
			got := Check(tc.sockets, "imap", sc.(*net.TCPConn), 200*time.Millisecond, "192.0.2.7", logf)
			if got != tc.want {
				t.Errorf("Check = %v, want %v", got, tc.want)
			}
			if d := cmp.Diff(tc.log, log); d != "" {
				t.Errorf("log (-want +got):\n%s", d)
			}
		})
	}
}
