package master

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
)

// POP3, submission and ManageSieve logins through a real Dovecot 2.3:
// loginsvc's login processes ask Dovecot's auth and hand the client to
// Dovecot's pop3, submission (relaying to a test SMTP sink) and
// managesieve; Dovecot's own login services have no listener.

// startDovecotProto starts a Dovecot 2.3 serving pop3, submission and
// sieve behind loginsvc, alice's INBOX holding authMsg, its submission
// relaying to sinkPort.
func startDovecotProto(t *testing.T, sinkPort int) backend {
	t.Helper()
	peertest.Require(t, "dovecot 2.3", dovecotlab.Available())
	for _, bin := range []string{"/usr/lib/dovecot/submission", "/usr/lib/dovecot/managesieve"} {
		_, err := os.Stat(bin)
		peertest.Require(t, "dovecot-submissiond and dovecot-managesieved", err)
	}
	d := dovecotlab.Start(t, dovecotlab.Config{
		NoAccessCheck: true, NoLoginListeners: true, Protocols: []string{"pop3", "submission", "sieve"},
		Users: map[string]string{authUser: authPass},
		Extra: fmt.Sprintf("mail_log_prefix = \"%%s(%%u)<rip=%%r><%%{session}>: \"\n"+
			"hostname = mail.example.org\nsubmission_relay_host = 127.0.0.1\nsubmission_relay_port = %d\n", sinkPort),
	})
	if err := d.Deliver(authUser, authMsg); err != nil {
		t.Fatal(err)
	}
	return backend{baseDir: d.BaseDir, log: d.Log}
}

// startDovecotProto24 is startDovecotProto for a Dovecot 2.4.1 (the 2.4
// hand-off layout, auth-client protocol 1.3); under CI=true it must run.
func startDovecotProto24(t *testing.T, sinkPort int) backend {
	t.Helper()
	dovecot24lab.Require(t)
	d := dovecot24lab.Start(t, dovecot24lab.Config{
		NoLoginListeners: true, Protocols: []string{"pop3", "submission", "sieve"},
		Users: map[string]string{authUser: authPass},
		Extra: fmt.Sprintf("mail_log_prefix = \"%%{service}(%%{user})<rip=%%{remote_ip}><%%{session}>: \"\n"+
			"hostname = mail.example.org\nsubmission_relay_port = %d\n"+
			"sieve_script personal {\n  driver = file\n  path = ~/sieve\n  active_path = ~/.dovecot.sieve\n}\n", sinkPort),
	})
	if err := d.Deliver(authUser, authMsg); err != nil {
		t.Fatal(err)
	}
	return backend{baseDir: d.BaseDir(), log: d.Log}
}

// protoTLSLab is tlsLab that also returns the certificate's path (the
// Python clients' CA file).
func protoTLSLab(t *testing.T, svc, global, conf string) (*lab, string) {
	t.Helper()
	certPath, keyPath, _ := testCert(t, t.TempDir())
	return startLab(t, svc, fmt.Sprintf("ssl = yes\nssl_cert = <%s\nssl_key = <%s\n%s", certPath, keyPath, global), conf), certPath
}

// python runs a Python 3 client script with args and returns its
// output; the test fails if it fails.
func python(t *testing.T, script string, args ...string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	peertest.Require(t, "python3", err)
	cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
		}
	}()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	return string(out)
}

// popClient logs in with poplib (USER/PASS, after STLS if asked) and
// prints STAT and message 1.
const popClient = `
import poplib, ssl, sys
port, user, pw, stls, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "stls", sys.argv[5]
p = poplib.POP3("127.0.0.1", port, timeout=20)
p.getwelcome()
if stls:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    p.stls(context=ctx)
p.user(user)
print(p.pass_(pw).decode())
print("STAT", p.stat())
print(b"\n".join(p.retr(1)[1]).decode())
p.quit()
`

