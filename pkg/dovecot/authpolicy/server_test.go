package authpolicy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/policytext"
)

// Bodies as Dovecot sends them (2.3.19's default attributes; 2.4.1's add
// fail_type). Captured from the real Dovecots of the lab tests.
const (
	body23 = `{"device_id":"","login":"alice","protocol":"imap","pwhash":"0a1b2c","remote":"%s","session_id":"abc","tls":false}`
	body24 = `{"device_id":"","fail_type":"","login":"alice","protocol":"%s","pwhash":"0a1b2c","remote":"%s","session_id":"abc","tls":false}`
)

func TestServeHTTP(t *testing.T) {
	banners := t.TempDir()
	if err := os.WriteFile(filepath.Join(banners, "imap"), []byte("Mail from %a is refused; see https://example.org/\nsecond line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	allow := "imap: 192.0.2.9 : setenv TCPWRAPD_POLICY_STATUS 5\n" +
		"imap: 192.0.2.10 : setenv TCPWRAPD_POLICY_STATUS 9999\n" +
		"imap: 192.0.2.11 : setenv TCPWRAPD_POLICY_STATUS soon\n" +
		"imap@127.0.0.5: 192.0.2.12\n"
	deny := "imap: 127.0.0.2 198.51.100.0/24 : banners " + banners + "\n" +
		"pop3: 127.0.0.3\n" +
		"imap: 192.0.2.12\n" +
		"imap: 203.0.113.5 : banners " + banners + "/missing\n"
	var mu sync.Mutex
	kinds := map[string]int{}
	s := &Server{Check: compile(allow, deny), MaxStatus: 60, Error: func(kind string) { mu.Lock(); kinds[kind]++; mu.Unlock() }}
	url := serve(t, s)
	c := &http.Client{}
	tests := []struct {
		name, url, body string
		hdr             []string
		code            int
		want            string
	}{
		{"allowed", "?command=allow", fmt.Sprintf(body23, "127.0.0.1"), nil, 200, `{"status":0}`},
		{"denied with banner", "?command=allow", fmt.Sprintf(body23, "127.0.0.2"), nil, 200, `{"status":-1,"msg":"Mail from 127.0.0.2 is refused; see https://example.org/"}`},
		{"2.4 body denied", "?command=allow", fmt.Sprintf(body24, "imap", "198.51.100.7"), nil, 200, `{"status":-1,"msg":"Mail from 198.51.100.7 is refused; see https://example.org/"}`},
		{"other daemon allowed", "?command=allow", fmt.Sprintf(body24, "pop3", "127.0.0.2"), nil, 200, `{"status":0}`},
		{"denied default message", "?command=allow", fmt.Sprintf(body24, "pop3", "127.0.0.3"), nil, 200, `{"status":-1,"msg":"Access denied."}`},
		{"banner dir missing", "?command=allow", fmt.Sprintf(body23, "203.0.113.5"), nil, 200, `{"status":-1,"msg":"Access denied."}`},
		{"mapped address unmapped", "?command=allow", fmt.Sprintf(body23, "::ffff:127.0.0.3"), nil, 200, `{"status":0}`},
		{"tarpit", "?command=allow", fmt.Sprintf(body23, "192.0.2.9"), nil, 200, `{"status":5}`},
		{"tarpit capped", "?command=allow", fmt.Sprintf(body23, "192.0.2.10"), nil, 200, `{"status":60}`},
		{"tarpit invalid ignored", "?command=allow", fmt.Sprintf(body23, "192.0.2.11"), nil, 200, `{"status":0}`},
		{"daemon@host with local", "?command=allow", `{"protocol":"imap","remote":"192.0.2.12","local":"127.0.0.5","local_port":"143"}`, nil, 200, `{"status":0}`},
		{"daemon@host other local", "?command=allow", `{"protocol":"imap","remote":"192.0.2.12","local":"127.0.0.6"}`, nil, 200, `{"status":-1,"msg":"Access denied."}`},
		{"unknown remote judged", "?command=allow", `{"protocol":"imap","remote":""}`, nil, 200, `{"status":0}`},
		{"url ending in &", "?x=1&command=allow", fmt.Sprintf(body23, "127.0.0.1"), nil, 200, `{"status":0}`},
		{"report", "?command=report", `{"login":"alice","protocol":"imap","pwhash":"00","remote":"127.0.0.2","success":false,"policy_reject":true,"tls":false}`, nil, 200, ``},
		{"report 2.4", "?command=report", `{"fail_type":"credentials","login":"a","protocol":"imap","remote":"127.0.0.2","success":false,"policy_reject":false,"tls":true}`, nil, 200, ``},
		{"unknown command", "?command=drop", fmt.Sprintf(body23, "127.0.0.1"), nil, 400, "Bad Request\n"},
		{"no command", "", fmt.Sprintf(body23, "127.0.0.1"), nil, 400, "Bad Request\n"},
		{"malformed json", "?command=allow", `{"protocol":"imap",`, nil, 400, "Bad Request\n"},
		{"trailing junk", "?command=allow", `{"protocol":"imap","remote":"127.0.0.1"} {}`, nil, 400, "Bad Request\n"},
		{"number for string", "?command=allow", `{"protocol":"imap","remote":127}`, nil, 400, "Bad Request\n"},
		{"no protocol", "?command=allow", `{"remote":"127.0.0.1"}`, nil, 400, "Bad Request\n"},
		{"protocol with slash", "?command=allow", `{"protocol":"../imap","remote":"127.0.0.1"}`, nil, 400, "Bad Request\n"},
		{"bad remote", "?command=allow", `{"protocol":"imap","remote":"127.0.0.300"}`, nil, 400, "Bad Request\n"},
		{"bad port", "?command=allow", `{"protocol":"imap","remote":"127.0.0.1","remote_port":"70000"}`, nil, 400, "Bad Request\n"},
		{"array", "?command=allow", `[]`, nil, 400, "Bad Request\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := post(t, c, url+tt.url, tt.body, tt.hdr...)
			if code != tt.code || got != tt.want {
				t.Errorf("got %d %q, want %d %q", code, got, tt.code, tt.want)
			}
			// Requests without a verdict are counted (Server.Error).
			want := map[string]int{}
			if tt.code == http.StatusBadRequest {
				want[ErrKindBadRequest] = 1
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(want, kinds); diff != "" {
				t.Errorf("Error counts (-want +got):\n%s", diff)
			}
			clear(kinds)
		})
	}
}

func TestAPIHeader(t *testing.T) {
	tests := []struct {
		name, setting string
		hdr           []string
		code          int
	}{
		{"bare value is X-API-Key", "s3cret", []string{"X-API-Key", "s3cret"}, 200},
		{"bare value wrong", "s3cret", []string{"X-API-Key", "s3creT"}, 401},
		{"bare value missing", "s3cret", nil, 401},
		{"named header", "Authorization: Bearer tok", []string{"Authorization", "Bearer tok"}, 200},
		{"named header wrong name", "Authorization: Bearer tok", []string{"X-API-Key", "Bearer tok"}, 401},
		{"not configured", "", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := serve(t, &Server{Check: compile("", ""), APIHeader: tt.setting})
			code, _ := post(t, &http.Client{}, url+"?command=allow", fmt.Sprintf(body23, "127.0.0.1"), tt.hdr...)
			if code != tt.code {
				t.Errorf("got %d, want %d", code, tt.code)
			}
		})
	}
}

// TestPwhashNeverLogged: no log line of any request carries the pwhash
// value, even at Debug and for refused requests.
func TestPwhashNeverLogged(t *testing.T) {
	var logs logBuffer
	s := &Server{Check: compile("", "imap: 127.0.0.2\n"), Log: testLogger(&logs)}
	url := serve(t, s)
	c := &http.Client{}
	const secret = "feedfacecafe"
	for _, b := range []string{
		`{"login":"alice","protocol":"imap","pwhash":"` + secret + `","remote":"127.0.0.1","tls":false}`,
		`{"login":"alice","protocol":"imap","pwhash":"` + secret + `","remote":"127.0.0.2","tls":false}`,
		`{"login":"alice","protocol":"imap","pwhash":"` + secret + `","remote":"bad","tls":false}`,
	} {
		post(t, c, url+"?command=allow", b)
		post(t, c, url+"?command=report", strings.Replace(b, `"tls"`, `"success":false,"tls"`, 1))
	}
	r, _ := ParseRequest([]byte(`{"pwhash":"` + secret + `"}`))
	testLogger(&logs).Info("request", "req", r, "pwhash", r.Pwhash)
	fmt.Fprintf(&logs, "%v %+v %#v %s\n", r, r, r, r.Pwhash)
	if strings.Contains(logs.String(), secret) {
		t.Errorf("pwhash in logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "denied") {
		t.Errorf("no denial logged:\n%s", logs.String())
	}
}

func TestBounds(t *testing.T) {
	var logs logBuffer
	s := &Server{Check: compile("", ""), Log: testLogger(&logs), Timeout: 500 * time.Millisecond, MaxRequestBytes: 1024}
	url := serve(t, s)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")

	t.Run("huge body", func(t *testing.T) {
		body := `{"protocol":"imap","remote":"127.0.0.1","x":"` + strings.Repeat("a", 4096) + `"}`
		code, _ := post(t, &http.Client{}, url+"?command=allow", body)
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("got %d, want 413", code)
		}
	})
	t.Run("huge headers", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, url+"?command=allow", strings.NewReader("{}"))
		req.Header.Set("X-Junk", strings.Repeat("b", 16<<10))
		resp, err := (&http.Client{}).Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("got %d, want 431 or a closed connection", resp.StatusCode)
			}
		}
	})
	// A client that sends half a request and stalls is cut off after
	// Timeout, with no verdict.
	for _, tt := range []struct{ name, partial string }{
		{"slow headers", "POST /?command=allow HTTP/1.1\r\nHost: x\r\n"},
		{"slow body", "POST /?command=allow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"protocol\":"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			io.WriteString(c, tt.partial)
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			rest, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("server did not close a stalled connection: %v (got %q)", err, rest)
			}
			if strings.Contains(string(rest), `"status"`) {
				t.Errorf("a stalled request got a verdict: %q", rest)
			}
			t.Logf("closed after %v: %q", time.Since(start).Round(time.Millisecond), firstLineOf(rest))
		})
	}
}

