package dovecot24lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Login connects to addr from the local address src ("" lets the kernel
// choose; "127.0.0.2" binds the client there, which loopback allows), logs
// in as user with password over proto ("imap": a LOGIN command; "pop3":
// USER and PASS), and logs out. It returns the server's answer to the
// login (the tagged IMAP line "a NO [ALERT] ...", or the POP3 "-ERR ..."
// / "+OK ..." line to PASS), without CR LF. It works against any Dovecot
// (2.3 or 2.4); ctx bounds the whole exchange (15 s without a deadline).
func Login(ctx context.Context, proto, src, addr, user, password string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	var dl net.Dialer
	if src != "" {
		a, err := netip.ParseAddr(src)
		if err != nil {
			return "", fmt.Errorf("login: source address: %w", err)
		}
		dl.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
	}
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("login %s from %s: %w", proto, src, err)
	}
	defer c.Close()
	dead, _ := ctx.Deadline()
	c.SetDeadline(dead)
	r := bufio.NewReader(c)
	read := func() (string, error) {
		l, err := r.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err
	}
	send := func(s string) error { _, err := fmt.Fprintf(c, "%s\r\n", s); return err }
	greeting, err := read()
	if err != nil {
		return "", fmt.Errorf("login %s from %s: greeting: %w", proto, src, err)
	}
	switch proto {
	case "imap":
		if !strings.HasPrefix(greeting, "* OK") {
			return "", fmt.Errorf("login imap: greeting %q", greeting)
		}
		if err := send(fmt.Sprintf("a LOGIN %q %q", user, password)); err != nil {
			return "", err
		}
		for {
			l, err := read()
			if err != nil {
				return "", fmt.Errorf("login imap: waiting for the LOGIN answer: %w", err)
			}
			if strings.HasPrefix(l, "a ") {
				send("b LOGOUT")
				return l, nil
			}
		}
	case "pop3":
		if !strings.HasPrefix(greeting, "+OK") {
			return "", fmt.Errorf("login pop3: greeting %q", greeting)
		}
		for _, cmd := range []string{"USER " + user, "PASS " + password} {
			if err := send(cmd); err != nil {
				return "", err
			}
			l, err := read()
			if err != nil {
				return "", fmt.Errorf("login pop3: waiting for the %s answer: %w", strings.Fields(cmd)[0], err)
			}
			if strings.HasPrefix(cmd, "PASS") || !strings.HasPrefix(l, "+OK") {
				send("QUIT")
				return l, nil
			}
		}
	}
	return "", fmt.Errorf("login: unsupported protocol %q", proto)
}
