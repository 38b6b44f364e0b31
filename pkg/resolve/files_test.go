package resolve

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

func TestHostsFileReadAgainWhenChanged(t *testing.T) {
	ts := startServer(t, zone...)
	r, clk, e := newResolver(t, Config{}, ts.Addr)
	steps := []struct {
		name, hosts  string // hosts == "" keeps the file
		rename       bool   // replace atomically instead of in place
		client, want string
	}{
		{"from file", "", false, "198.51.100.77", "fromfile.example.com"},
		{"edited in place", "198.51.100.77 renamed.example.com\n", false, "198.51.100.77", "renamed.example.com"},
		{"same size, new text", "198.51.100.77 Renamed.example.com\n", false, "198.51.100.77", "Renamed.example.com"},
		{"replaced by rename", "198.51.100.77 moved.example.com\n", true, "198.51.100.77", "moved.example.com"},
		{"line removed: DNS answers", "127.0.0.1 localhost\n", false, "198.51.100.10", "good.example.com"},
		{"file shadows DNS", "198.51.100.10 local.example.com\n", true, "198.51.100.10", "local.example.com"},
	}
	prev := ""
	for _, st := range steps {
		if st.hosts != "" {
			if st.rename {
				tmp := filepath.Join(e.dir, "hosts.new")
				writeFile(t, tmp, st.hosts)
				if err := os.Rename(tmp, e.hosts); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFile(t, e.hosts, st.hosts)
			}
			// Within FileCheckInterval the old contents still answer.
			if _, got := checkName(r, "imap: KNOWN\n", "198.51.100.77", 5*time.Second); got != prev {
				t.Errorf("%s: before the check interval passed: name %q, want %q", st.name, got, prev)
			}
			clk.Advance(DefaultFileCheckInterval)
		}
		if _, got := checkName(r, "imap: KNOWN\n", st.client, 5*time.Second); got != st.want {
			t.Errorf("%s: name %q, want %q", st.name, got, st.want)
		}
		_, prev = checkName(r, "imap: KNOWN\n", "198.51.100.77", 5*time.Second)
	}
}

func TestNsswitchOrder(t *testing.T) {
	ts := startServer(t, zone...)
	ts.add(t, ptrName("198.51.100.77")+" 300 IN PTR dns.example.com.")
	ts.add(t, "dns.example.com. 300 IN A 198.51.100.77")
	tests := []struct {
		nsswitch     string
		client, want string
		queries      bool
	}{
		{"hosts: files dns\n", "198.51.100.77", "fromfile.example.com", false},
		{"hosts: files\n", "198.51.100.10", "unknown", false},
		{"hosts: dns files\n", "198.51.100.77", "dns.example.com", true},
		{"hosts: files [NOTFOUND=return] resolve [!UNAVAIL=return] dns myhostname\n", "198.51.100.10", "good.example.com", true},
		{"# no hosts line\n", "198.51.100.77", "fromfile.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.nsswitch, func(t *testing.T) {
			r, _, e := newResolver(t, Config{}, ts.Addr)
			writeFile(t, e.nsswitch, tt.nsswitch)
			before := ts.total()
			if _, got := checkName(r, "imap: KNOWN\n", tt.client, 5*time.Second); got != tt.want {
				t.Errorf("name %q, want %q", got, tt.want)
			}
			if asked := ts.total() > before; asked != tt.queries {
				t.Errorf("DNS asked: %v, want %v", asked, tt.queries)
			}
		})
	}
}

