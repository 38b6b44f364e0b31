package smtpdpolicy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/postfixlab"
)

// The rules every real-Postfix test serves: 127.0.0.2 may not send mail
// (with a banner); 127.0.0.3 hits a rule with an option error (a rules
// error: no verdict); everyone else may.
const (
	labDeny   = "smtpd: 127.0.0.2 : banners %s\nsmtpd: 127.0.0.3 : nosuchoption\n"
	labBanner = "No mail from %a here"
	labText   = "No mail from 127.0.0.2 here"
)

// startLabPolicy serves the lab rules with s on ln and returns the log.
func startLabPolicy(t *testing.T, s *Server, ln net.Listener) *logBuffer {
	t.Helper()
	banners := t.TempDir()
	if err := os.WriteFile(filepath.Join(banners, "smtpd"), []byte(labBanner+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s.Check, s.Log = compile("", fmt.Sprintf(labDeny, banners)), testLogger(logs)
	serveOn(t, s, ln)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("policy server log:\n%s", logs)
		}
	})
	return logs
}

// smtp is a raw SMTP client dialogue from a chosen source address.
type smtp struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialSMTP(t *testing.T, src, addr string) *smtp {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &smtp{t: t, c: c, r: bufio.NewReader(c)}
}

// reply reads one (possibly multi-line) reply and returns its last line,
// or the read error (io.EOF: the server closed the connection).
func (s *smtp) reply() (string, error) {
	s.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return line, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line, nil
		}
	}
}

// cmd sends a command and returns the reply's last line.
func (s *smtp) cmd(line string) (string, error) {
	s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(s.c, line+"\r\n"); err != nil {
		return "", err
	}
	return s.reply()
}

// expect sends line (none if "") and checks that the reply starts with
// want.
func (s *smtp) expect(line, want string) string {
	s.t.Helper()
	var got string
	var err error
	if line == "" {
		got, err = s.reply()
	} else {
		got, err = s.cmd(line)
	}
	if err != nil || !strings.HasPrefix(got, want) {
		s.t.Fatalf("%q: got %q, %v; want %q...", line, got, err, want)
	}
	return got
}

// start reads the greeting and opens a transaction: EHLO, MAIL FROM.
func (s *smtp) start() {
	s.t.Helper()
	s.expect("", "220 ")
	s.expect("EHLO client.test", "250")
	s.expect("MAIL FROM:<a@client.test>", "250")
}

// TestPostfix: a real Postfix 3.7 (a private instance on loopback) asks
// the front end over loopback TCP with the default smtpd_delay_reject =
// yes: the denied client is rejected at RCPT TO with the banner text,
// the allowed one gets its mail accepted, and a request tcpwrapd cannot
// answer (a rules error) temp-fails.
func TestPostfix(t *testing.T) {
	postfixlab.SkipIfUnavailable(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := startLabPolicy(t, &Server{}, ln)
	pf := postfixlab.Start(t, postfixlab.Config{PolicyService: "inet:" + ln.Addr().String()})
	dump(t, pf)

	t.Run("denied at RCPT TO", func(t *testing.T) {
		s := dialSMTP(t, "127.0.0.2", pf.Addr)
		s.start()
		got := s.expect("RCPT TO:<b@"+postfixlab.Domain+">", "554 5.7.1 ")
		if want := "Client host rejected: " + labText; !strings.HasSuffix(got, want) {
			t.Errorf("RCPT TO: %q, want ...%q", got, want)
		}
		s.expect("QUIT", "221")
		waitLog(t, pf, "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1")
	})
	t.Run("allowed", func(t *testing.T) {
		s := dialSMTP(t, "127.0.0.1", pf.Addr)
		s.start()
		s.expect("RCPT TO:<b@"+postfixlab.Domain+">", "250")
		s.expect("DATA", "354")
		s.expect("Subject: test\r\n\r\nhello\r\n.", "250 2.0.0 Ok: queued")
		s.expect("QUIT", "221")
	})
	t.Run("no verdict temp-fails", func(t *testing.T) {
		s := dialSMTP(t, "127.0.0.3", pf.Addr)
		s.start()
		s.expect("RCPT TO:<b@"+postfixlab.Domain+">", "451 4.3.5 ")
		s.expect("QUIT", "221")
		if !strings.Contains(logs.String(), "rules error") {
			t.Errorf("policy log has no rules error")
		}
	})
}

// TestPostfix521: with RejectCode "521 5.7.1" Postfix sends the 521
// reply and closes the connection.
func TestPostfix521(t *testing.T) {
	postfixlab.SkipIfUnavailable(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startLabPolicy(t, &Server{RejectCode: "521 5.7.1"}, ln)
	pf := postfixlab.Start(t, postfixlab.Config{PolicyService: "inet:" + ln.Addr().String()})
	dump(t, pf)
	s := dialSMTP(t, "127.0.0.2", pf.Addr)
	s.start()
	got := s.expect("RCPT TO:<b@"+postfixlab.Domain+">", "521 5.7.1 ")
	if want := "Client host rejected: " + labText; !strings.HasSuffix(got, want) {
		t.Errorf("RCPT TO: %q, want ...%q", got, want)
	}
	if got, err := s.cmd("NOOP"); err == nil {
		t.Errorf("connection still open after 521: NOOP answered %q", got)
	}
}

// TestPostfixUnixChroot: the policy socket in the queue directory's
// private/ (owned by postfix), asked by a chrooted smtpd as
// unix:private/tcpwrapd, with smtpd_delay_reject = no: the verdict comes
// when the client connects, in place of the greeting.
func TestPostfixUnixChroot(t *testing.T) {
	postfixlab.SkipIfUnavailable(t)
	pf := postfixlab.Start(t, postfixlab.Config{PolicyService: "unix:private/tcpwrapd", Chroot: true, NoDelayReject: true})
	dump(t, pf)
	path := filepath.Join(pf.QueueDir, "private", "tcpwrapd")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, err := dovecotlab.LookupIDs("postfix")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	startLabPolicy(t, &Server{}, ln)

	// The reject replaces the 220 greeting; every command but QUIT is
	// then refused.
	s := dialSMTP(t, "127.0.0.2", pf.Addr)
	s.expect("", "554 5.7.1 <unknown[127.0.0.2]>: Client host rejected: "+labText)
	for _, c := range []string{"EHLO client.test", "MAIL FROM:<a@client.test>", "RCPT TO:<b@" + postfixlab.Domain + ">"} {
		s.expect(c, "503 5.7.0 Error: access denied for unknown[127.0.0.2]")
	}
	s.expect("QUIT", "221")
	waitLog(t, pf, "Client host rejected: "+labText)

	a := dialSMTP(t, "127.0.0.1", pf.Addr)
	a.start()
	a.expect("RCPT TO:<b@"+postfixlab.Domain+">", "250")
	a.expect("QUIT", "221")
}

func waitLog(t *testing.T, pf *postfixlab.Postfix, substr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pf.WaitLog(ctx, substr); err != nil {
		t.Error(err)
	}
}

// dump logs Postfix's maillog when the test failed.
func dump(t *testing.T, pf *postfixlab.Postfix) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("maillog:\n%s", pf.Log())
		}
	})
}
