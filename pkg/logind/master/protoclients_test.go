package master

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpSink is a minimal SMTP server on 127.0.0.1 that Dovecot's
// submission relays to (submission_relay_host): it accepts every
// transaction and hands each message's data on Messages.
type smtpSink struct {
	Port     int
	Messages chan string
	l        net.Listener
	wg       sync.WaitGroup
}

// startSMTPSink starts a sink; the test's cleanup stops it.
func startSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{Port: l.Addr().(*net.TCPAddr).Port, Messages: make(chan string, 16), l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.wg.Wait()
	})
	return s
}

// serve speaks just enough SMTP for Dovecot's relay client.
func (s *smtpSink) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) bool {
		_, err := c.Write([]byte(line + "\r\n"))
		return err == nil
	}
	if !say("220 sink.test ESMTP") {
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimRight(line, "\r\n"))
		verb, _, _ := strings.Cut(cmd, " ")
		switch verb {
		case "EHLO":
			say("250-sink.test\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES")
		case "HELO", "MAIL", "RCPT", "RSET", "NOOP", "XCLIENT":
			say("250 2.0.0 OK")
		case "DATA":
			say("354 go ahead")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				msg.WriteString(strings.TrimPrefix(l, "."))
			}
			s.Messages <- msg.String()
			say("250 2.0.0 queued")
		case "QUIT":
			say("221 2.0.0 bye")
			return
		default:
			say("502 5.5.1 unknown")
		}
	}
}

// sieveSession is a hand-written ManageSieve client (RFC 5804; there is
// no stock Python one).
type sieveSession struct {
	c net.Conn
	r *bufio.Reader
}

// dialSieve connects and reads the greeting's capabilities, up to its
// OK line.
func dialSieve(addr string) (*sieveSession, []string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s := &sieveSession{c: c, r: bufio.NewReader(c)}
	lines, err := s.response()
	if err != nil {
		c.Close()
		return nil, lines, err
	}
	return s, lines, nil
}

// response reads lines up to and including the one starting with OK,
// NO or BYE.
func (s *sieveSession) response() ([]string, error) {
	var lines []string
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return lines, fmt.Errorf("after %q: %w", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if strings.HasPrefix(l, "OK") || strings.HasPrefix(l, "NO") || strings.HasPrefix(l, "BYE") {
			return lines, nil
		}
	}
}

// cmd sends line and reads the response.
func (s *sieveSession) cmd(line string) ([]string, error) {
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		return nil, err
	}
	return s.response()
}

// authPlain is AUTHENTICATE "PLAIN" with the initial response.
func (s *sieveSession) authPlain(user, pass string) ([]string, error) {
	return s.cmd(`AUTHENTICATE "PLAIN" "` + plainIR(user, pass) + `"`)
}

// upgrade runs the client side of STARTTLS, trusting the certificate in
// the file ca.
func (s *sieveSession) upgrade(ca string) error {
	pem, err := os.ReadFile(ca)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := tls.Client(s.c, tlsClientConfig(pool))
	if err := tc.Handshake(); err != nil {
		return err
	}
	s.c, s.r = tc, bufio.NewReader(tc)
	return nil
}

func (s *sieveSession) Close() error { return s.c.Close() }
