package authclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTabEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":             "",
		"plain":        "plain",
		"a\tb":         "a\x01tb",
		"\x01\r\n\x00": "\x011\x01r\x01n\x010",
	} {
		if got := TabEscape(in); got != want {
			t.Errorf("TabEscape(%q) = %q, want %q", in, got, want)
		}
		if got := TabUnescape(want); got != in {
			t.Errorf("TabUnescape(%q) = %q, want %q", want, got, in)
		}
	}
	// Dovecot's unescaper: 0x01 + other byte is that byte; trailing 0x01
	// is dropped.
	if got := TabUnescape("a\x01xb\x01"); got != "axb" {
		t.Errorf("TabUnescape lenient = %q", got)
	}
	if got := SplitLine(""); got != nil {
		t.Errorf("SplitLine(\"\") = %q", got)
	}
	if diff := cmp.Diff([]string{"OK", "1", "reason=a\tb", ""}, SplitLine("OK\t1\treason=a\x01tb\t")); diff != "" {
		t.Error(diff)
	}
}

func FuzzTabEscape(f *testing.F) {
	f.Add("a\tb\x01\r\n\x00")
	f.Fuzz(func(t *testing.T, s string) {
		e := TabEscape(s)
		if strings.ContainsAny(e, "\t\r\n\x00") {
			t.Fatalf("TabEscape(%q) = %q has separators", s, e)
		}
		if TabUnescape(e) != s {
			t.Fatalf("round trip %q -> %q -> %q", s, e, TabUnescape(e))
		}
	})
}

func TestAppendAuth(t *testing.T) {
	full := &Request{
		Mech: "PLAIN", Service: "imap", Session: "ses\tsion",
		Secured: true, TLS: true, ValidClientCert: true, NoPenalty: true, FinalRespOK: true, Debug: true,
		CertUsername: "cn", LocalAddr: netip.MustParseAddrPort("127.0.0.1:143"),
		RemoteAddr: netip.MustParseAddrPort("[::ffff:192.0.2.9]:5000"),
		// behind HAProxy: the TCP peer is the proxy
		RealLocalAddr: netip.MustParseAddrPort("127.0.0.1:10143"), RealRemoteAddr: netip.MustParseAddrPort("127.0.0.5:5000"),
		LocalName: "mail.example.org", ClientID: `"name" "x"`, ForwardFields: []string{"a=1", "b=x\ty"},
		SSLJA3Hash: "abc", Extra: []string{"k=v"},
		InitialResponse: "AGFsaWNlAHB3", HasInitialResponse: true,
	}
	for _, tc := range []struct {
		name string
		v    Version
		r    *Request
		want string
	}{
		{"minimal 1.2", Version12, &Request{Mech: "LOGIN", Service: "pop3"}, "AUTH\t7\tLOGIN\tservice=pop3\n"},
		{"minimal 1.3", Version13, &Request{Mech: "LOGIN", Service: "pop3"}, "AUTH\t7\tLOGIN\tprotocol=pop3\tfinal-resp-ok\n"},
		{"empty initial response", Version12, &Request{Mech: "PLAIN", Service: "imap", HasInitialResponse: true}, "AUTH\t7\tPLAIN\tservice=imap\tresp=\n"},
		{"real equals unreal: not sent", Version12, &Request{Mech: "PLAIN", Service: "imap",
			LocalAddr: netip.MustParseAddrPort("127.0.0.1:143"), RealLocalAddr: netip.MustParseAddrPort("127.0.0.1:143")},
			"AUTH\t7\tPLAIN\tservice=imap\tlip=127.0.0.1\tlport=143\n"},
		{"secured without TLS", Version12, &Request{Mech: "PLAIN", Service: "imap", Secured: true, TLS: false}, "AUTH\t7\tPLAIN\tservice=imap\tsecured\n"},
		{"every field 1.2", Version12, full, "AUTH\t7\tPLAIN\tservice=imap\tfinal-resp-ok\tsecured=tls\tno-penalty\tvalid-client-cert\tdebug" +
			"\tsession=ses\x01tsion\tcert_username=cn\tlip=127.0.0.1\trip=192.0.2.9\tlport=143\trport=5000" +
			"\treal_rip=127.0.0.5\treal_lport=10143\tlocal_name=mail.example.org\tclient_id=\"name\" \"x\"" +
			"\tforward_fields=a=1\x01tb=x\x011ty\tk=v\tresp=AGFsaWNlAHB3\n"},
		{"every field 1.3", Version13, full, "AUTH\t7\tPLAIN\tprotocol=imap\tfinal-resp-ok\tsecured=tls\tno-penalty\tvalid-client-cert\tdebug" +
			"\tsession=ses\x01tsion\tcert_username=cn\tlip=127.0.0.1\trip=192.0.2.9\tlport=143\trport=5000\tssl_ja3_hash=abc" +
			"\treal_rip=127.0.0.5\treal_lport=10143\tlocal_name=mail.example.org\tclient_id=\"name\" \"x\"" +
			"\tforward_fields=a=1\x01tb=x\x011ty\tk=v\tresp=AGFsaWNlAHB3\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendAuth(nil, 7, tc.v, tc.r)); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// loginRequest is a typical login's AUTH request.
var loginRequest = &Request{Mech: "PLAIN", Service: "imap", Session: "Lp4Jk1f6q7N/AAAB", Secured: true,
	LocalAddr: netip.MustParseAddrPort("127.0.0.1:143"), RemoteAddr: netip.MustParseAddrPort("[::ffff:127.0.0.1]:50123"),
	InitialResponse: "AGJlbmNoAGJlbmNocGFzcw==", HasInitialResponse: true}

// TestAppendAuthAllocs: a login's AUTH line is written into its buffer
// without other allocations (there were 4: the addresses and ports as
// strings).
func TestAppendAuthAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = appendAuth(make([]byte, 0, 256), 7, Version12, loginRequest) }); n != 0 {
		t.Errorf("%.0f allocations per AUTH line, want 0", n)
	}
}

