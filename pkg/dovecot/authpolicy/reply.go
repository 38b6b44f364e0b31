package authpolicy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// Reply is the answer to an allow request, as Dovecot reads it: Status < 0
// rejects the login (Msg reaches the client), 0 continues, N > 0 makes
// Dovecot wait N seconds before it asks the passdb.
type Reply struct {
	Status int    `json:"status"`
	Msg    string `json:"msg,omitempty"`
}

// AppendJSON appends the reply's JSON body (`{"status":N}` or
// `{"status":N,"msg":"..."}`) to b.
func (r Reply) AppendJSON(b []byte) []byte {
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	if r.Msg != "" {
		b = append(b, `,"msg":`...)
		m, _ := json.Marshal(r.Msg) // a string always marshals
		b = append(b, m...)
	}
	return append(b, '}')
}

// DefaultDenyMessage is the msg of a denial whose rule has no banners
// option (or whose banner file is missing or empty) when
// Server.DenyMessage is empty.
const DefaultDenyMessage = "Access denied."

// StatusVariable is the variable of the tarpit extension: a granting rule
// with the option `setenv TCPWRAPD_POLICY_STATUS N` (N a whole number of
// seconds, 1 or more) is answered {"status":N}. See StatusOption.
const StatusVariable = "TCPWRAPD_POLICY_STATUS"

// DefaultMaxStatus caps a tarpit status when Server.MaxStatus is zero.
const DefaultMaxStatus = 30

// StatusOption reports whether opt is the tarpit extension, an option
// `setenv TCPWRAPD_POLICY_STATUS N`, and returns N. It is an ordinary
// libwrap setenv option, so the same hosts.allow stays valid for tcpd,
// tcpdchk and every other libwrap program (which merely set the
// variable). N must be a decimal integer from 1 to 2147483647; any other
// value gives ok=true and an error, and the rule's verdict stands
// without a tarpit. lint can call it on every option of every rule
// (hostsrules.ParseOptions) to flag bad values; check-host can call
// Status on a Decision to show the reply.
func StatusOption(opt hostsrules.Option) (n int, ok bool, err error) {
	if opt.Name != "setenv" {
		return 0, false, nil
	}
	v := opt.Expanded
	if v == "" {
		v = opt.Value
	}
	f := strings.Fields(v)
	if len(f) == 0 || f[0] != StatusVariable {
		return 0, false, nil
	}
	if len(f) != 2 {
		return 0, true, fmt.Errorf("setenv %s: want one whole number of seconds, got %q", StatusVariable, strings.Join(f[1:], " "))
	}
	n64, err := strconv.ParseInt(f[1], 10, 32)
	if err != nil || n64 < 1 {
		return 0, true, fmt.Errorf("setenv %s: want a whole number of seconds from 1, got %q", StatusVariable, f[1])
	}
	return int(n64), true, nil
}

// Status returns the status the policy front end answers for d, before
// any cap: -1 when d denies; for a grant, the N of the last valid tarpit
// option among d.Options (see StatusOption), else 0. err reports an
// invalid tarpit option (the status is then that of the options before
// it, or 0). It is safe for concurrent use.
func Status(d hostsrules.Decision) (status int, err error) {
	if d.Verdict != hostsrules.Granted {
		return -1, nil
	}
	for _, o := range d.Options {
		n, ok, oerr := StatusOption(o)
		switch {
		case oerr != nil:
			err = oerr
		case ok:
			status = n
		}
	}
	return status, err
}

// maxBannerRead bounds how much of a banner file is read for the first
// line; maxMsg bounds the msg sent (in bytes, cut at a rune boundary).
const (
	maxBannerRead = 4096
	maxMsg        = 512
)

// bannerMessage returns the deny message from the decision's banners
// options: the first line of DIR/<daemon>, %-expanded for req, with
// control characters made spaces, trimmed and bounded; "" when there is
// none. A problem (a directory that is missing, a file that is not a
// regular file) is returned as an error beside "".
func bannerMessage(ctx context.Context, d hostsrules.Decision, req *hostsrules.Request) (string, error) {
	var errs []error
	for _, o := range d.Options {
		if o.Name != "banners" {
			continue
		}
		line, err := firstLine(o.Value, req.Daemon)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if line == "" {
			continue
		}
		_, exp := expandPolicy.CheckExpand(ctx, req, nil, line)
		if msg := cleanMessage(exp[0]); msg != "" {
			return msg, errors.Join(errs...)
		}
	}
	return "", errors.Join(errs...)
}

// expandPolicy is an empty policy, used only for CheckExpand: %-expansion
// of banner text for a request, without name lookups (%h is the address,
// %n "unknown").
var expandPolicy = hostsrules.Compile(hostsrules.Source{Name: "-", State: hostsrules.FileMissing}, hostsrules.Source{Name: "-", State: hostsrules.FileMissing})

// firstLine reads the first line of dir/daemon, as the banners option
// names it; a missing file is "" without error (as for libwrap).
func firstLine(dir, daemon string) (string, error) {
	if err := wrapopts.CheckPlainName(daemon); err != nil {
		return "", err
	}
	path := dir + "/" + daemon
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return "", fmt.Errorf("banners: %w", serr)
			}
			return "", nil
		}
		return "", fmt.Errorf("banners: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("banners: %s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxBannerRead))
	if err != nil {
		return "", fmt.Errorf("banners: %w", err)
	}
	for len(b) > 0 && b[0] == 0 { // libwrap copies leading NULs; a message has no use for them
		b = b[1:]
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return line, nil
}

// cleanMessage makes s fit for one protocol line: control characters and
// invalid UTF-8 become spaces, the ends are trimmed, and at most maxMsg
// bytes are kept.
func cleanMessage(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > maxMsg {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
