package hostsrules

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// expandFor runs a check of req against an empty policy and expands each
// template with the request state the check left.
func expandFor(req Request, env *Env, templates ...string) []string {
	p := Compile(Source{Name: "hosts.allow", State: FileMissing}, Source{Name: "hosts.deny", State: FileMissing})
	_, out := p.CheckExpand(context.Background(), &req, env, templates...)
	return out
}

func TestExpand(t *testing.T) {
	hosts := ParseHosts([]byte("127.0.0.1 localhost\n198.51.100.70 weird$name.example.com\n"))
	req := Request{Daemon: "imap", PID: 4242,
		Client: Endpoint{Addr: netip.MustParseAddrPort("127.0.0.1:40000")},
		Server: Endpoint{Addr: netip.MustParseAddrPort("127.0.0.1:143")}}
	got := expandFor(req, &Env{Resolver: hosts},
		"%a %A %d %p %r %R %%", "h=%h n=%n h2=%h", "%s", "%c", "%x|%", "%u")
	want := []string{
		"127.0.0.1 127.0.0.1 imap 4242 40000 143 %",
		// %h gives the address until something looked the name up.
		"h=127.0.0.1 n=localhost h2=localhost",
		"imap@127.0.0.1",
		"localhost",
		"|%",
		"unknown",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("expansions (-want +got):\n%s", diff)
	}
}

// TestExpandSanitises: a hostile reverse-DNS name never reaches a command
// line unsanitised, and the sanitised value replaces the cached one.
func TestExpandSanitises(t *testing.T) {
	// A resolver that answers exactly what a PTR record could hold.
	res := staticResolver{name: "a;rm -rf /.example.com", addr: netip.MustParseAddr("10.0.0.9")}
	req := Request{Daemon: "imap", User: "x`id`",
		Client: Endpoint{Addr: netip.MustParseAddrPort("10.0.0.9:1")}}
	got := expandFor(req, &Env{Resolver: res}, "echo %n", "%h", "%c", "%u")
	want := []string{"echo a_rm_-rf_/.example.com", "a_rm_-rf_/.example.com", "x_id_@a_rm_-rf_/.example.com", "x_id_"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("expansions (-want +got):\n%s", diff)
	}
}

// staticResolver answers one name for one address, consistently.
type staticResolver struct {
	name string
	addr netip.Addr
}

func (s staticResolver) LookupAddr(_ context.Context, a netip.Addr) (string, error) {
	if a == s.addr {
		return s.name, nil
	}
	return "", errors.New("not found")
}

func (s staticResolver) LookupHost(_ context.Context, _, name string) (string, []netip.Addr, error) {
	if strings.EqualFold(name, s.name) {
		return s.name, []netip.Addr{s.addr}, nil
	}
	return "", nil, errors.New("not found")
}

func TestExpandTooLong(t *testing.T) {
	req := Request{Daemon: strings.Repeat("d", 100), Client: Endpoint{AddrText: "10.0.0.1", Name: Unknown}}
	p := Compile(Source{Name: "hosts.allow", Data: []byte("ALL: ALL: spawn " + strings.Repeat("%d", 100) + "\n")}, Source{Name: "hosts.deny"})
	d := p.Check(context.Background(), &req, nil)
	if !errors.Is(d.Err, ErrExpansionTooLong) || d.Verdict != Denied {
		t.Errorf("got %v (%v), want denied with ErrExpansionTooLong", d.Verdict, d.Err)
	}
}

// FuzzExpand: expansion never panics, never exceeds libwrap's 8190 bytes,
// and whatever a %-sequence inserts consists of libwrap's safe characters
// only, whatever the names, users and daemon hold.
func FuzzExpand(f *testing.F) {
	f.Add("%a %n %u %d", "imap", "a;b", "x$(id).example.com")
	f.Add("%c%s%h%H%N%A%p%r%R%%%", "d\x00", "", "")
	f.Add("plain text", "pop3", "root", "host")
	f.Fuzz(func(t *testing.T, tmpl, daemon, user, name string) {
		res := staticResolver{name: name, addr: netip.MustParseAddr("10.0.0.9")}
		req := Request{Daemon: daemon, User: user, Client: Endpoint{Addr: netip.MustParseAddrPort("10.0.0.9:1")}}
		out := expandFor(req, &Env{Resolver: res}, tmpl)[0]
		if len(out) > maxExpansion {
			t.Fatalf("expansion of %d bytes", len(out))
		}
		// Expand a template made only of sequences: the result must be safe.
		seqs := expandFor(req, &Env{Resolver: res}, "%a%c%d%h%n%s%u%A%H%N")[0]
		for i := 0; i < len(seqs); i++ {
			if !okChar(seqs[i]) {
				t.Fatalf("unsafe byte %q in %q", seqs[i], seqs)
			}
		}
	})
}