func BenchmarkAppendAuth(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = appendAuth(make([]byte, 0, 256), 7, Version12, loginRequest)
	}
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    serverReply
		wantErr bool
	}{
		{line: "OK\t3\tuser=alice", want: serverReply{status: StatusOK, id: 3, args: []string{"user=alice"}}},
		{line: "CONT\t3\t", want: serverReply{status: StatusContinue, id: 3, challenge: "", args: []string{}}},
		{line: "CONT\t3\tVXNlcm5hbWU6", want: serverReply{status: StatusContinue, id: 3, challenge: "VXNlcm5hbWU6", args: []string{}}},
		{line: "FAIL\t9\tuser=a\x01tb\treason=no", want: serverReply{status: StatusFail, id: 9, args: []string{"user=a\tb", "reason=no"}}},
		{line: "", wantErr: true},
		{line: "CONT\t3", wantErr: true},
		{line: "OK", wantErr: true},
		{line: "OK\tx", wantErr: true},
		{line: "OK\t-1", wantErr: true},
		{line: "OK\t4294967296", wantErr: true},
		{line: "NOPE\t1", wantErr: true},
	} {
		got, err := parseReply(tc.line)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v", tc.line, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(serverReply{})); !tc.wantErr && diff != "" {
			t.Errorf("%q: %s", tc.line, diff)
		}
	}
}

func TestParseFields(t *testing.T) {
	r := parseFields([]string{"user=alice", "nologin", "reason=go away", "code=temp_fail", "code=authz_fail",
		"proxy", "host=10.0.0.1", "port=1143", "pass=pw", "starttls=any-cert", "proxy_timeout=5 secs",
		"proxy_refresh=30", "user_email=a@x", "forward_x=1", "postlogin_socket=script", "port=99999"}, true)
	want := &Reply{User: "alice", Nologin: true, Reason: "go away", Code: "temp_fail", Temp: true,
		Proxy: true, Host: "10.0.0.1", Port: 1143, Pass: "pw", SSL: true, StartTLS: true, SSLAnyCert: true,
		ProxyTimeout: "5 secs", ProxyRefresh: 30 * time.Second, PostloginSocket: "script",
		AltUsernames: []Field{{"user_email", "a@x"}}, Forward: []Field{{"forward_x", "1"}},
		Invalid: []string{"port=99999"}}
	want.Fields = r.Fields
	if diff := cmp.Diff(want, r); diff != "" {
		t.Error(diff)
	}
	// user_* only on success; temp from 2.3's synthetic field.
	f := parseFields([]string{"user_x=y", "temp"}, false)
	if len(f.AltUsernames) != 0 || !f.Temp {
		t.Errorf("FAIL fields: %+v", f)
	}
}

