package wrapopts

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// okByte is libwrap's ok_chars set: what may appear in an expansion.
func okByte(c byte) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return true
	}
	return strings.IndexByte("!@%-_=+:,./", c) >= 0
}

// unsafeBytes counts the bytes of s outside ok_chars.
func unsafeBytes(s string) map[byte]int {
	m := map[byte]int{}
	for i := 0; i < len(s); i++ {
		if !okByte(s[i]) {
			m[s[i]]++
		}
	}
	return m
}

// literal returns the text of a %-template outside its %-sequences.
func literal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+1 < len(s) {
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fuzzRequest is a request from 127.0.0.9, whose reverse name host passes
// the double-reverse check, by user for daemon.
func fuzzRequest(host, user, daemon string) (*hostsrules.Request, *hostsrules.Env) {
	req := &hostsrules.Request{Daemon: daemon, User: user,
		Client: hostsrules.Endpoint{Addr: netip.MustParseAddrPort("127.0.0.9:40000")},
		Server: hostsrules.Endpoint{Addr: netip.MustParseAddrPort("127.0.0.1:143")}}
	return req, &hostsrules.Env{Resolver: staticResolver{name: host, addr: netip.MustParseAddr("127.0.0.9")}}
}

var seedNames = []string{"a;rm -rf /.example.com", "$(reboot)", "`id`", "x\ny", "ok.example.com", "", "%n%u", "[::1]"}

// FuzzExpand: whatever the host name, user and daemon name, every byte
// outside libwrap's ok_chars in an expansion result comes from the
// template's literal text, never from the request: nothing a client
// controls reaches a shell unsanitised.
func FuzzExpand(f *testing.F) {
	for _, n := range seedNames {
		f.Add("spawn echo %n %h %c %u %d %s %a %A %N %H %p %r %R %% %x %", n, n, n)
	}
	f.Add("%c", "host", "bob;x", "imap")
	p := hostsrules.Compile(hostsrules.Source{Name: "hosts.allow", State: hostsrules.FileMissing},
		hostsrules.Source{Name: "hosts.deny", State: hostsrules.FileMissing})
	f.Fuzz(func(t *testing.T, tmpl, host, user, daemon string) {
		if len(tmpl) > 30 { // keeps results under the 8190-byte limit
			return
		}
		req, env := fuzzRequest(host, user, daemon)
		_, out := p.CheckExpand(context.Background(), req, env, tmpl)
		want := unsafeBytes(literal(tmpl))
		if diff := cmp.Diff(want, unsafeBytes(out[0])); diff != "" {
			t.Fatalf("Expand(%q) = %q with host %q user %q daemon %q: unsafe bytes (-literal +result):\n%s",
				tmpl, out[0], host, user, daemon, diff)
		}
	})
}

// bannerReference is what Banner must produce for content without "%":
// leading NULs, then each line with its LF turned into CRLF unless the
// line has an unbalanced "[" before it.
func bannerReference(content []byte) []byte {
	var out []byte
	i := 0
	for i < len(content) && content[i] == 0 {
		out = append(out, 0)
		i++
	}
	for _, line := range splitLinesKeep(content[i:]) {
		if before, _, ok := hostsrules.SplitAt(line, '\n'); ok {
			line = before + "\r\n"
		}
		out = append(out, line...)
	}
	return out
}

// FuzzBanner: Banner never fails on any file content (but a too-long
// expansion), copies content without %-sequences exactly (with CRLF line
// ends as bannerReference), and, as FuzzExpand, lets no byte outside
// ok_chars through from the request.
func FuzzBanner(f *testing.F) {
	f.Add([]byte("Hello %a from %d\nline2 ;$(x)\n"), "a;b.example.com")
	f.Add([]byte("\x00\x00220 %n [unbalanced\nnext\n"), "`x`")
	f.Add([]byte("no newline %u"), "h")
	f.Add([]byte("[a]\n[b\nc]\n%"), "h")
	dir := f.TempDir()
	pol := hostsrules.Compile(hostsrules.Source{Name: "hosts.allow", Data: []byte("ALL: ALL: banners " + dir + "\n")},
		hostsrules.Source{Name: "hosts.deny", State: hostsrules.FileMissing})
	f.Fuzz(func(t *testing.T, content []byte, host string) {
		if len(content) > 4096 {
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "imap"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		req, env := fuzzRequest(host, "u;ser", "imap")
		var got []byte
		var berr error
		env.Effects = effectsFunc(func(x *hostsrules.Expander) { got, berr = Banner(dir, x) })
		pol.Check(context.Background(), req, env)
		if errors.Is(berr, hostsrules.ErrExpansionTooLong) {
			return
		}
		if berr != nil {
			t.Fatalf("Banner: %v", berr)
		}
		ref := bannerReference(content)
		if !bytes.Contains(content, []byte("%")) {
			if !bytes.Equal(got, ref) {
				t.Fatalf("Banner(%q) = %q, want %q", content, got, ref)
			}
			return
		}
		// Unsafe bytes: those of the reference's literal text only.
		if diff := cmp.Diff(unsafeBytes(literal(string(ref))), unsafeBytes(string(got))); diff != "" {
			t.Fatalf("Banner(%q) = %q with host %q: unsafe bytes (-literal +result):\n%s", content, got, host, diff)
		}
	})
}

// effectsFunc calls fn with the Expander of the banners option.
type effectsFunc func(x *hostsrules.Expander)

func (fn effectsFunc) Apply(ctx context.Context, o hostsrules.Option, x *hostsrules.Expander) (bool, error) {
	if o.Name == "banners" {
		fn(x)
	}
	return true, nil
}