func firstLineOf(b []byte) string {
	l, _, _ := strings.Cut(string(b), "\n")
	return l
}

// TestKeepAlive: many requests on one connection, as Dovecot's client
// sends them, each answered in order.
func TestKeepAlive(t *testing.T) {
	url := serve(t, &Server{Check: compile("", "imap: 127.0.0.2\n")})
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for i := range 20 {
		body := fmt.Sprintf(body23, fmt.Sprintf("127.0.0.%d", 1+i%2))
		fmt.Fprintf(c, "POST /?command=allow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := `{"status":0}`
		if i%2 == 1 {
			want = `{"status":-1,"msg":"Access denied."}`
		}
		if string(b) != want || resp.Close || resp.ContentLength != int64(len(want)) {
			t.Fatalf("request %d: got %q (close %v, length %d), want %q", i, b, resp.Close, resp.ContentLength, want)
		}
	}
}

func TestHostsRequest(t *testing.T) {
	tests := []struct {
		name  string
		req   Request
		login bool
		want  string
	}{
		{"defaults", Request{Protocol: "imap", Remote: "10.0.0.1", Login: "bob"}, false, "imap 10.0.0.1:0 () invalid AddrPort unknown"},
		{"ports", Request{Protocol: "pop3", Remote: "2001:db8::1", RemotePort: "5000", Local: "127.0.0.1", LocalPort: "110"}, false, "pop3 [2001:db8::1]:5000 () 127.0.0.1:110 unknown"},
		{"login as user", Request{Protocol: "imap", Remote: "10.0.0.1", Login: "bob"}, true, "imap 10.0.0.1:0 () invalid AddrPort bob"},
		{"login as user, empty login", Request{Protocol: "imap", Remote: "10.0.0.1"}, true, "imap 10.0.0.1:0 () invalid AddrPort unknown"},
		{"unknown remote", Request{Protocol: "imap"}, false, "imap invalid AddrPort (unknown) invalid AddrPort unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := tt.req.HostsRequest(tt.login)
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("%s %v (%s) %v %s", h.Daemon, h.Client.Addr, h.Client.Name, h.Server.Addr, h.User)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusOption(t *testing.T) {
	tests := []struct {
		value  string
		n      int
		ok     bool
		hasErr bool
	}{
		{"TCPWRAPD_POLICY_STATUS 5", 5, true, false},
		{"TCPWRAPD_POLICY_STATUS  7 ", 7, true, false},
		{"TCPWRAPD_POLICY_STATUS 0", 0, true, true},
		{"TCPWRAPD_POLICY_STATUS -1", 0, true, true},
		{"TCPWRAPD_POLICY_STATUS", 0, true, true},
		{"TCPWRAPD_POLICY_STATUS 1 2", 0, true, true},
		{"TCPWRAPD_POLICY_STATUS 99999999999", 0, true, true},
		{"OTHER 5", 0, false, false},
	}
	for _, tt := range tests {
		n, ok, err := StatusOption(hostsrules.Option{Name: "setenv", Value: tt.value})
		if n != tt.n || ok != tt.ok || (err != nil) != tt.hasErr {
			t.Errorf("StatusOption(setenv %q) = %d, %v, %v; want %d, %v, error %v", tt.value, n, ok, err, tt.n, tt.ok, tt.hasErr)
		}
	}
	if _, ok, _ := StatusOption(hostsrules.Option{Name: "spawn", Value: "TCPWRAPD_POLICY_STATUS 5"}); ok {
		t.Error("spawn counted as the tarpit option")
	}
	// A denial never tarpits.
	if st, _ := Status(hostsrules.Decision{Verdict: hostsrules.Denied, Options: []hostsrules.Option{{Name: "setenv", Value: "TCPWRAPD_POLICY_STATUS 5"}}}); st != -1 {
		t.Errorf("Status of a denial with a tarpit option = %d, want -1", st)
	}
}

func TestReplyJSON(t *testing.T) {
	for _, tt := range []struct {
		r    Reply
		want string
	}{
		{Reply{}, `{"status":0}`},
		{Reply{Status: 3}, `{"status":3}`},
		{Reply{Status: -1, Msg: `say "no" <now> é 😀`}, `{"status":-1,"msg":"say \"no\" \u003cnow\u003e é 😀"}`},
	} {
		if got := string(tt.r.AppendJSON(nil)); got != tt.want {
			t.Errorf("got %s, want %s", got, tt.want)
		}
	}
	if got := policytext.Clean("a\tb\r\nc\x00\x7f" + strings.Repeat("x", 600)); len(got) != policytext.MaxLen || strings.ContainsAny(got, "\t\r\n\x00\x7f") {
		t.Errorf("cleanMessage: %q (%d bytes)", got, len(got))
	}
}

// TestServeStops: cancelling the context returns nil and closes the
// listener; an idle keep-alive connection is closed.
func TestServeStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Check: compile("", "")}).Serve(ctx, ln) }()
	c := &http.Client{}
	if code, _ := post(t, c, "http://"+ln.Addr().String()+"/?command=allow", fmt.Sprintf(body23, "127.0.0.1")); code != 200 {
		t.Fatalf("got %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

// TestServeHTTPAllocs: the handler allocates two things per allow
// request, one copy of the body's values and the check's lazy deadline,
// however many attributes Dovecot sends (the body buffer, the decoded
// request and the access question are pooled).
func TestServeHTTPAllocs(t *testing.T) {
	body := []byte(fmt.Sprintf(body23, "127.0.0.1"))
	s := &Server{Check: compile("", "ALL: 127.0.0.2\n")}
	r, err := http.NewRequest(http.MethodPost, "/?command=allow", nil)
	if err != nil {
		t.Fatal(err)
	}
	lb := &loopBody{}
	r.Body, r.ContentLength = lb, int64(len(body))
	w := &benchWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		lb.Reset(body)
		clear(w.h)
		w.out = w.out[:0]
		s.ServeHTTP(w, r)
	})
	if string(w.out) != `{"status":0}` || w.h.Get("Content-Type") != "application/json" {
		t.Fatalf("reply %q, headers %v", w.out, w.h)
	}
	if allocs > 2 {
		t.Errorf("%v allocations per request, want at most 2", allocs)
	}
}
