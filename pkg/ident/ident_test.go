package ident

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// identd is a tiny RFC 1413 server on 127.0.0.1 for tests. For each
// connection it reads the query line, records it and calls reply, which
// writes the answer (or nothing) before the connection is closed.
type identd struct {
	ln      net.Listener
	mu      sync.Mutex
	queries []string
	peers   []string
	wg      sync.WaitGroup
}

// startIdentd starts an identd and points Lookup at it for the test.
func startIdentd(t *testing.T, reply func(c net.Conn, query string)) *identd {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &identd{ln: ln}
	old := port
	port = ln.Addr().(*net.TCPAddr).Port
	stop := make(chan struct{})
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer c.Close()
				// A silent reply must not outlive the test.
				go func() { <-stop; c.Close() }()
				q, _ := bufio.NewReader(c).ReadString('\n')
				d.mu.Lock()
				d.queries = append(d.queries, q)
				d.peers = append(d.peers, c.RemoteAddr().String())
				d.mu.Unlock()
				reply(c, q)
			}()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		d.wg.Wait()
		port = old
	})
	return d
}

func (d *identd) log() (queries, peers []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.queries...), append([]string(nil), d.peers...)
}

var (
	client = netip.MustParseAddrPort("127.0.0.1:40000")
	server = netip.MustParseAddrPort("127.0.0.1:143")
)

func TestLookup(t *testing.T) {
	long := strings.Repeat("u", 300)
	tests := []struct {
		name    string
		reply   string
		noClose bool
		want    string
		wantErr bool
	}{
		{name: "libwrap style", reply: "40000 , 143 : USERID : UNIX : alice\r\n", want: "alice"},
		{name: "compact", reply: "40000,143:USERID:UNIX:alice\n", want: "alice"},
		{name: "charset in os field", reply: "40000, 143 : USERID : UNIX , US-ASCII : alice\r\n", want: "alice"},
		{name: "first word only", reply: "40000 , 143 : USERID :x:  bob smith\r\n", want: "bob"},
		{name: "raw user, not sanitised", reply: "40000 , 143 : USERID : UNIX : Weird;User$\r\n", want: "Weird;User$"},
		{name: "long user cut to 127", reply: "40000 , 143 : USERID : UNIX : " + long + "\r\n", want: long[:127]},
		{name: "wrong client port", reply: "40001 , 143 : USERID : UNIX : alice\r\n", wantErr: true},
		{name: "wrong server port", reply: "40000 , 144 : USERID : UNIX : alice\r\n", wantErr: true},
		{name: "swapped ports", reply: "143 , 40000 : USERID : UNIX : alice\r\n", wantErr: true},
		{name: "ERROR reply", reply: "40000 , 143 : ERROR : NO-USER\r\n", wantErr: true},
		{name: "missing LF", reply: "40000 , 143 : USERID : UNIX : alice", wantErr: true},
		{name: "empty os field", reply: "40000 , 143 : USERID :: bob\r\n", wantErr: true},
		{name: "no user", reply: "40000 , 143 : USERID : UNIX :   \r\n", wantErr: true},
		{name: "lower-case userid", reply: "40000 , 143 : userid : UNIX : alice\r\n", wantErr: true},
		{name: "empty line", reply: "\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startIdentd(t, func(c net.Conn, q string) { c.Write([]byte(tt.reply)) })
			got, err := Lookup(context.Background(), client, server, 5*time.Second)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Lookup = %q, %v; want error %v", got, err, tt.wantErr)
			}
			if err != nil && strings.Contains(tt.name, "port") && !errors.Is(err, ErrBadReply) {
				t.Errorf("err = %v, want ErrBadReply", err)
			}
			if got != tt.want {
				t.Errorf("user = %q, want %q", got, tt.want)
			}
			q, peers := d.log()
			if diff := cmp.Diff([]string{"40000,143\r\n"}, q); diff != "" {
				t.Errorf("queries (-want +got):\n%s", diff)
			}
			if len(peers) == 1 && !strings.HasPrefix(peers[0], "127.0.0.1:") {
				t.Errorf("query came from %s, want the server address 127.0.0.1", peers[0])
			}
		})
	}
}

// TestLookupTimeout: a silent identd costs exactly the timeout.
func TestLookupTimeout(t *testing.T) {
	startIdentd(t, func(c net.Conn, q string) { c.Read(make([]byte, 1)) })
	start := time.Now()
	got, err := Lookup(context.Background(), client, server, 300*time.Millisecond)
	took := time.Since(start)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lookup = %q, %v; want a deadline error", got, err)
	}
	if took < 290*time.Millisecond || took > 2*time.Second {
		t.Errorf("took %v, want about 300ms", took)
	}
}

