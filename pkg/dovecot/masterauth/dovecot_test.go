package masterauth_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/masterauth"
)

// The full login → post-login hand-off against a real Dovecot 2.3: a real
// IMAP client connection, auth through the lab's auth service, the
// hand-off to the lab's post-login imap service, and the client then
// talking to that imap process.

const (
	labUser = "alice"
	labPass = "s3cret pass!"
)

// handoffLab is a Dovecot to hand off to: the layout it reads, its auth
// socket and post-login imap socket.
type handoffLab struct {
	layout     masterauth.Layout
	authSocket string
	imapSocket string
	log        func() string
	waitLog    func(ctx context.Context, substr string) (string, error)
}

func startLab23(t *testing.T) handoffLab {
	t.Helper()
	d := dovecotlab.Start(t, dovecotlab.Config{
		NoAccessCheck: true,
		Protocols:     []string{"imap"},
		Users:         map[string]string{labUser: labPass},
	})
	// The userdb is static (uid dovecot, home Dir/home/%u): give alice a
	// Maildir with one message.
	makeMaildir(t, filepath.Join(d.Dir, "home", labUser), dovecotlab.InternalUser)
	return handoffLab{
		layout:     masterauth.Dovecot23,
		authSocket: filepath.Join(d.LoginDir(), "login"),
		imapSocket: filepath.Join(d.LoginDir(), "imap"),
		log:        d.Log,
		waitLog: func(ctx context.Context, substr string) (string, error) {
			return d.WaitLog(ctx, 0, substr)
		},
	}
}

func makeMaildir(t *testing.T, home, owner string) {
	t.Helper()
	u, err := user.Lookup(owner)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	msg := "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: hand-off\r\n\r\nhello\r\n"
	paths := []string{home, home + "/Maildir", home + "/Maildir/cur", home + "/Maildir/new", home + "/Maildir/tmp"}
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	f := home + "/Maildir/new/1700000000.M1P1.lab"
	if err := os.WriteFile(f, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(paths, f) {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// loginPair returns the server side of a real TCP connection on loopback
// (what a login process accepted) and the client side.
func loginPair(t *testing.T) (server *net.TCPConn, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*net.TCPConn), client
}

// readUntilTagged reads lines until one starts with tag+" ".
func readUntilTagged(t *testing.T, br *bufio.Reader, c net.Conn, tag string) []string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading until %q: %v; got %q", tag, err, lines)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if strings.HasPrefix(line, tag+" ") {
			return lines
		}
	}
}

var cpid uint32 = 4_100_000

