package authclient_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
)

// Tests against a real Dovecot 2.3 (internal/dovecotlab): its auth
// service on base_dir/login/login, a passwd-file passdb with alice.

const (
	labUser = "alice"
	labPass = "s3cret pass!"
)

func startLab(t *testing.T) *dovecotlab.Dovecot {
	t.Helper()
	return dovecotlab.Start(t, dovecotlab.Config{
		NoAccessCheck:  true,
		Protocols:      []string{"imap"},
		Users:          map[string]string{labUser: labPass},
		AuthMechanisms: "plain login",
		Extra:          "auth_verbose = yes\n",
	})
}

// testLogger logs to t and fails the test on Error records.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

var pidSeq sync.Mutex
var nextPID uint32 = 4_000_000

// fakePID returns a CPID no real process of this test uses, so that
// several clients in one test process stay unique to auth.
func fakePID() uint32 {
	pidSeq.Lock()
	defer pidSeq.Unlock()
	nextPID++
	return nextPID
}

func newClient(t *testing.T, d *dovecotlab.Dovecot, cfg authclient.Config) *authclient.Client {
	t.Helper()
	cfg.Path = filepath.Join(d.LoginDir(), "login")
	if cfg.PID == 0 {
		cfg.PID = fakePID()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c := authclient.New(cfg)
	t.Cleanup(func() { c.Close() })
	return c
}

func plain(user, pass string) authclient.Secret {
	return authclient.Secret(base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass)))
}

func request(mech, rip string, resp *authclient.Secret) *authclient.Request {
	r := &authclient.Request{
		Mech: mech, Service: "imap", Session: "sess-" + rip, Secured: true,
		FinalRespOK: true,
		LocalAddr:   netip.MustParseAddrPort("127.0.0.1:143"),
		RemoteAddr:  netip.AddrPortFrom(netip.MustParseAddr(rip), 50000),
	}
	if resp != nil {
		r.InitialResponse, r.HasInitialResponse = *resp, true
	}
	return r
}