func TestParseResolvConf(t *testing.T) {
	type conf struct {
		Servers, Search          []string
		Port                     string
		Ndots, Timeout, Attempts int
	}
	tests := []struct {
		name, text string
		want       conf
	}{
		{"missing file", "", conf{Servers: []string{"127.0.0.1"}, Port: "53", Ndots: 1, Timeout: 5, Attempts: 2}},
		{"full", "nameserver 192.0.2.1\nnameserver 2001:db8::53\nsearch a.example b.example\noptions ndots:2 timeout:3 attempts:4\n",
			conf{Servers: []string{"192.0.2.1", "2001:db8::53"}, Search: []string{"a.example", "b.example"}, Port: "53", Ndots: 2, Timeout: 3, Attempts: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseResolvConf([]byte(tt.text))
			got := conf{c.Servers, c.Search, c.Port, c.Ndots, c.Timeout, c.Attempts}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b []string) bool { return cmp.Equal(append([]string{}, a...), append([]string{}, b...)) })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestResolvConfSearchList: the search list of resolv.conf reaches the
// forward lookup, and an edit of the file is seen by the next lookup.
func TestResolvConfSearchList(t *testing.T) {
	ts := startServer(t, zone...)
	ts.add(t, "plainhost.example.net. 300 IN A 198.51.100.14")
	r, clk, e := newResolver(t, Config{}, ts.Addr)
	for _, step := range []struct {
		resolv, canon string
	}{
		{"", "plainhost.example.com"},
		{"search example.net\n", "plainhost.example.net"},
	} {
		if step.resolv != "" {
			writeFile(t, e.resolvcnf, step.resolv)
			clk.Advance(DefaultFileCheckInterval)
		}
		c, _, err := r.LookupHost(context.Background(), "ip4", "plainhost")
		if err != nil || c != step.canon {
			t.Errorf("LookupHost(plainhost) = %q, %v; want %q", c, err, step.canon)
		}
	}
}

func TestNetgroups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "netgroup")
	clk := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	ng := newNetgroups(path, time.Second, clk.Now)
	hosts := hostsrules.ParseHosts([]byte(
		"198.51.100.10 good.example.com\n198.51.100.11 MiXeD.Example.COM\n198.51.100.13 plainhost\n198.51.100.14 other.example.com\n"))
	env := &hostsrules.Env{Resolver: hosts, Netgroups: ng}
	check := func(group, client string) bool {
		p := compile("imap: @" + group + "\n")
		return p.Check(context.Background(), clientReq(client), env).Verdict == hostsrules.Granted
	}
	type q struct{ group, client string }
	steps := []struct {
		name, file string // file "-" removes it
		want       map[q]bool
	}{
		{"missing file", "-", map[q]bool{{"trusted", "198.51.100.10"}: false}},
		{"members", "trusted (good.example.com,,) (plainhost,-,)\nmixed (MiXeD.Example.COM,,)\nupper (GOOD.EXAMPLE.COM,,)\nnested trusted\n" +
			"anyone (,alice,)\nnobody (-,,)\nTrusted (other.example.com,,)\nloop1 loop2\nloop2 loop1 (plainhost,,)\n",
			map[q]bool{
				{"trusted", "198.51.100.10"}: true,  // member
				{"trusted", "198.51.100.13"}: true,  // dot-free member, user field "-"
				{"trusted", "198.51.100.14"}: false, // in "Trusted" only: group names are case-sensitive
				{"Trusted", "198.51.100.14"}: true,
				{"TRUSTED", "198.51.100.10"}: false, // no such group
				{"upper", "198.51.100.10"}:   true,  // hosts compare case-insensitively
				{"mixed", "198.51.100.11"}:   true,
				{"nested", "198.51.100.10"}:  true,  // nested group
				{"anyone", "198.51.100.14"}:  true,  // empty host field: every host
				{"anyone", "198.51.100.99"}:  true,  // ... even "unknown"
				{"nobody", "198.51.100.10"}:  false, // "-": no host
				{"loop1", "198.51.100.13"}:   true,  // cycles end
				{"loop1", "198.51.100.10"}:   false,
				{"nosuch", "198.51.100.10"}:  false,
				{"", "198.51.100.10"}:        false, // "@" alone
				{"trusted", "198.51.100.99"}: false, // name unknown
			}},
		{"edited", "trusted (other.example.com,,)\n", map[q]bool{
			{"trusted", "198.51.100.10"}: false,
			{"trusted", "198.51.100.14"}: true,
		}},
		{"removed", "-", map[q]bool{{"trusted", "198.51.100.14"}: false}},
	}
	for _, st := range steps {
		if st.file == "-" {
			os.Remove(path)
		} else {
			writeFile(t, path, st.file)
		}
		clk.Advance(time.Second)
		got := map[q]bool{}
		for k := range st.want {
			got[k] = check(k.group, k.client)
		}
		if diff := cmp.Diff(st.want, got, cmp.AllowUnexported(q{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", st.name, diff)
		}
	}
}

func TestNetgroupsAddressNeverUsed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netgroup")
	writeFile(t, path, "byaddr (198.51.100.10,,)\n")
	env := &hostsrules.Env{Netgroups: NetgroupFile(path)} // no resolver: name unknown
	req := clientReq("198.51.100.10")
	if d := compile("imap: @byaddr\n").Check(context.Background(), req, env); d.Verdict != hostsrules.Denied {
		t.Errorf("netgroup matched the address: %v", d.Verdict)
	}
	if !NetgroupFile(path).InNetgroup("byaddr", "198.51.100.10") {
		t.Error("InNetgroup on the literal text failed")
	}
}