// authOK authenticates alice through the lab's auth service with the
// addresses of sc and returns the finished request.
func authOK(t *testing.T, ctx context.Context, lab handoffLab, sc *net.TCPConn, session string) (*authclient.Auth, *authclient.Client) {
	t.Helper()
	cpid++
	c := authclient.New(authclient.Config{Path: lab.authSocket, PID: cpid, ReconnectInterval: 100 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	resp := authclient.Secret(base64.StdEncoding.EncodeToString([]byte("\x00" + labUser + "\x00" + labPass)))
	a, err := c.Begin(ctx, &authclient.Request{
		Mech: "PLAIN", Service: "imap", Session: session, Secured: true, FinalRespOK: true,
		LocalAddr:       sc.LocalAddr().(*net.TCPAddr).AddrPort(),
		RemoteAddr:      sc.RemoteAddr().(*net.TCPAddr).AddrPort(),
		InitialResponse: resp, HasInitialResponse: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.Next(ctx)
	if err != nil || st.Status != authclient.StatusOK {
		t.Fatalf("auth: %v %v\n%s", st.Status, err, lab.log())
	}
	return a, c
}

func handoffRequest(a *authclient.Auth, sc *net.TCPConn, data []byte) *masterauth.Request {
	return &masterauth.Request{
		AuthPID: a.ServerPID(), AuthID: a.ID(), ClientPID: a.ClientPID(), Cookie: a.Cookie(),
		LocalAddr:  sc.LocalAddr().(*net.TCPAddr).AddrPort(),
		RemoteAddr: sc.RemoteAddr().(*net.TCPAddr).AddrPort(),
		Flags:      masterauth.FlagConnSecured, // loopback counts as secured
		Data:       data,
	}
}

func TestDovecotHandoff(t *testing.T) {
	testHandoff(t, startLab23(t))
}

func testHandoff(t *testing.T, lab handoffLab) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sc, cc := loginPair(t)

	// The client pipelines SELECT behind LOGIN in one write, as the
	// issue's test asks.
	if _, err := io.WriteString(cc, "a LOGIN "+labUser+" \""+labPass+"\"\r\nb SELECT INBOX\r\n"); err != nil {
		t.Fatal(err)
	}
	// The login process reads what arrived; everything after the LOGIN
	// line is buffered input it must forward.
	_ = sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var in []byte
	buf := make([]byte, 1024)
	for !strings.Contains(string(in), "SELECT INBOX\r\n") {
		n, err := sc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, buf[:n]...)
	}
	_, buffered, _ := strings.Cut(string(in), "\r\n")

	const session = "handoff-session-1"
	a, _ := authOK(t, ctx, lab, sc, session)
	start := time.Now()
	rep, err := masterauth.Send(ctx, lab.imapSocket, lab.layout,
		handoffRequest(a, sc, masterauth.Data(session, masterauth.IMAPPrefix(false, "a"), []byte(buffered))),
		sc, masterauth.Options{})
	if err != nil {
		t.Fatalf("hand-off: %v\n%s", err, lab.log())
	}
	t.Logf("hand-off reply after %v: %+v", time.Since(start), rep)
	if rep.MailPID <= 0 {
		t.Errorf("mail pid %d", rep.MailPID)
	}
	sc.Close() // the login process's copy; imap has its own

	br := bufio.NewReader(cc)
	login := readUntilTagged(t, br, cc, "a")
	if last := login[len(login)-1]; !strings.HasPrefix(last, "a OK [CAPABILITY IMAP4rev1") || !strings.HasSuffix(last, "Logged in") {
		t.Errorf("LOGIN reply from post-login imap = %q", login)
	}
	sel := readUntilTagged(t, br, cc, "b")
	if !contains(sel, "* 1 EXISTS") || !strings.HasPrefix(sel[len(sel)-1], "b OK") {
		t.Errorf("SELECT INBOX reply = %q", sel)
	}
	if _, err := io.WriteString(cc, "c FETCH 1 BODY[HEADER.FIELDS (SUBJECT)]\r\nd LOGOUT\r\n"); err != nil {
		t.Fatal(err)
	}
	fetch := readUntilTagged(t, br, cc, "c")
	if !contains(fetch, "Subject: hand-off") {
		t.Errorf("FETCH = %q", fetch)
	}
	readUntilTagged(t, br, cc, "d")
	// imap logs under the session id the hand-off carried.
	if _, err := lab.waitLog(ctx, "<"+session+">: Info: Disconnected: Logged out"); err != nil {
		t.Errorf("Dovecot's log lacks imap(%s)<…><%s>: Info: Disconnected: Logged out: %v\n%s", labUser, session, err, lab.log())
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// TestDovecotHandoffErrors: what a real post-login service does with bad
// requests, as typed errors.
func TestDovecotHandoffErrors(t *testing.T) {
	lab := startLab23(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("wrong cookie", func(t *testing.T) {
		sc, _ := loginPair(t)
		a, _ := authOK(t, ctx, lab, sc, "bad-cookie")
		req := handoffRequest(a, sc, masterauth.Data("bad-cookie", masterauth.IMAPPrefix(false, "a"), nil))
		req.Cookie[0] ^= 0xff
		_, err := masterauth.Send(ctx, lab.imapSocket, lab.layout, req, sc, masterauth.Options{})
		var he *masterauth.Error
		if !errors.As(err, &he) || he.Op != "reply" || !errors.Is(err, masterauth.ErrInternal) {
			t.Fatalf("Send with a wrong cookie = %v, want a reply error wrapping ErrInternal", err)
		}
		a.Cancel() // as Dovecot's login does after a failed hand-off
	})
	t.Run("auth request unknown", func(t *testing.T) {
		sc, _ := loginPair(t)
		a, _ := authOK(t, ctx, lab, sc, "cancelled")
		a.Cancel() // auth forgets it: the post-login lookup fails
		// CANCEL is asynchronous; an OK request that auth dropped is
		// refused. Send until the lookup sees it (normally the first).
		req := handoffRequest(a, sc, masterauth.Data("cancelled", masterauth.IMAPPrefix(false, "a"), nil))
		_, err := masterauth.Send(ctx, lab.imapSocket, lab.layout, req, sc, masterauth.Options{})
		if !errors.Is(err, masterauth.ErrInternal) {
			t.Fatalf("Send for a cancelled auth request = %v, want ErrInternal", err)
		}
	})
	t.Run("no such service", func(t *testing.T) {
		sc, _ := loginPair(t)
		req := &masterauth.Request{AuthPID: 1, ClientPID: 1}
		_, err := masterauth.Send(ctx, filepath.Join(filepath.Dir(lab.imapSocket), "nosuch"), lab.layout, req, sc, masterauth.Options{})
		var he *masterauth.Error
		if !errors.As(err, &he) || he.Op != "connect" {
			t.Fatalf("Send to a missing socket = %v, want a connect error", err)
		}
	})
	t.Run("wrong layout", func(t *testing.T) {
		// A 2.4-layout request to 2.3's imap: the struct is 8 bytes
		// longer; 2.3 reads 96 bytes and finds garbage.
		sc, _ := loginPair(t)
		a, _ := authOK(t, ctx, lab, sc, "layout")
		req := handoffRequest(a, sc, masterauth.Data("layout", masterauth.IMAPPrefix(false, "a"), nil))
		_, err := masterauth.Send(ctx, lab.imapSocket, masterauth.Dovecot24, req, sc, masterauth.Options{})
		if err == nil {
			t.Fatalf("a 2.4-layout request to Dovecot 2.3 succeeded")
		}
		t.Logf("2.4 layout to 2.3: %v", err)
		a.Cancel()
	})
}

func ExampleIMAPPrefix() {
	fmt.Printf("%q\n", masterauth.Data("sess", masterauth.IMAPPrefix(false, "a1"), []byte("b1 NOOP\r\n")))
	// Output: "sess\x000a1\x00b1 NOOP\r\n"
}
