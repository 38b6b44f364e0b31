package sdnotify

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNotify sends each kind of message to a datagram socket and reads
// it back; a nil or empty Notifier sends nothing.
func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := FromEnv()
	if n.Addr != path {
		t.Fatalf("FromEnv: Addr = %q, want %q", n.Addr, path)
	}
	read := func() string {
		t.Helper()
		b := make([]byte, 512)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, err := c.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(b[:k])
	}
	for _, state := range []string{Ready, Stopping, "STATUS=x"} {
		if ok, err := n.Notify(state); !ok || err != nil {
			t.Fatalf("Notify(%q) = %v, %v", state, ok, err)
		}
		if got := read(); got != state {
			t.Errorf("sent %q, read %q", state, got)
		}
	}
	n.Notify(Reloading())
	got := read()
	usec, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	if _, err := strconv.ParseUint(usec, 10, 64); !ok || err != nil {
		t.Errorf("Reloading() = %q, want RELOADING=1 and a MONOTONIC_USEC", got)
	}
	for _, n := range []*Notifier{nil, {}} {
		if ok, err := n.Notify(Ready); ok || err != nil {
			t.Errorf("disabled Notifier: Notify = %v, %v; want false, nil", ok, err)
		}
	}
}
