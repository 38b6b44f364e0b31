package hostsrules

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPortPattern(t *testing.T) {
	for pat, want := range map[string]bool{"22": true, "+22": true, "022": true, "-0": true, "65535": true,
		"65536": false, "-1": false, "22x": false, "": false, "sshd": false} {
		if _, ok := portPattern(pat); ok != want {
			t.Errorf("portPattern(%q) ok = %v, want %v", pat, ok, want)
		}
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		field string
		want  []Option
		err   string
	}{
		{" allow\n", []Option{{Name: "allow"}}, ""},
		{" spawn=cmd\n", []Option{{Name: "spawn", Value: "cmd"}}, ""},
		{" spawn = cmd a\\:b : allow\n", []Option{{Name: "spawn", Value: "cmd a:b"}, {Name: "allow"}}, ""},
		{" spawn == x\n", []Option{{Name: "spawn", Value: "= x"}}, ""},
		{"\n", nil, "missing option name"},
		{" allow:\n", nil, `option "allow" must be at end`},
		{" frobnicate\n", nil, `bad option name: "frobnicate"`},
		{" keepalive 5\n", nil, `option "keepalive" requires no value`},
		{" spawn\n", nil, `option "spawn" requires value`},
		{" umask 0999\n", nil, "bad umask value"},
		{" umask 027\n", []Option{{Name: "umask", Value: "027"}}, ""},
		{" linger -1\n", nil, "bad linger value"},
		{" nice 5x\n", nil, "bad nice value"},
		{" nice\n", []Option{{Name: "nice"}}, ""},
		{" rfc931 0\n", nil, "bad rfc931 timeout"},
		{" severity LOCAL0.NOTICE\n", []Option{{Name: "severity", Value: "LOCAL0.NOTICE"}}, ""},
		{" severity bogus.notice\n", nil, `bad syslog facility or severity: "bogus"`},
		{" SPAWN /bin/true: ALLOW\n", []Option{{Name: "spawn", Value: "/bin/true"}, {Name: "allow"}}, ""},
	}
	for _, tt := range tests {
		got, err := ParseOptions(tt.field)
		var errText string
		if err != nil {
			errText = err.Error()
		}
		if errText != tt.err {
			t.Errorf("ParseOptions(%q) error %q, want %q", tt.field, errText, tt.err)
			continue
		}
		if tt.err == "" {
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseOptions(%q) (-want +got):\n%s", tt.field, diff)
			}
		}
	}
}

// TestDecisionLocation checks that decisions and diagnostics carry the
// exact file:line, including continuation lines and file-level errors.
func TestDecisionLocation(t *testing.T) {
	allow := Source{Name: "/etc/hosts.allow", Data: []byte("# c\nimap:\\\n 10.0.0.1\nbroken line\n")}
	deny := Source{Name: "/etc/hosts.deny", Data: []byte("pop3: ALL\nALL: ALL: frob\nunterminated")}
	p := Compile(allow, deny)
	ctx := context.Background()
	ask := func(daemon, client string) Decision {
		req := Request{Daemon: daemon, Client: Endpoint{Addr: netip.MustParseAddrPort(client + ":1")}}
		return p.Check(ctx, &req, nil)
	}
	d := ask("imap", "10.0.0.1")
	if d.Verdict != Granted || d.File != "/etc/hosts.allow" || d.Line != 3 || d.Rule != "imap: 10.0.0.1" {
		t.Errorf("continued rule: %+v", d)
	}
	d = ask("imap", "10.0.0.2")
	if d.Verdict != Denied || d.Line != 2 || d.Reason != "option error" || d.Err == nil ||
		d.Err.Error() != `/etc/hosts.deny:2: bad option name: "frob"` {
		t.Errorf("option error: %+v (err %v)", d, d.Err)
	}
	wantDiags := []string{
		`/etc/hosts.allow:4: missing ":" separator`,
		`/etc/hosts.deny:3: missing newline or line too long`,
		`/etc/hosts.deny:3: all the subsequent rules will be ignored`,
	}
	var got []string
	for _, d := range p.Diagnostics() {
		got = append(got, d.Error())
	}
	if diff := cmp.Diff(wantDiags, got); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

func TestFileListCycle(t *testing.T) {
	dir := t.TempDir()
	list := dir + "/list"
	other := dir + "/other"
	writeFile(t, list, list+"\n")
	writeFile(t, other, other+" 10.0.0.9\n")
	for _, tt := range []struct {
		list string
		want Verdict
	}{
		// The cycle itself matches nothing ...
		{list, Denied},
		// ... and the words after it are still tried at every level, as
		// libwrap does until it runs out of descriptors.
		{other, Granted},
	} {
		p := Compile(Source{Name: "hosts.allow", Data: []byte("imap: " + tt.list + "\n")}, Source{Name: "hosts.deny", Data: []byte("ALL: ALL\n")})
		req := Request{Daemon: "imap", Client: Endpoint{Addr: netip.MustParseAddrPort("10.0.0.9:1")}}
		if d := p.Check(context.Background(), &req, nil); d.Verdict != tt.want {
			t.Errorf("self-including list %s: got %v, want %v", tt.list, d.Verdict, tt.want)
		}
	}
}

func TestLiveRequests(t *testing.T) {
	hosts := ParseHosts([]byte("10.0.0.1 one.example.com\n"))
	sim, err := SimulatedRequests(context.Background(), hosts, "imap", "010.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	live, err := LiveRequests(context.Background(), hosts, "imap", "010.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	want := []Endpoint{{AddrText: "010.0.0.1", Name: Unknown}, {Addr: netip.MustParseAddrPort("8.0.0.1:0")}}
	if diff := cmp.Diff(want, []Endpoint{sim[0].Client, live[0].Client}, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("client endpoints (-want +got):\n%s", diff)
	}
}
