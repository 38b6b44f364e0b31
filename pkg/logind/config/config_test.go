package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/conf"
)

// The two example blocks of the seed page, verbatim.
const seedHighSecurity = `service imap-login {
  service_count = 1
  #process_min_avail = 0
  #process_limit = $default_process_limit
  #vsz_limit = 64M
}
service pop3-login {
  service_count = 1
}
`

const seedHighPerformance = `  service imap-login {
    service_count = 0
    #client_limit = $default_client_limit
    process_min_avail = 4 # number of CPU cores
    vsz_limit = 1G
  }
  service pop3-login {
    service_count = 0
  }
`

type svcSummary struct {
	Name                                              string
	ServiceCount, MinAvail, ProcessLimit, ClientLimit int
	Vsz                                               uint64
	IdleKill                                          time.Duration
	User, Chroot                                      string
}

func summary(c *Config, names ...string) []svcSummary {
	var out []svcSummary
	for _, n := range names {
		s := c.Service(n)
		out = append(out, svcSummary{s.Name, s.ServiceCount, s.ProcessMinAvail, s.ProcessLimit, s.ClientLimit, s.VszLimit, s.IdleKill, s.User, s.Chroot})
	}
	return out
}

func TestParseSeedBlocks(t *testing.T) {
	tests := []struct {
		name string
		conf string
		want []svcSummary
	}{
		{"high-security", seedHighSecurity, []svcSummary{
			{"imap-login", 1, 0, 100, 1, 256 << 20, time.Minute, "dovenull", "/run/loginsvc/login"},
			{"pop3-login", 1, 0, 100, 1, 256 << 20, time.Minute, "dovenull", "/run/loginsvc/login"},
		}},
		{"high-performance", seedHighPerformance, []svcSummary{
			{"imap-login", 0, 4, 100, 1000, 1 << 30, time.Minute, "dovenull", "/run/loginsvc/login"},
			{"pop3-login", 0, 0, 100, 1000, 256 << 20, time.Minute, "dovenull", "/run/loginsvc/login"},
		}},
		{"service_count N clamps client_limit", "service imap-login {\n service_count = 5\n client_limit = 50\n}\n", []svcSummary{
			{"imap-login", 5, 0, 100, 5, 256 << 20, time.Minute, "dovenull", "/run/loginsvc/login"},
			{"pop3-login", 1, 0, 100, 1, 256 << 20, time.Minute, "dovenull", "/run/loginsvc/login"},
		}},
		{"variables", "default_process_limit = 7\ndefault_login_user = nobody\nbase_dir = /x\nservice imap-login {\n process_limit = $default_process_limit\n idle_kill = 4294967295s\n chroot =\n}\n", []svcSummary{
			{"imap-login", 1, 0, 7, 1, 256 << 20, 0, "nobody", ""},
			{"pop3-login", 1, 0, 7, 1, 256 << 20, time.Minute, "nobody", "/x/login"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("loginsvc.conf", []byte(tt.conf))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, summary(c, "imap-login", "pop3-login")); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, conf string
		want       []string
	}{
		{"unknown setting", "foo = 1\n", []string{"c.conf:1: unknown setting: foo"}},
		{"several errors", "a = 1\nservice imap-login {\n  bogus = 2\n}\nservice tcpwrap {\n  unix_listener x {\n  }\n}\n}\n",
			[]string{
				"c.conf:1: unknown setting: a",
				"c.conf:3: unknown setting in service imap-login: bogus",
				"c.conf:5: service tcpwrap: not a login service (known: imap-login, pop3-login, submission-login, managesieve-login)",
				"c.conf:9: unexpected '}'",
			}},
		{"missing brace", "service imap-login {\n", []string{"c.conf:1: missing '}' for service section"}},
		{"no equals", "base_dir /x\n", []string{`c.conf:1: expecting '=' in "base_dir /x"`}},
		{"bad number at its line", "\n\nservice pop3-login {\n  process_limit = lots\n}\n", []string{`c.conf:4: service pop3-login: process_limit: invalid number "lots"`}},
		{"min_avail over limit", "service imap-login {\n process_limit = 2\n process_min_avail = 3\n}\n", []string{"c.conf:3: service imap-login: process_min_avail (3) > process_limit (2)"}},
		{"default vsz too small, at its own line, once", "protocols = imap\n\ndefault_vsz_limit = 1\n", []string{"c.conf:3: default_vsz_limit: 1 is below 16M, the least a Go login process can work with (see vsz_limit in docs/loginsvc.md)"}},
		{"counts fit Dovecot's unsigned int", "default_client_limit = 4294967297\nservice imap-login {\n process_limit = 99999999999\n}\n",
			[]string{`c.conf:1: default_client_limit: invalid number "4294967297"`, `c.conf:3: service imap-login: process_limit: invalid number "99999999999"`}},
		{"vsz too small", "service imap-login {\n vsz_limit = 8M\n}\n", []string{"c.conf:2: service imap-login: vsz_limit: 8M is below 16M, the least a Go login process can work with (see vsz_limit in docs/loginsvc.md)"}},
		{"unknown variable", "login_greeting = $nope\n", []string{"c.conf:1: login_greeting: unknown variable $nope"}},
		{"missing quote", "login_greeting = \"abc\n", []string{"c.conf:1: login_greeting: missing closing quote"}},
		{"missing include", "!include /nonexistent/x.conf\n", []string{"c.conf:1: !include /nonexistent/x.conf: no such file or directory"}},
		{"bad network", "login_trusted_networks = 10.0.0.0/33\n", []string{`c.conf:1: login_trusted_networks: invalid network "10.0.0.0/33"`}},
		{"duplicate listener across services", "protocols = imap pop3\nservice imap-login {\n inet_listener imap {\n  port = 21243\n }\n}\nservice pop3-login {\n inet_listener pop3 {\n  port = 21243\n }\n}\n",
			[]string{"c.conf:9: service pop3-login: inet_listener pop3: duplicate listener 0.0.0.0:21243 (also service imap-login, inet_listener imap at c.conf:4)",
				"c.conf:9: service pop3-login: inet_listener pop3: duplicate listener [::]:21243 (also service imap-login, inet_listener imap at c.conf:4)"}},
		{"duplicate listener, * and 0.0.0.0", "protocols = imap\nservice imap-login {\n inet_listener imap {\n  address = *\n  port = 21243\n }\n inet_listener imap2 {\n  address = 0.0.0.0\n  port = 21243\n }\n}\n",
			[]string{"c.conf:9: service imap-login: inet_listener imap2: duplicate listener 0.0.0.0:21243 (also service imap-login, inet_listener imap at c.conf:5)"}},
		{"ssl_cert path without <", "ssl = yes\nssl_cert = /etc/ssl/x.pem\nssl_key = /etc/ssl/x.key\n", []string{"c.conf:2: ssl_cert: not PEM data (to read a file, write ssl_cert = </etc/ssl/x.pem)"}},
		{"<file of a device", "login_greeting = </dev/zero\n", []string{"c.conf:1: login_greeting: read /dev/zero: not a regular file"}},
		{"bad listen address, once", "listen = localhost\nprotocols = imap\n", []string{`c.conf:1: listen: invalid IP "localhost" (an IPv4 or IPv6 address, [IPv6], * or ::)`}},
		{"bad listener address", "service imap-login {\n inet_listener imap {\n  address = 127.0.0.1, fe80::1%eth0\n }\n}\n", []string{`c.conf:3: service imap-login: inet_listener imap: address: invalid IP "fe80::1%eth0" (an IPv4 or IPv6 address, [IPv6], * or ::)`}},
		{"errors sorted by line", "service pop3-login {\n  process_limit = x\n}\nlogin_trusted_networks = 10.0.0.0/33\n",
			[]string{`c.conf:2: service pop3-login: process_limit: invalid number "x"`, `c.conf:4: login_trusted_networks: invalid network "10.0.0.0/33"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.conf", []byte(tt.conf))
			var el conf.ErrorList
			if !errors.As(err, &el) {
				t.Fatalf("err = %v, want ErrorList", err)
			}
			var got []string
			for _, e := range el {
				got = append(got, e.Error())
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestIncludeAndFileValues(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("main.conf", "base_dir = /tmp/x\n!include conf.d/*.conf\n!include_try missing.conf\nssl_cert = <cert.pem\nprotocol pop3 {\n  login_greeting = <greeting.txt\n}\n")
	write("greeting.txt", "pop ready\n")
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
	write("conf.d/10-a.conf", "service imap-login {\n  process_limit = 3\n}\n")
	write("conf.d/20-b.conf", "service imap-login {\n  client_limit = 9\n  service_count = 0\n}\nbogus = 1\n")
	write("cert.pem", "PEM\n")
	_, err := ParseFile(filepath.Join(dir, "main.conf"))
	if err == nil || err.Error() != filepath.Join(dir, "conf.d/20-b.conf")+":5: unknown setting: bogus" {
		t.Fatalf("err = %v", err)
	}
	write("conf.d/20-b.conf", "service imap-login {\n  client_limit = 9\n  service_count = 0\n}\n")
	c, err := ParseFile(filepath.Join(dir, "main.conf"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Service("imap-login")
	if s.ProcessLimit != 3 || s.ClientLimit != 9 || c.SSLCert != "PEM\n" {
		t.Errorf("got limit %d client %d cert %q", s.ProcessLimit, s.ClientLimit, c.SSLCert)
	}
	var b strings.Builder
	c.Print(&b, PrintNonDefault)
	if !strings.Contains(b.String(), "ssl_cert = <cert.pem\n") || !strings.Contains(b.String(), "protocol pop3 {\n  login_greeting = <greeting.txt\n}\n") {
		t.Errorf("-n output lacks the <file values as written:\n%s", b.String())
	}
	if g := c.Service("pop3-login").Greeting; g != "pop ready" {
		t.Errorf("pop3 greeting %q", g)
	}
	// Self-include is bounded.
	write("loop.conf", "!include loop.conf\n")
	if _, err := ParseFile(filepath.Join(dir, "loop.conf")); err == nil || !strings.Contains(err.Error(), "include depth exceeded") {
		t.Errorf("loop: %v", err)
	}
}

func TestPrintNonDefault(t *testing.T) {
	conf := "base_dir = /tmp/lsvc\nlogin_access_sockets = tcpwrap\nprotocol pop3 {\n  login_greeting = \"pop # ready\"\n}\n" + seedHighPerformance +
		"service imap-login {\n  inet_listener imap {\n    address = 127.0.0.1\n    port = 31143\n  }\n}\n"
	c, err := Parse("c.conf", []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	c.Print(&b, PrintNonDefault)
	want := `base_dir = /tmp/lsvc
login_access_sockets = tcpwrap
protocol pop3 {
  login_greeting = "pop # ready"
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = 31143
  }
  process_min_avail = 4
  service_count = 0
  vsz_limit = 1G
}
service pop3-login {
  service_count = 0
}
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	// Round trip: -n and -a output parse back to the same effective config.
	for _, mode := range []PrintMode{PrintNonDefault, PrintAll} {
		var out strings.Builder
		c.Print(&out, mode)
		c2, err := Parse("printed.conf", []byte(out.String()))
		if err != nil {
			t.Fatalf("mode %d: %v\n%s", mode, err, out.String())
		}
		names := LoginServiceNames()
		if d := cmp.Diff(summary(c, names...), summary(c2, names...)); d != "" {
			t.Errorf("mode %d round trip (-want +got)\n%s", mode, d)
		}
		if c2.Service("pop3-login").Greeting != "pop # ready" || c2.Service("imap-login").Listeners[0].Port != 31143 {
			t.Errorf("mode %d lost protocol/listener values", mode)
		}
	}
}

func TestParseSizeDuration(t *testing.T) {
	sizes := map[string]uint64{"64M": 64 << 20, "1G": 1 << 30, "1 GB": 1 << 30, "512k": 512 << 10, "100": 100, "0": 0}
	for in, want := range sizes {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	durs := map[string]time.Duration{"5s": 5 * time.Second, "1 mins": time.Minute, "60": time.Minute, "100 ms": 100 * time.Millisecond, "2 hours": 2 * time.Hour}
	for in, want := range durs {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "5x", "99999999999999999999"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(seedHighSecurity))
	f.Add([]byte(seedHighPerformance))
	f.Add([]byte("a = \"x\\\"\" # c\nservice imap-login {\n inet_listener imap {\n port = 1\n }\n}\n!include x\nk = <f\n"))
	p := &Parser{ReadFile: func(string) ([]byte, error) { return nil, fs.ErrPermission }}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := p.Parse("fuzz.conf", data)
		if err != nil {
			var el conf.ErrorList
			if !errors.As(err, &el) || len(el) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %v", err)
			}
			return
		}
		// A configuration that parses prints to one that parses the same.
		var b strings.Builder
		c.Print(&b, PrintAll)
		c2, err := p.Parse("printed.conf", []byte(b.String()))
		if err != nil {
			t.Fatalf("printed config does not parse: %v\n%s", err, b.String())
		}
		names := LoginServiceNames()
		if d := cmp.Diff(summary(c, names...), summary(c2, names...)); d != "" {
			t.Fatalf("round trip (-want +got)\n%s", d)
		}
	})
}

// TestGreetingFromFile: a "<file" greeting loses the file's final newline
// (Dovecot keeps it and would send it inside the greeting line); a file
// of several lines is an error, reported once at its line.
func TestGreetingFromFile(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.txt")
	two := filepath.Join(dir, "two.txt")
	os.WriteFile(one, []byte("hello from file\n"), 0o644)
	os.WriteFile(two, []byte("multi\nline greeting\n"), 0o644)
	cfg, err := Parse("c.conf", []byte("protocols = imap pop3\nlogin_greeting = <"+one+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Enabled() {
		if s.Greeting != "hello from file" {
			t.Errorf("service %s: greeting %q", s.Name, s.Greeting)
		}
	}
	_, err = Parse("c.conf", []byte("protocols = imap pop3\n\nlogin_greeting = <"+two+"\n"))
	var el conf.ErrorList
	if !errors.As(err, &el) {
		t.Fatalf("err = %v, want ErrorList", err)
	}
	want := []string{"c.conf:3: login_greeting: must be one line (it contains a line break or NUL)"}
	var got []string
	for _, e := range el {
		got = append(got, e.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

// TestAuthSettings: disable_plaintext_auth (2.3's name) and
// auth_allow_cleartext (2.4's, its inverse) both set plaintext
// authentication, in a protocol section or globally; the auth and
// post-login sockets have Dovecot's names by default.
func TestAuthSettings(t *testing.T) {
	type got struct {
		AuthSocket          string
		IMAPAllow, POPAllow bool
		IMAPPostlogin       string
		SievePostlogin      string
	}
	tests := []struct {
		name, conf string
		want       got
		err        string
	}{
		{"defaults", "", got{"login", false, false, "imap", "sieve"}, ""},
		{"2.3 name", "disable_plaintext_auth = no\n", got{"login", true, true, "imap", "sieve"}, ""},
		{"2.4 name", "auth_allow_cleartext = yes\n", got{"login", true, true, "imap", "sieve"}, ""},
		{"protocol section", "auth_allow_cleartext = yes\nprotocol pop3 {\n disable_plaintext_auth = yes\n}\n", got{"login", true, false, "imap", "sieve"}, ""},
		{"both agree", "auth_allow_cleartext = yes\ndisable_plaintext_auth = no\n", got{"login", true, true, "imap", "sieve"}, ""},
		{"sockets", "login_socket_path = auth-login\nservice imap-login {\n postlogin_socket = imap-postlogin\n}\n", got{"auth-login", false, false, "imap-postlogin", "sieve"}, ""},
		{"both contradict", "auth_allow_cleartext = yes\ndisable_plaintext_auth = yes\n", got{}, "contradicts disable_plaintext_auth"},
		{"bad boolean", "disable_plaintext_auth = maybe\n", got{}, "disable_plaintext_auth: invalid boolean"},
		{"no auth", "login_socket_path =\n", got{"", false, false, "imap", "sieve"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.conf", []byte(tt.conf))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := got{c.AuthSocket, c.Service("imap-login").AuthAllowCleartext, c.Service("pop3-login").AuthAllowCleartext,
				c.Service("imap-login").PostloginSocket, c.Service("managesieve-login").PostloginSocket}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}