func TestHandshake(t *testing.T) {
	const ok = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tSCRAM-SHA-1-PLUS\tmutual-auth\tchannel-binding\nSPID\t12\nCUID\t3\nCOOKIE\t000102030405060708090a0b0c0d0e0f\nDONE"
	var h handshake
	for _, l := range strings.Split(ok, "\n") {
		done, err := h.feed(l)
		if err != nil {
			t.Fatal(err)
		}
		if done != (l == "DONE") {
			t.Fatalf("%q: done %v", l, done)
		}
	}
	want := Handshake{Version: Version12, ServerPID: 12, ConnectUID: 3,
		Mechs:  []Mech{{"PLAIN", MechPlaintext}, {"SCRAM-SHA-1-PLUS", MechMutualAuth | MechChannelBinding}},
		Cookie: [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}}
	if diff := cmp.Diff(want, h.hs); diff != "" {
		t.Error(diff)
	}
	for name, lines := range map[string]string{
		"no mechs":      "VERSION\t1\t2\nSPID\t1\nCOOKIE\t000102030405060708090a0b0c0d0e0f\nDONE",
		"no cookie":     "VERSION\t1\t2\nMECH\tPLAIN\nSPID\t1\nDONE",
		"major 2":       "VERSION\t2\t0",
		"bad cookie":    "COOKIE\tzz0102030405060708090a0b0c0d0e0f",
		"unknown":       "HELLO",
		"cookie twice":  "COOKIE\t000102030405060708090a0b0c0d0e0f\nCOOKIE\t000102030405060708090a0b0c0d0e0f",
		"no version":    "MECH\tPLAIN\nSPID\t1\nCOOKIE\t000102030405060708090a0b0c0d0e0f\nDONE",
		"spid negative": "SPID\t-1",
	} {
		var h handshake
		var err error
		for _, l := range strings.Split(lines, "\n") {
			if _, err = h.feed(l); err != nil {
				break
			}
		}
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Errorf("%s: err %v, want a ProtocolError", name, err)
		}
	}
}

// FuzzServerLine feeds arbitrary server lines to the handshake and reply
// parsers: they must never panic, and what parses re-parses the same.
func FuzzServerLine(f *testing.F) {
	for _, s := range []string{"OK\t1\tuser=a", "CONT\t2\t", "FAIL\t3\treason=x\x01t", "MECH\tPLAIN\tplaintext", "COOKIE\t" + strings.Repeat("ab", 16), "VERSION\t1\t3", "DONE", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var h handshake
		_, _ = h.feed(line)
		r, err := parseReply(line)
		if err != nil {
			return
		}
		// Re-encode and parse again.
		fields := []string{map[Status]string{StatusOK: "OK", StatusFail: "FAIL", StatusContinue: "CONT"}[r.status], fmt.Sprint(r.id)}
		if r.status == StatusContinue {
			fields = append(fields, r.challenge)
		}
		fields = append(fields, r.args...)
		again, err := parseReply(JoinLine(fields...))
		if err != nil || again.id != r.id || again.status != r.status || again.challenge != r.challenge || !cmp.Equal(again.args, r.args) {
			t.Fatalf("re-parse of %q: %+v %v, first %+v", line, again, err, r)
		}
		_ = parseFields(r.args, r.status == StatusOK)
	})
}

func TestSecretRedacted(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	s := Secret("hunter2")
	req := Request{Mech: "PLAIN", InitialResponse: s, HasInitialResponse: true}
	rep := parseFields([]string{"user=a", "pass=hunter2", "resp=hunter2"}, true)
	log.Info("x", "secret", s, "req", req, "reply", rep)
	out := buf.String() + fmt.Sprintf("%v %s %q %#v %x %+v", s, s, s, s, s, req)
	if strings.Contains(out, "hunter2") {
		t.Errorf("secret leaked: %s", out)
	}
	if !strings.Contains(out, "REDACTED") || s.Reveal() != "hunter2" {
		t.Errorf("no REDACTED / Reveal broken: %s", out)
	}
}

// fakeAuth is a scripted auth server on a unix socket. script gets each
// client line and returns the lines to send back.
func fakeAuth(t *testing.T, minor int, script func(line string) []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "login")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "VERSION\t1\t%d\nMECH\tPLAIN\tplaintext\nSPID\t77\nCUID\t1\nCOOKIE\t%s\nDONE\n", minor, strings.Repeat("0f", 16))
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					for _, out := range script(sc.Text()) {
						if out == "<close>" {
							return
						}
						fmt.Fprintf(c, "%s\n", out)
					}
				}
			}()
		}
	}()
	return path
}

func TestFakeServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Run("1.3 final response emulated", func(t *testing.T) {
		path := fakeAuth(t, 3, func(line string) []string {
			if strings.HasPrefix(line, "AUTH\t") {
				f := strings.Split(line, "\t")
				if f[3] != "protocol=pop3" {
					return []string{"FAIL\t" + f[1] + "\treason=bad " + f[3]}
				}
				return []string{"OK\t" + f[1] + "\tuser=u\tresp=ZmluYWw="}
			}
			return nil
		})
		c := New(Config{Path: path, Logger: slog.New(slog.DiscardHandler)})
		defer c.Close()
		hs, err := c.WaitReady(ctx)
		if err != nil || hs.Spoken != Version13 {
			t.Fatalf("%+v %v", hs, err)
		}
		// POP3 cannot carry a final response: it shows as a CONT.
		a, err := c.Begin(ctx, &Request{Mech: "PLAIN", Service: "pop3"})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := a.Next(ctx)
		if st.Status != StatusContinue || st.Challenge != "ZmluYWw=" {
			t.Fatalf("first step %+v", st)
		}
		if err := a.Continue(""); err != nil {
			t.Fatal(err)
		}
		st, _ = a.Next(ctx)
		if st.Status != StatusOK || st.Reply.User != "u" {
			t.Fatalf("second step %+v", st)
		}
		// IMAP can: OK at once.
		b, _ := c.Begin(ctx, &Request{Mech: "PLAIN", Service: "pop3", FinalRespOK: true})
		if st, _ := b.Next(ctx); st.Status != StatusOK || st.Reply.FinalResponse != "ZmluYWw=" {
			t.Fatalf("with FinalRespOK: %+v", st)
		}
	})
	t.Run("broken input reconnects, pending fail temp", func(t *testing.T) {
		path := fakeAuth(t, 2, func(line string) []string {
			if strings.HasPrefix(line, "AUTH\t") {
				if strings.Contains(line, "session=break") {
					return []string{"GARBAGE"}
				}
				f := strings.Split(line, "\t")
				return []string{"OK\t" + f[1] + "\tuser=u"}
			}
			return nil
		})
		c := New(Config{Path: path, ReconnectInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		defer c.Close()
		a, err := c.Begin(ctx, &Request{Mech: "PLAIN", Service: "imap", Session: "break"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Next(ctx)
		if err != nil || st.Status != StatusInternalFail || !st.Reply.Temp || st.Reply.Code != CodeTempFail {
			t.Fatalf("%+v %v", st, err)
		}
		b, err := c.Begin(ctx, &Request{Mech: "PLAIN", Service: "imap"})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := b.Next(ctx); err != nil || st.Status != StatusOK {
			t.Fatalf("after reconnect: %+v %v", st, err)
		}
	})
	t.Run("overlong line", func(t *testing.T) {
		path := fakeAuth(t, 2, func(line string) []string {
			// Only the AUTH gets the overlong answer: one to the
			// handshake's own lines would break the connection before
			// the request is sent, and it would wait for a reconnect.
			if !strings.HasPrefix(line, "AUTH\t") {
				return nil
			}
			return []string{"OK\t" + strings.Split(line, "\t")[1] + "\tuser=" + strings.Repeat("x", MaxLineLength)}
		})
		c := New(Config{Path: path, ReconnectInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
		defer c.Close()
		a, err := c.Begin(ctx, &Request{Mech: "PLAIN", Service: "imap", HasInitialResponse: true,
			InitialResponse: Secret(base64.StdEncoding.EncodeToString([]byte("\x00u\x00p")))})
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := a.Next(ctx); st.Status != StatusInternalFail {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c := New(Config{Path: filepath.Join(t.TempDir(), "none"), Logger: slog.New(slog.DiscardHandler)})
		c.Close()
		if _, err := c.Begin(ctx, &Request{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Begin after Close = %v", err)
		}
	})
}

// TestAppendIPAsBefore: appendIP and appendPort write what the strings
// the AUTH line was built from before (net_ip2addr's form) were.
func TestAppendIPAsBefore(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "::", "2001:db8::1", "fe80::1%eth0",
		"::ffff:192.0.2.9", "::ffff:0.0.0.0", "::ffff:192.0.2.9%eth0", "::192.0.2.9", "2001:db8:0:0:1:0:0:1", "64:ff9b::c000:209"} {
		a := netip.MustParseAddr(s)
		if got, want := string(appendIP(nil, "rip", a)), "\trip="+a.Unmap().WithZone("").String(); got != want {
			t.Errorf("%s: got %q, want %q", s, got, want)
		}
	}
	for _, p := range []uint16{1, 9, 10, 143, 65535} {
		if got, want := string(appendPort(nil, "lport", p)), "\tlport="+strconv.Itoa(int(p)); got != want {
			t.Errorf("%d: got %q, want %q", p, got, want)
		}
	}
}
