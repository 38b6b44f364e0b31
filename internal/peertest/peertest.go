// Package peertest holds the rule every test that needs a real peer
// (Dovecot 2.3, Dovecot 2.4, Postfix) follows when the peer cannot be
// started: under CI=true the test fails, never skips (CI installs the
// peers and runs as root, so a skip there would hide a broken job);
// elsewhere it skips and says why.
package peertest

import (
	"os"
	"testing"
)

// Require does nothing when err is nil. Otherwise it fails t under
// CI=true, or skips it, naming the peer ("real-Dovecot", "Dovecot 2.4",
// "real-Postfix") and err.
func Require(t testing.TB, peer string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s test cannot run under CI=true: %v", peer, err)
	}
	t.Skipf("skipping %s test: %v", peer, err)
}
