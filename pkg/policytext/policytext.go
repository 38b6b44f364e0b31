// Package policytext makes the text a policy front end of tcpwrapd sends
// with a denial (Dovecot's auth policy msg, Postfix's REJECT text): the
// first line of the deciding rule's banners file, %-expanded for the
// request, as one clean protocol line. docs/authpolicy.md and
// docs/postfix.md describe where each front end sends it.
package policytext

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// MaxLen bounds the text Banner and Clean return, in bytes (cut at a rune
// boundary).
const MaxLen = 512

// maxBannerRead bounds how much of a banner file is read for the first
// line.
const maxBannerRead = 4096

// Banner returns the deny text from the decision's banners options: the
// first line of DIR/<daemon> of the first banners option whose file has
// a non-empty line, %-expanded for req (without name lookups: %h is the
// address, %n "unknown"), made one line by Clean; "" when there is none.
// A problem (a directory that is missing, a file that is not a regular
// file, a daemon name that is not a plain file name) is returned as an
// error beside the text, which is then that of a later option or "". It
// is safe for concurrent use.
func Banner(ctx context.Context, d hostsrules.Decision, req *hostsrules.Request) (string, error) {
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
		if msg := Clean(exp[0]); msg != "" {
			return msg, errors.Join(errs...)
		}
	}
	return "", errors.Join(errs...)
}

// expandPolicy is an empty policy, used only for CheckExpand: %-expansion
// of banner text for a request, without name lookups.
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

// Clean makes s fit for one protocol line: control characters (C0, DEL,
// C1) and invalid UTF-8 become spaces, the ends are trimmed, and at most
// MaxLen bytes are kept. It is safe for concurrent use.
func Clean(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > MaxLen {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
