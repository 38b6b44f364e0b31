package authclient_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
)

// TestDovecot24Auth: against a real Dovecot 2.4.1 (internal/dovecot24lab),
// on its auth service's base_dir/login/login socket, the handshake reports
// protocol 1.3 (and the client speaks 1.3), PLAIN with the lab user's
// password is OK and with a wrong one FAIL.
func TestDovecot24Auth(t *testing.T) {
	d := dovecot24lab.Start(t, dovecot24lab.Config{
		Protocols: []string{"imap"},
		Users:     map[string]string{labUser: labPass},
	})
	c := authclient.New(authclient.Config{
		Path:   filepath.Join(d.Dir, "run", "login", "login"),
		PID:    fakePID(),
		Logger: testLogger(t),
	})
	t.Cleanup(func() { c.Close() })
	hs, err := c.WaitReady(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatalf("handshake: %v\n%s", err, d.Log())
	}
	if hs.Version != authclient.Version13 || hs.Spoken != authclient.Version13 {
		t.Errorf("version: server %v, spoken %v; want 1.3 both (Dovecot 2.4)", hs.Version, hs.Spoken)
	}
	if hs.ServerPID == 0 || hs.ConnectUID == 0 || hs.Cookie == [16]byte{} {
		t.Errorf("handshake ids missing: %+v", hs)
	}
	good, bad := plain(labUser, labPass), plain(labUser, "wrong")

	t.Run("PLAIN OK", func(t *testing.T) {
		a, st := beginNext(t, c, request("PLAIN", "192.0.2.1", &good), 10*time.Second)
		if st.Status != authclient.StatusOK || st.Reply.User != labUser {
			t.Fatalf("got %v %v, want OK user=%s\n%s", st.Status, st.Reply.LogValue(), labUser, d.Log())
		}
		if a.ID() == 0 || a.ServerPID() != hs.ServerPID || a.Cookie() != hs.Cookie {
			t.Errorf("hand-off ids: id %d spid %d, handshake %+v", a.ID(), a.ServerPID(), hs)
		}
		a.Cancel() // no hand-off follows: let auth forget it
	})

	t.Run("PLAIN FAIL", func(t *testing.T) {
		a, st := beginNext(t, c, request("PLAIN", "192.0.2.2", &bad), 20*time.Second)
		if st.Status != authclient.StatusFail {
			t.Fatalf("got %v %v, want FAIL\n%s", st.Status, st.Reply.LogValue(), d.Log())
		}
		if err := a.Continue(good); err != authclient.ErrFinished {
			t.Errorf("Continue after FAIL = %v, want ErrFinished", err)
		}
	})
}