// beginNext starts req on c and waits up to wait for auth's first
// answer, failing t on an error.
func beginNext(t *testing.T, c *authclient.Client, req *authclient.Request, wait time.Duration) (*authclient.Auth, authclient.Step) {
	t.Helper()
	a, err := c.Begin(ctxT(t, 10*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.Next(ctxT(t, wait))
	if err != nil {
		t.Fatal(err)
	}
	return a, st
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestDovecotHandshake(t *testing.T) {
	d := startLab(t)
	c := newClient(t, d, authclient.Config{})
	hs, err := c.WaitReady(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if hs.Version != authclient.Version12 || hs.Spoken != authclient.Version12 {
		t.Errorf("version: server %v, spoken %v; want 1.2 both (Dovecot 2.3)", hs.Version, hs.Spoken)
	}
	var names []string
	for _, m := range hs.Mechs {
		names = append(names, m.Name)
		if m.Flags&authclient.MechPlaintext == 0 {
			t.Errorf("mech %s: flags %q lack plaintext", m.Name, m.Flags)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"LOGIN", "PLAIN"}) {
		t.Errorf("mechs = %v, want LOGIN PLAIN", names)
	}
	if hs.ServerPID == 0 || hs.ConnectUID == 0 || hs.Cookie == [16]byte{} {
		t.Errorf("handshake ids missing: %+v", hs)
	}
}

func TestDovecotAuth(t *testing.T) {
	d := startLab(t)
	c := newClient(t, d, authclient.Config{})
	if _, err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	good, bad := plain(labUser, labPass), plain(labUser, "wrong")

	t.Run("PLAIN OK", func(t *testing.T) {
		a, st := beginNext(t, c, request("PLAIN", "192.0.2.1", &good), 10*time.Second)
		if st.Status != authclient.StatusOK || st.Reply.User != labUser {
			t.Fatalf("got %v %v, want OK user=%s\n%s", st.Status, st.Reply.LogValue(), labUser, d.Log())
		}
		hs, _ := c.Handshake()
		if a.ID() == 0 || a.ServerPID() != hs.ServerPID || a.Cookie() != hs.Cookie {
			t.Errorf("hand-off ids: id %d spid %d, handshake %+v", a.ID(), a.ServerPID(), hs)
		}
		a.Cancel() // no hand-off follows: let auth forget it
	})

	t.Run("PLAIN FAIL after the failure delay", func(t *testing.T) {
		start := time.Now()
		a, st := beginNext(t, c, request("PLAIN", "192.0.2.2", &bad), 20*time.Second)
		took := time.Since(start)
		if st.Status != authclient.StatusFail || st.Reply.User != labUser {
			t.Fatalf("got %v %v, want FAIL user=%s", st.Status, st.Reply.LogValue(), labUser)
		}
		// auth_failure_delay = 2 s, released by a 500 ms timer: 1.5-2.5 s.
		if took < 1400*time.Millisecond {
			t.Errorf("FAIL after %v; Dovecot delays failures by auth_failure_delay (2 s)", took)
		}
		t.Logf("FAIL after %v", took)
		if err := a.Continue(good); err != authclient.ErrFinished {
			t.Errorf("Continue after FAIL = %v, want ErrFinished", err)
		}
	})

	t.Run("CANCEL", func(t *testing.T) {
		a, st := beginNext(t, c, request("PLAIN", "192.0.2.3", nil), 10*time.Second)
		if st.Status != authclient.StatusContinue || st.Challenge != "" {
			t.Fatalf("got %v %q, want CONT with an empty challenge", st.Status, st.Challenge)
		}
		// The client goes away: Next's context ends, Next cancels.
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := a.Next(gone); err != context.Canceled {
			t.Fatalf("Next with a cancelled context = %v", err)
		}
		if err := a.Continue(good); err != authclient.ErrFinished {
			t.Errorf("Continue after Cancel = %v, want ErrFinished", err)
		}
		// The connection still serves requests, and auth did not take the
		// CANCEL as broken input.
		b, err := c.Begin(ctxT(t, 10*time.Second), request("PLAIN", "192.0.2.3", &good))
		if err != nil {
			t.Fatal(err)
		}
		if st, err := b.Next(ctxT(t, 10*time.Second)); err != nil || st.Status != authclient.StatusOK {
			t.Fatalf("after CANCEL: %v %v", st.Status, err)
		}
		b.Cancel()
	})

	t.Run("LOGIN with CONT", func(t *testing.T) {
		a, err := c.Begin(ctxT(t, 10*time.Second), request("LOGIN", "192.0.2.4", nil))
		if err != nil {
			t.Fatal(err)
		}
		var prompts []string
		answers := []string{labUser, labPass}
		for {
			st, err := a.Next(ctxT(t, 10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != authclient.StatusContinue {
				if st.Status != authclient.StatusOK || st.Reply.User != labUser {
					t.Fatalf("got %v %v, want OK", st.Status, st.Reply.LogValue())
				}
				break
			}
			p, _ := base64.StdEncoding.DecodeString(st.Challenge)
			prompts = append(prompts, string(p))
			if len(answers) == 0 {
				t.Fatalf("more challenges than expected: %q", prompts)
			}
			if err := a.Continue(authclient.Secret(base64.StdEncoding.EncodeToString([]byte(answers[0])))); err != nil {
				t.Fatal(err)
			}
			answers = answers[1:]
		}
		if want := []string{"Username:", "Password:"}; !slices.Equal(prompts, want) {
			t.Errorf("challenges %q, want %q", prompts, want)
		}
		a.Cancel()
	})

	t.Run("multiplexed", func(t *testing.T) {
		const n = 24
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, want := good, authclient.StatusOK
				if i%4 == 3 {
					resp, want = bad, authclient.StatusFail
				}
				a, err := c.Begin(ctxT(t, 10*time.Second), request("PLAIN", fmt.Sprintf("198.51.100.%d", i+1), &resp))
				if err != nil {
					errs <- err
					return
				}
				st, err := a.Next(ctxT(t, 20*time.Second))
				if err == nil && st.Status != want {
					err = fmt.Errorf("request %d: %v, want %v", i, st.Status, want)
				}
				a.Cancel()
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// TestDovecotReconnect restarts the Dovecot master: the client loses its
// connection, pending requests fail as temporary, and it reconnects to the
// new auth process.
func TestDovecotReconnect(t *testing.T) {
	d := startLab(t)
	c := newClient(t, d, authclient.Config{ReconnectInterval: 100 * time.Millisecond})
	hs1, err := c.WaitReady(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Begin(ctxT(t, 10*time.Second), request("PLAIN", "192.0.2.9", nil))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.Next(ctxT(t, 10*time.Second)); err != nil || st.Status != authclient.StatusContinue {
		t.Fatalf("first step: %v %v", st.Status, err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	st, err := a.Next(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != authclient.StatusInternalFail || !st.Reply.Temp {
		t.Errorf("pending request after restart: %v %v, want INTERNAL_FAIL temp", st.Status, st.Reply.LogValue())
	}
	ctx := ctxT(t, 60*time.Second)
	for {
		hs2, err := c.WaitReady(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if hs2.ServerPID != hs1.ServerPID {
			break
		}
		time.Sleep(20 * time.Millisecond) // the old connection is still being torn down
	}
	good := plain(labUser, labPass)
	b, err := c.Begin(ctx, request("PLAIN", "192.0.2.9", &good))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := b.Next(ctx); err != nil || st.Status != authclient.StatusOK {
		t.Fatalf("after reconnect: %v %v", st.Status, err)
	}
}

// TestDovecotLatency measures the AUTH PLAIN round trip to a real auth
// process: sequential, and 4 in parallel.
func TestDovecotLatency(t *testing.T) {
	d := startLab(t)
	c := newClient(t, d, authclient.Config{Logger: slog.New(slog.DiscardHandler)})
	if _, err := c.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	good := plain(labUser, labPass)
	one := func() (time.Duration, error) {
		start := time.Now()
		a, err := c.Begin(context.Background(), request("PLAIN", "192.0.2.20", &good))
		if err != nil {
			return 0, err
		}
		st, err := a.Next(ctxT(t, 10*time.Second))
		if err == nil && st.Status != authclient.StatusOK {
			err = fmt.Errorf("status %v", st.Status)
		}
		a.Cancel()
		return time.Since(start), err
	}
	const n = 300
	var seq []time.Duration
	for range n {
		dur, err := one()
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, dur)
	}
	var par []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / 4 {
				dur, err := one()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				par = append(par, dur)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	pct := func(ds []time.Duration, p int) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)*p/100]
	}
	t.Logf("AUTH PLAIN round trip, sequential: p50 %v p90 %v p99 %v (n=%d)", pct(seq, 50), pct(seq, 90), pct(seq, 99), len(seq))
	if len(par) > 0 {
		t.Logf("AUTH PLAIN round trip, 4 parallel: p50 %v p90 %v p99 %v, %.0f auths/s", pct(par, 50), pct(par, 90), pct(par, 99), float64(len(par))/wall.Seconds())
	}
}