func TestLookupCancel(t *testing.T) {
	startIdentd(t, func(c net.Conn, q string) { c.Read(make([]byte, 1)) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := Lookup(ctx, client, server, 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v after cancel", took)
	}
}

func TestLookupRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old := port
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	t.Cleanup(func() { port = old })
	if u, err := Lookup(context.Background(), client, server, time.Second); err == nil {
		t.Fatalf("Lookup = %q with nothing listening", u)
	}
}

func TestLookupFamilies(t *testing.T) {
	_, err := Lookup(context.Background(), client, netip.MustParseAddrPort("[::1]:143"), time.Second)
	if err == nil {
		t.Fatal("mixed families: no error")
	}
	// ::ffff:127.0.0.1 is IPv4.
	startIdentd(t, func(c net.Conn, q string) { c.Write([]byte(strings.TrimSpace(q) + ":USERID:UNIX:carol\n")) })
	got, err := Lookup(context.Background(), netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000"), server, time.Second)
	if err != nil || got != "carol" {
		t.Fatalf("mapped client: %q, %v", got, err)
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		line string
		want string
	}{
		{"1,2:USERID:UNIX:u\n", "u"},
		{"  1 ,  2  :  USERID  : UNIX :\tu\r\n", "u"},
		{"+1,+2:USERID:UNIX:u\n", "u"},
		{"1,2:USERID:UNIX:u\x00v\n", "u"},
		{"1,2:USERID:UNIX:" + strings.Repeat("x", 255) + "y\n", strings.Repeat("x", 127)},
		{"1,2:USERID: :u\n", "u"},
		{"1,2:USERID::u\n", ""},
		{"1,2:USERID:UNIX\n", ""},
		{"-1,2:USERID:UNIX:u\n", ""},
		{"1 2:USERID:UNIX:u\n", ""},
		{"1,2 USERID:UNIX:u\n", ""},
	}
	for _, tt := range tests {
		got, err := ParseReply([]byte(tt.line), 1, 2)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("ParseReply(%q) = %q, %v; want %q", tt.line, got, err, tt.want)
		}
	}
}

// TestEngineRFC931: the rules engine with Env.Ident = Lookup. A rule that
// needs a user name makes one lookup; a silent identd costs the rfc931
// timeout and the user is "unknown"; rules without user patterns make no
// lookup at all.
func TestEngineRFC931(t *testing.T) {
	req := func() *hostsrules.Request {
		return &hostsrules.Request{Daemon: "imap",
			Client: hostsrules.Endpoint{Addr: client}, Server: hostsrules.Endpoint{Addr: server}}
	}
	env := &hostsrules.Env{Ident: Lookup}
	compile := func(allow, deny string) *hostsrules.Policy {
		return hostsrules.Compile(hostsrules.Source{Name: "hosts.allow", Data: []byte(allow)},
			hostsrules.Source{Name: "hosts.deny", Data: []byte(deny)})
	}

	t.Run("user pattern", func(t *testing.T) {
		d := startIdentd(t, func(c net.Conn, q string) {
			c.Write([]byte(strings.TrimSpace(q) + " : USERID : UNIX : root\r\n"))
		})
		p := compile("", "imap: root@ALL\n")
		if got := p.Check(context.Background(), req(), env); got.Verdict != hostsrules.Denied || got.Line != 1 {
			t.Errorf("decision %+v, want denied by line 1", got)
		}
		if q, _ := d.log(); len(q) != 1 {
			t.Errorf("%d ident queries, want 1", len(q))
		}
	})
	t.Run("no user pattern, no lookup", func(t *testing.T) {
		d := startIdentd(t, func(c net.Conn, q string) {
			c.Write([]byte(strings.TrimSpace(q) + " : USERID : UNIX : root\r\n"))
		})
		p := compile("imap: 127.0.0.1: setenv X %a\n", "ALL: ALL\n")
		if got := p.Check(context.Background(), req(), env); got.Verdict != hostsrules.Granted {
			t.Errorf("decision %+v, want granted", got)
		}
		if q, _ := d.log(); len(q) != 0 {
			t.Errorf("%d ident queries, want none", len(q))
		}
	})
	t.Run("rfc931 1 with a silent identd", func(t *testing.T) {
		startIdentd(t, func(c net.Conn, q string) { c.Read(make([]byte, 1)) })
		p := compile("imap: ALL: rfc931 1\n", "")
		start := time.Now()
		d, out := p.CheckExpand(context.Background(), req(), env, "%u")
		took := time.Since(start)
		if d.Verdict != hostsrules.Granted || out[0] != hostsrules.Unknown {
			t.Errorf("decision %v, %%u = %q; want granted, unknown", d.Verdict, out[0])
		}
		if took < 950*time.Millisecond || took > 3*time.Second {
			t.Errorf("took %v, want about 1s (the rfc931 timeout)", took)
		}
	})
	t.Run("sanitised by %u", func(t *testing.T) {
		startIdentd(t, func(c net.Conn, q string) {
			c.Write([]byte(strings.TrimSpace(q) + " : USERID : UNIX : Weird;User$\r\n"))
		})
		p := compile("imap: ALL: rfc931\n", "")
		_, out := p.CheckExpand(context.Background(), req(), env, "%u", "%c")
		if diff := cmp.Diff([]string{"Weird_User_", "Weird_User_@127.0.0.1"}, out); diff != "" {
			t.Errorf("expansions (-want +got):\n%s", diff)
		}
	})
}

// TestPort113 runs one lookup against an identd on the real port 113 of
// 127.0.0.1, as a live tcpwrapd makes it. It is skipped when the port is
// taken or cannot be bound (not root).
func TestPort113(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:113")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.1:113: %v", err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		q, _ := bufio.NewReader(c).ReadString('\n')
		c.Write([]byte(strings.TrimSpace(q) + " : USERID : UNIX : dave\r\n"))
	}()
	got, err := Lookup(context.Background(), client, server, 2*time.Second)
	if err != nil || got != "dave" {
		t.Errorf("Lookup = %q, %v; want dave", got, err)
	}
	ln.Close()
	<-done

}