// smtpClient sends one message with smtplib (EHLO, STARTTLS and EHLO
// again if asked, AUTH PLAIN, MAIL/RCPT/DATA) and prints the EHLO
// answers.
const smtpClient = `
import smtplib, ssl, sys
port, user, pw, body, starttls, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "starttls", sys.argv[6]
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
code, ehlo = s.ehlo("client.example.org")
print(code, ehlo.decode().replace("\n", " | "))
if starttls:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    s.starttls(context=ctx)
    code, ehlo = s.ehlo("client.example.org")
    print("TLS", code, ehlo.decode().replace("\n", " | "))
s.login(user, pw)
s.sendmail("alice@example.org", ["bob@example.org"], "Subject: via loginsvc\r\n\r\n" + body + "\r\n")
s.quit()
print("sent")
`

// TestDovecot23POP3Login: Python's poplib logs in with USER/PASS (from
// loopback, secured) and with STLS first, then STAT and RETR read the
// message delivered to the INBOX; a wrong password gets -ERR [AUTH]
// after Dovecot's delay. Both modes.
func TestDovecot23POP3Login(t *testing.T) {
	testPOP3Login(t, startDovecotProto(t, 9))
}

// TestDovecot24POP3Login is TestDovecot23POP3Login against Dovecot 2.4.
func TestDovecot24POP3Login(t *testing.T) {
	testPOP3Login(t, startDovecotProto24(t, 9))
}

func testPOP3Login(t *testing.T, b backend) {
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			l, ca := protoTLSLab(t, "pop3-login", "base_dir = "+b.baseDir, mode.conf)
			port := strconv.Itoa(l.port)
			for _, how := range []string{"plain", "stls"} {
				out := python(t, popClient, port, authUser, authPass, how, ca)
				if !strings.Contains(out, "+OK Logged in.") || !strings.Contains(out, "STAT (1, ") || !strings.Contains(out, "hello from the hand-off") {
					t.Errorf("%s: poplib said:\n%s", how, out)
				}
				tls := map[string]string{"plain": ", secured, session=<", "stls": ", TLS, session=<"}[how]
				l.mustLog("Login: user=<"+authUser+">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=", tls)
			}
			b.waitLog(t, "pop3("+authUser+")<rip=127.0.0.1>", "Logged out")

			c := l.dial("")
			c.line()
			if r := c.cmd("CAPA"); r != "+OK" {
				t.Fatalf("CAPA: %q", r)
			}
			var capa []string
			for l := c.line(); l != "." && l != "EOF"; l = c.line() {
				capa = append(capa, l)
			}
			if got := strings.Join(capa, " "); !strings.Contains(got, " STLS USER SASL PLAIN") {
				t.Errorf("CAPA: %q", got)
			}
			if r := c.cmd("USER " + authUser); r != "+OK" {
				t.Fatalf("USER: %q", r)
			}
			start := time.Now()
			if r := c.cmd("PASS wrong"); r != "-ERR [AUTH] Authentication failed." {
				t.Errorf("wrong password: %q", r)
			}
			if d := time.Since(start); d < time.Second {
				t.Errorf("answered after %v, before Dovecot's auth_failure_delay", d)
			}
			if r := c.cmd("QUIT"); r != "+OK Logging out" {
				t.Errorf("QUIT: %q", r)
			}
			l.mustLog("Disconnected: Aborted login by logging out (auth failed, 1 attempts in ", "user=<"+authUser+">, method=PLAIN")
			if strings.Contains(l.logs.String(), authPass) {
				t.Error("the password is in loginsvc's log")
			}
		})
	}
}

// TestDovecot23SubmissionLogin: Python's smtplib says EHLO (AUTH PLAIN
// listed), AUTH PLAIN and sends a message that Dovecot's submission
// relays to the test's SMTP sink, with the EHLO domain the hand-off
// passed on in its Received line; AUTH and a whole transaction
// pipelined in one write reach the sink too. Both modes.
func TestDovecot23SubmissionLogin(t *testing.T) {
	sink := startSMTPSink(t)
	testSubmissionLogin(t, startDovecotProto(t, sink.Port), sink)
}

