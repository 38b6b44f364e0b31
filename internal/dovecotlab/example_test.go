package dovecotlab_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
)

// A test that runs an external access daemon for a real Dovecot: the
// socket directory first, then the daemon, then the master; then a real
// IMAP client from 127.0.0.2 and the log line of its refusal.
func Example() {
	var t testing.TB // the test's *testing.T
	d := dovecotlab.New(t, dovecotlab.Config{HostsDeny: "ALL: 127.0.0.2\n"})
	dir, err := d.ExternalSocketDir("tcpwrapd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dovecotlab.StartSocketActivated(t, dovecotlab.SocketActivation{
		Socket: filepath.Join(dir, "access"),
		Argv:   []string{"/path/to/tcpwrapd", "--allow-file", d.HostsAllow, "--deny-file", d.HostsDeny},
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.Launch(); err != nil {
		t.Fatal(err)
	}
	mark := d.LogMark()
	res, err := dovecotlab.Probe(context.Background(), "imap", "127.0.0.2", d.Addr("imap"))
	if err != nil || res.Verdict != dovecotlab.Refused {
		t.Fatalf("got %v, %v; want refused", res.Verdict, err)
	}
	if _, err := d.WaitLog(context.Background(), mark, dovecotlab.RefusedLine("imap", dovecotlab.DefaultAccessSocket, "127.0.0.2")); err != nil {
		t.Error(err)
	}
}
