package hostsrules

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
)

// maxExpansion is the longest %-expansion result libwrap accepts: the
// option buffer is BUFSIZ (8192) bytes and percent_x stops at 8190.
const maxExpansion = 8190

// ErrExpansionTooLong reports a %-expansion result longer than 8190 bytes.
// libwrap logs "percent_x: expansion too long", sleeps and exits; a check
// that hits it is denied and tcpdmatch-style tools print no verdict.
var ErrExpansionTooLong = errors.New("percent_x: expansion too long")

// Expander expands %-sequences (hosts_access(5) "% EXPANSIONS") for one
// request, exactly as libwrap's percent_x: every expanded value has each
// character outside [A-Za-z0-9!@%-_=+:,./] replaced by "_", and that
// sanitised value replaces the request's cached field, so later matching
// and expansions see it too. An Expander is only valid during the Check
// (or Effects.Apply) that handed it out and is not safe for concurrent use.
type Expander struct {
	c *check
}

// Expand returns s with every %-sequence expanded: %a %A client
// and server address, %c client info, %d daemon, %h %H host info, %n %N
// host names (these start a lookup), %p pid, %r %R ports, %s server info,
// %u user (may start an ident lookup), %% a percent sign. An unknown %x
// expands to nothing (with a warning through Env.Logf) and a trailing "%"
// stays. It fails with ErrExpansionTooLong when the result would exceed
// 8190 bytes.
func (x *Expander) Expand(s string) (string, error) {
	c := x.c
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 >= len(s) {
			b.WriteByte(s[i])
		} else {
			i++
			b.WriteString(c.expandLetter(s[i]))
		}
		if b.Len() >= maxExpansion+1 {
			r := b.String()
			if len(r) > 30 {
				r = r[:30]
			}
			c.logf("percent_x: expansion too long: %s...", r)
			return "", ErrExpansionTooLong
		}
	}
	return b.String(), nil
}

// sanitize replaces every character outside libwrap's ok_chars with "_".
func sanitize(s string) string {
	bad := false
	for i := 0; i < len(s); i++ {
		if !okChar(s[i]) {
			bad = true
			break
		}
	}
	if !bad {
		return s
	}
	b := []byte(s)
	for i, ch := range b {
		if !okChar(ch) {
			b[i] = '_'
		}
	}
	return string(b)
}

func okChar(c byte) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return true
	}
	return strings.IndexByte("!@%-_=+:,./", c) >= 0
}

// expandLetter expands one %-letter, sanitising the cached field in place.
func (c *check) expandLetter(ch byte) string {
	switch ch {
	case 'a':
		return c.sanitizeAddr(&c.client)
	case 'A':
		return c.sanitizeAddr(&c.server)
	case 'n':
		return c.sanitizeName(&c.client)
	case 'N':
		return c.sanitizeName(&c.server)
	case 'h':
		return c.sanitizeInfo(&c.client)
	case 'H':
		return c.sanitizeInfo(&c.server)
	case 'c':
		if !c.userDone && c.req.User != "" {
			c.userName() // a given user counts as looked up; no ident
		}
		u := c.user
		if c.userDone && u != "" && u != Unknown {
			return sanitize(u + "@" + c.hostInfo(&c.client))
		}
		return c.sanitizeInfo(&c.client)
	case 'd':
		c.daemon = sanitize(c.daemon)
		return c.daemon
	case 'p':
		if c.req.PID != 0 {
			return strconv.Itoa(c.req.PID)
		}
		return strconv.Itoa(os.Getpid())
	case 'r':
		return strconv.Itoa(int(c.req.Client.Addr.Port()))
	case 'R':
		return strconv.Itoa(int(c.req.Server.Addr.Port()))
	case 's':
		h := c.hostInfo(&c.server)
		if !ctext.EqualFold(h, Unknown) {
			return sanitize(c.daemon + "@" + h)
		}
		c.daemon = sanitize(c.daemon)
		return c.daemon
	case 'u':
		c.userName()
		c.user = sanitize(c.user)
		return c.user
	case '%':
		return "%"
	}
	c.logf("unrecognized %%%c", ch)
	return ""
}

func (c *check) sanitizeAddr(h *host) string {
	h.addr = sanitize(c.hostAddr(h))
	return h.addr
}

func (c *check) sanitizeName(h *host) string {
	h.name = sanitize(c.hostName(h))
	return h.name
}

func (c *check) sanitizeInfo(h *host) string {
	if h.nameDone && knownName(h.name) {
		h.name = sanitize(h.name)
		return h.name
	}
	return c.sanitizeAddr(h)
}

// sprintf is fmt.Sprintf, named to keep explain notes short.
func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Daemon returns the request's daemon name as currently cached (raw until
// a %d expansion sanitises it), as libwrap's eval_daemon.
func (x *Expander) Daemon() string { return x.c.daemon }
