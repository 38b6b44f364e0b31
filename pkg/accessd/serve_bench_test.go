package accessd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkServe measures one whole access check as a login process makes
// it: connect, one sendmsg with the client's TCP socket, one read, close;
// the server evaluates a 10,000-line hosts.deny that does not list the
// client. It reports the cost per check of client and server together.
func BenchmarkServe(b *testing.B) {
	var deny strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&deny, "ALL: 198.18.%d.%d\n", i/250, i%250+1)
	}
	ts := startServerB(b, "", deny.String())
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	a, err := ln.AcceptTCP()
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	f, _ := a.File()
	defer f.Close()
	oob := unix.UnixRights(int(f.Fd()))
	addr := &net.UnixAddr{Name: ts, Net: "unix"}
	buf := make([]byte, 3)
	b.ReportAllocs()
	for b.Loop() {
		uc, err := net.DialUnix("unix", nil, addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := uc.WriteMsgUnix([]byte("imap\n"), oob, nil); err != nil {
			b.Fatal(err)
		}
		if n, _ := uc.Read(buf); n != 2 || buf[0] != '1' {
			b.Fatalf("reply %q", buf[:n])
		}
		uc.Close()
	}
}

// startServerB starts a server for a benchmark and returns its socket path.
func startServerB(b *testing.B, allow, deny string) string {
	dir, err := os.MkdirTemp("", "tw")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "hosts.allow"), []byte(allow), 0o644)
	os.WriteFile(filepath.Join(dir, "hosts.deny"), []byte(deny), 0o644)
	sock := filepath.Join(dir, "access")
	srv := &server{Rules: NewRules(filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny"), nil), Env: testEnv()}
	ln, err := Listen(sock, 0o600, -1, -1)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	return sock
}