// TestDovecot24SubmissionLogin is TestDovecot23SubmissionLogin against
// Dovecot 2.4.
func TestDovecot24SubmissionLogin(t *testing.T) {
	sink := startSMTPSink(t)
	testSubmissionLogin(t, startDovecotProto24(t, sink.Port), sink)
}

func testSubmissionLogin(t *testing.T, b backend, sink *smtpSink) {
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			l, ca := protoTLSLab(t, "submission-login", "base_dir = "+b.baseDir, mode.conf)
			for _, how := range []string{"plain", "starttls"} {
				body := "hello sink, " + mode.name + ", " + how
				out := python(t, smtpClient, strconv.Itoa(l.port), authUser, authPass, body, how, ca)
				if !strings.Contains(out, "AUTH PLAIN") || !strings.Contains(out, "sent") ||
					how == "starttls" && (!strings.Contains(out, "STARTTLS") || !strings.Contains(out, "TLS 250 ") || strings.Contains(out[strings.Index(out, "TLS 250 "):], "STARTTLS")) {
					t.Errorf("%s: smtplib said:\n%s", how, out)
				}
				msg := sinkMessage(t, sink, body)
				if !strings.Contains(msg, "from client.example.org") {
					t.Errorf("%s: the relayed message has no Received line with the EHLO domain:\n%s", how, msg)
				}
				tls := map[string]string{"plain": ", secured, session=<", "starttls": ", TLS, session=<"}[how]
				l.mustLog("Login: user=<"+authUser+">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=", tls)
			}

			// Pipelined: AUTH and the transaction in one write.
			c := l.dial("")
			c.line()
			body := "pipelined, " + mode.name
			c.c.Write([]byte("EHLO pipe.example.org\r\nAUTH PLAIN " + plainIR(authUser, authPass) + "\r\n" +
				"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: pipelined\r\n\r\n" + body + "\r\n.\r\nQUIT\r\n"))
			var lines []string
			for l := c.line(); l != "EOF"; l = c.line() {
				lines = append(lines, l)
			}
			if got := strings.Join(lines, "\n"); !strings.Contains(got, "235 2.7.0 Logged in.") || !strings.Contains(got, "221 2.0.0 Bye") {
				t.Errorf("pipelined session:\n%s", got)
			}
			if msg := sinkMessage(t, sink, body); !strings.Contains(msg, "from pipe.example.org") {
				t.Errorf("pipelined message:\n%s", msg)
			}

			c = l.dial("")
			c.line()
			start := time.Now()
			if r := c.cmd("AUTH PLAIN " + plainIR(authUser, "wrong")); r != "535 5.7.8 Authentication failed." {
				t.Errorf("wrong password: %q", r)
			}
			if d := time.Since(start); d < time.Second {
				t.Errorf("answered after %v, before Dovecot's auth_failure_delay", d)
			}
			c.cmd("QUIT")
			b.waitLog(t, "submission("+authUser+")<rip=127.0.0.1>", "Successfully relayed message")
		})
	}
}

// sinkMessage waits up to 20 s for the sink to receive a message
// containing body.
func sinkMessage(t *testing.T, sink *smtpSink, body string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-sink.Messages:
			if strings.Contains(m, body) {
				return m
			}
		case <-deadline:
			t.Fatalf("the SMTP sink got no message with %q", body)
			return ""
		}
	}
}

// TestDovecot23ManageSieveLogin: a ManageSieve client reads the
// capabilities (SASL PLAIN), authenticates with AUTHENTICATE "PLAIN"
// and an initial response, with LISTSCRIPTS pipelined after it, then
// stores and lists a script in Dovecot's managesieve; a wrong password
// gets NO "Authentication failed.". Both modes.
func TestDovecot23ManageSieveLogin(t *testing.T) {
	testManageSieveLogin(t, startDovecotProto(t, 9))
}

// TestDovecot24ManageSieveLogin is TestDovecot23ManageSieveLogin against
// Dovecot 2.4.
func TestDovecot24ManageSieveLogin(t *testing.T) {
	testManageSieveLogin(t, startDovecotProto24(t, 9))
}

func testManageSieveLogin(t *testing.T, b backend) {
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			l, ca := protoTLSLab(t, "managesieve-login", "base_dir = "+b.baseDir, mode.conf)
			addr := "127.0.0.1:" + strconv.Itoa(l.port)
			s, caps, err := dialSieve(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !contains(caps, `"SASL" "PLAIN`) || caps[len(caps)-1] != `OK "loginsvc ready."` {
				t.Fatalf("greeting: %q", caps)
			}
			s.c.Write([]byte(`AUTHENTICATE "PLAIN" "` + plainIR(authUser, authPass) + "\"\r\nLISTSCRIPTS\r\n"))
			if r, err := s.response(); err != nil || r[len(r)-1] != `OK "Logged in."` {
				t.Fatalf("AUTHENTICATE: %q %v", r, err)
			}
			if r, err := s.response(); err != nil || !strings.HasPrefix(r[len(r)-1], "OK") {
				t.Fatalf("pipelined LISTSCRIPTS: %q %v", r, err)
			}
			script := "keep;\r\n"
			if r, err := s.cmd("PUTSCRIPT \"lab\" {" + strconv.Itoa(len(script)) + "+}\r\n" + script); err != nil || !strings.HasPrefix(r[len(r)-1], "OK") {
				t.Fatalf("PUTSCRIPT: %q %v", r, err)
			}
			if r, err := s.cmd("LISTSCRIPTS"); err != nil || !contains(r, `"lab"`) {
				t.Fatalf("LISTSCRIPTS: %q %v", r, err)
			}
			if r, err := s.cmd("LOGOUT"); err != nil || !strings.HasPrefix(r[len(r)-1], "OK") {
				t.Errorf("LOGOUT: %q %v", r, err)
			}
			l.mustLog("Login: user=<"+authUser+">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=", ", secured, session=<")
			b.waitLog(t, "sieve("+authUser+")<rip=127.0.0.1>", "Logged out") // managesieve(…) in 2.3, sieve(…) in 2.4

			// STARTTLS: the capabilities again over TLS, without STARTTLS,
			// then a login.
			s3, caps, err := dialSieve(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer s3.Close()
			if !contains(caps, `"STARTTLS"`) {
				t.Errorf("no STARTTLS in %q", caps)
			}
			if r, err := s3.cmd("STARTTLS"); err != nil || r[0] != `OK "Begin TLS negotiation now."` {
				t.Fatalf("STARTTLS: %q %v", r, err)
			}
			if err := s3.upgrade(ca); err != nil {
				t.Fatal(err)
			}
			if r, err := s3.response(); err != nil || contains(r, `"STARTTLS"`) || !contains(r, `"SASL" "PLAIN`) || r[len(r)-1] != `OK "TLS negotiation successful."` {
				t.Fatalf("after STARTTLS: %q %v", r, err)
			}
			if r, err := s3.authPlain(authUser, authPass); err != nil || r[len(r)-1] != `OK "Logged in."` {
				t.Fatalf("AUTHENTICATE over TLS: %q %v", r, err)
			}
			if r, err := s3.cmd("LOGOUT"); err != nil || !strings.HasPrefix(r[len(r)-1], "OK") {
				t.Errorf("LOGOUT over TLS: %q %v", r, err)
			}
			l.mustLog("Login: user=<"+authUser+">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=", ", TLS, session=<")

			s2, _, err := dialSieve(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if r, err := s2.authPlain(authUser, "wrong"); err != nil || r[len(r)-1] != `NO "Authentication failed."` {
				t.Errorf("wrong password: %q %v", r, err)
			}
			if strings.Contains(l.logs.String(), authPass) {
				t.Error("the password is in loginsvc's log")
			}
		})
	}
}

// plainIR is SASL PLAIN's initial response for user and pass.
func plainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
