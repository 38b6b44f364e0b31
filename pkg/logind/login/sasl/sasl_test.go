package sasl

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
)

// reply builds an OK/FAIL reply from "key=value" fields as authclient
// interprets them (the keys Judge looks at).
func reply(fields ...string) *authclient.Reply {
	r := &authclient.Reply{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		r.Fields = append(r.Fields, authclient.Field{Key: k, Value: v})
		switch k {
		case "user":
			r.User = v
		case "nologin":
			r.Nologin = true
		case "proxy":
			r.Proxy = true
		case "reason":
			r.Reason = v
		case "host":
			r.Host = v
		case "destuser":
			r.Destuser = v
		case "port":
			p, _ := strconv.Atoi(v)
			r.Port = uint16(p)
		case "code":
			if r.Code == "" {
				r.Code = v
			}
		}
	}
	return r
}

// TestJudge: OK and FAIL fields as Dovecot's client_auth_handle_reply
// and sasl_callback read them (client-common-auth.c, 2.3.19.1).
func TestJudge(t *testing.T) {
	now := time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		success bool
		r       *authclient.Reply
		want    Verdict
		handOff bool
	}{
		{"OK", true, reply("user=alice"), Verdict{Result: Success}, true},
		{"FAIL", false, reply("user=alice"), Verdict{Result: Failed, Text: FailedText}, false},
		{"FAIL reason", false, reply("reason=Go away"), Verdict{Result: FailedReason, Text: "Go away"}, false},
		{"temp_fail", false, reply("code=temp_fail", "reason=ignored"), Verdict{Result: TempFail, Text: "Temporary authentication failure. [mail.example:2026-12-07 14:00:00]", Code: "temp_fail"}, false},
		{"lost connection (temp)", false, reply("temp", "code=temp_fail"), Verdict{Result: TempFail, Text: "Temporary authentication failure. [mail.example:2026-12-07 14:00:00]", Code: "temp_fail"}, false},
		{"authz_fail", false, reply("code=authz_fail"), Verdict{Result: AuthzFailed, Text: "Authorization failed", Code: "authz_fail"}, false},
		{"user_disabled", false, reply("code=user_disabled"), Verdict{Result: Failed, Text: FailedText, Code: "user_disabled"}, false},
		{"user_disabled reason", false, reply("code=user_disabled", "reason=Disabled"), Verdict{Result: FailedReason, Text: "Disabled", Code: "user_disabled"}, false},
		{"pass_expired", false, reply("code=pass_expired"), Verdict{Result: PassExpired, Text: FailedText, Code: "pass_expired"}, false},
		{"invalid_base64", false, reply("code=invalid_base64"), Verdict{Result: InvalidBase64, Text: FailedText, Code: "invalid_base64"}, false},
		{"unknown code", false, reply("code=whatever"), Verdict{Result: Failed, Text: FailedText}, false},
		{"OK nologin", true, reply("user=alice", "nologin"), Verdict{Result: LoginDisabled, Text: "Login disabled for this user", Code: CodeLoginDisabled}, false},
		{"OK nologin reason", true, reply("nologin", "reason=Not here"), Verdict{Result: LoginDisabled, Text: "Not here", Code: CodeLoginDisabled}, false},
		{"nologin before code wins", false, reply("nologin", "code=authz_fail"), Verdict{Result: LoginDisabled, Text: "Login disabled for this user", Code: CodeLoginDisabled}, false},
		{"OK proxy", true, reply("user=alice", "proxy", "host=192.0.2.1"), Verdict{Result: TempFail, Text: ProxyFailureText, Proxy: true}, false},
		{"FAIL proxy", false, reply("proxy", "host=192.0.2.1", "reason=x"), Verdict{Result: Failed, Text: FailedText}, false},
		{"referral", true, reply("user=alice", "nologin", "host=imap.example", "port=993"), Verdict{Result: ReferralNologin, Text: "Try this server instead.", Host: "imap.example", Port: 993, Destuser: "alice", Code: CodeLoginDisabled}, false},
		// Dovecot hands off an OK without nologin or proxy whatever
		// host= says (the referral is only read with nologin).
		{"OK with host", true, reply("user=alice", "host=imap.example", "destuser=bob"), Verdict{Result: Success}, true},
		{"FAIL referral", false, reply("host=imap.example", "reason=Moved"), Verdict{Result: ReferralNologin, Text: "Moved", Host: "imap.example"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, handOff := Judge(tt.r, tt.success, "mail.example", now)
			if diff := cmp.Diff(tt.want, v); diff != "" || handOff != tt.handOff {
				t.Errorf("handOff %v (want %v); (-want +got)\n%s", handOff, tt.handOff, diff)
			}
		})
	}
}

// TestMechanisms: what is advertised and accepted, as
// sasl_server_get_advertised_mechs and sasl_server_auth_begin decide.
func TestMechanisms(t *testing.T) {
	mechs := []authclient.Mech{{Name: "PLAIN", Flags: authclient.MechPlaintext}, {Name: "LOGIN", Flags: authclient.MechPlaintext},
		{Name: "SCRAM-SHA-256", Flags: authclient.MechMutualAuth}, {Name: "APOP", Flags: authclient.MechPrivate}}
	tests := []struct {
		name      string
		p         Policy
		want      []string
		plain     bool
		plainMech Result // Check("plain"): 0 accepted
	}{
		{"secured", Policy{Secured: true}, []string{"PLAIN", "LOGIN", "SCRAM-SHA-256"}, true, 0},
		{"not secured, plaintext disabled", Policy{}, []string{"SCRAM-SHA-256"}, false, MechSSLRequired},
		{"not secured, cleartext allowed", Policy{AllowCleartext: true}, []string{"PLAIN", "LOGIN", "SCRAM-SHA-256"}, true, 0},
		{"ssl = required before TLS", Policy{AllowCleartext: true, SSLRequired: true}, nil, false, 0},
		{"ssl = required, secured", Policy{Secured: true, SSLRequired: true}, []string{"PLAIN", "LOGIN", "SCRAM-SHA-256"}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Advertised(mechs, tt.p)); diff != "" {
				t.Errorf("Advertised (-want +got)\n%s", diff)
			}
			if got := tt.p.PlaintextAllowed(); got != tt.plain {
				t.Errorf("PlaintextAllowed %v", got)
			}
			name, v, ok := Check(mechs, "plain", tt.p)
			if ok != (tt.plainMech == 0) || v.Result != tt.plainMech || (ok && name != "PLAIN") {
				t.Errorf("Check(plain) = %q, %+v, %v", name, v, ok)
			}
		})
	}
	anon := append(mechs, authclient.Mech{Name: "ANONYMOUS", Flags: authclient.MechAnonymous})
	if got := Advertised(anon, Policy{Secured: true, NoAnonymous: true}); len(got) != 3 {
		t.Errorf("submission advertises %q", got)
	}
	if _, v, ok := Check(anon, "anonymous", Policy{Secured: true, NoAnonymous: true}); ok || v.Result != MechInvalid {
		t.Errorf("submission accepts ANONYMOUS: %+v", v)
	}
	for _, m := range []string{"APOP", "CRAM-MD5"} {
		if _, v, ok := Check(mechs, m, Policy{Secured: true}); ok || v.Result != MechInvalid || v.Text != UnsupportedMechText {
			t.Errorf("Check(%s) = %+v, %v", m, v, ok)
		}
	}
}

// TestExtraReason: the parenthesised part of "Disconnected: ..." lines
// (client_get_extra_disconnect_reason).
func TestExtraReason(t *testing.T) {
	created := time.Unix(1000, 0)
	now := created.Add(7 * time.Second)
	started := created.Add(2 * time.Second)
	tests := []struct {
		name string
		s    State
		want string
	}{
		{"before auth was ready", State{}, "(disconnected before auth was ready, waited 7 secs)"},
		{"no attempts", State{AuthReady: true}, "(no auth attempts in 7 secs)"},
		{"SASL unfinished", State{AuthReady: true, Attempts: 1, FirstStarted: started, Waiting: true}, "(client didn't finish SASL auth, waited 5 secs)"},
		{"authenticating", State{AuthReady: true, Attempts: 1, FirstStarted: started, Requesting: true}, "(disconnected while authenticating, waited 5 secs)"},
		{"finishing", State{AuthReady: true, Attempts: 1, FirstStarted: started, Finishing: true}, "(disconnected while finishing login, waited 5 secs)"},
		{"aborted", State{AuthReady: true, Attempts: 1, FirstStarted: started, Aborted: true}, "(aborted authentication)"},
		{"comm failure", State{AuthReady: true, Attempts: 2, FirstStarted: started, CommFail: true, LastFail: "temp_fail"}, "(auth process communication failure)"},
		{"internal failure", State{AuthReady: true, Attempts: 1, Successes: 1, FirstStarted: started}, "(internal failure, 1 successful auths)"},
		{"auth failed", State{AuthReady: true, Attempts: 3, FirstStarted: started}, "(auth failed, 3 attempts in 5 secs)"},
		{"authz", State{AuthReady: true, Attempts: 2, FirstStarted: started, LastFail: authclient.CodeAuthzFailed}, "(authorization failed, 2 attempts in 5 secs)"},
		{"temp", State{AuthReady: true, Attempts: 1, FirstStarted: started, LastFail: authclient.CodeTempFail}, "(auth service reported temporary failure)"},
		{"plaintext", State{AuthReady: true, Attempts: 1, LastFail: CodeMechSSLRequired}, "(tried to use disallowed plaintext auth)"},
		{"mech", State{AuthReady: true, Attempts: 1, FirstStarted: started, LastFail: CodeMechInvalid}, "(tried to use unsupported auth mechanism)"},
		{"login disabled", State{AuthReady: true, Attempts: 1, Successes: 0, FirstStarted: started, LastFail: CodeLoginDisabled}, "(login disabled)"},
	}
	for _, tt := range tests {
		if got := tt.s.ExtraReason(created, now, true); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestElements: Dovecot 2.3's default login_log_format_elements.
func TestElements(t *testing.T) {
	tests := []struct {
		e    Elements
		want string
	}{
		{Elements{RemoteIP: "192.0.2.1", LocalIP: "192.0.2.2", Session: "S"}, "user=<>, rip=192.0.2.1, lip=192.0.2.2, session=<S>"},
		{Elements{User: "alice", Mech: "PLAIN", RemoteIP: "127.0.0.1", LocalIP: "127.0.0.1", MailPID: 42, Conn: "secured", Session: "S"},
			"user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=42, secured, session=<S>"},
		{Elements{User: "alice", Mech: "PLAIN", RemoteIP: "::1", LocalIP: "::1", MailPID: 7, Conn: "TLS", Session: "S"},
			"user=<alice>, method=PLAIN, rip=::1, lip=::1, mpid=7, TLS, session=<S>"},
		{Elements{User: "u", RemoteIP: "?", LocalIP: "?", MailPID: 4294967295, Session: ""},
			"user=<u>, rip=?, lip=?, mpid=4294967295, session=<>"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("%q, want %q", got, tt.want)
		}
	}
}

// loginElements are a typical Login line's elements.
var loginElements = Elements{User: "bench", Mech: "PLAIN", RemoteIP: "127.0.0.1", LocalIP: "127.0.0.1", MailPID: 123456,
	Conn: "TLS", Session: "Lp4Jk1f6q7N/AAAB"}

// TestElementsAllocs: a login line's elements are built in one
// allocation (there were 11: the parts, their concatenations, Sprintf
// and Join).
func TestElementsAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = loginElements.String() }); n > 1 {
		t.Errorf("%.0f allocations per String, want 1", n)
	}
}

func BenchmarkElementsString(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = loginElements.String()
	}
}

func TestBase64Chars(t *testing.T) {
	tests := []struct {
		resp string
		want bool
	}{
		{"", true},
		{"YWxpY2U=", true},
		{"YWxpY2U", true}, // malformed, but auth's to say
		{"a+/=9Z", true},
		{" YWxpY2U=", false},
		{"YWxp Y2U=", false},
		{"YWxpY2U=\t", false},
		{"a\x01b=", false},
		{"!!!", false},
		{"YWxp\x00", false},
		{"YWxp\xc3\xa9", false},
	}
	for _, tt := range tests {
		if got := Base64Chars(tt.resp); got != tt.want {
			t.Errorf("Base64Chars(%q) = %v, want %v", tt.resp, got, tt.want)
		}
	}
}

// TestReferralURL checks the referral URL as imap_url_create writes it:
// the user path-escaped, the port only when it is not 143.
func TestReferralURL(t *testing.T) {
	tests := []struct {
		name string
		v    Verdict
		want string
	}{
		{"host only", Verdict{Host: "mail.example"}, "imap://;AUTH=PLAIN@mail.example/"},
		{"port 143", Verdict{Host: "mail.example", Port: 143}, "imap://;AUTH=PLAIN@mail.example/"},
		{"other port", Verdict{Host: "10.0.0.2", Port: 1143}, "imap://;AUTH=PLAIN@10.0.0.2:1143/"},
		{"destuser", Verdict{Host: "h", Destuser: "a b/c"}, "imap://a%20b%2Fc;AUTH=PLAIN@h/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.ReferralURL("PLAIN"); got != tt.want {
				t.Errorf("ReferralURL = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPlainResponse checks PLAIN's "\0user\0pass" in base64.
func TestPlainResponse(t *testing.T) {
	if got, want := PlainResponse("alice", "pw"), "AGFsaWNlAHB3"; got != want {
		t.Errorf("PlainResponse = %q, want %q", got, want)
	}
}

// elementsBefore is Elements.String as it was before it was built in
// one allocation (e92119f), the reference TestElementsAsBefore compares
// with.
func elementsBefore(e Elements) string {
	parts := []string{"user=<" + e.User + ">"}
	if e.Mech != "" {
		parts = append(parts, "method="+e.Mech)
	}
	parts = append(parts, "rip="+e.RemoteIP, "lip="+e.LocalIP)
	if e.MailPID != 0 {
		parts = append(parts, fmt.Sprintf("mpid=%d", e.MailPID))
	}
	if e.Conn != "" {
		parts = append(parts, e.Conn)
	}
	parts = append(parts, "session=<"+e.Session+">")
	return strings.Join(parts, ", ")
}

// TestElementsAsBefore: every combination of empty and set elements
// (and mail pids of every length) gives the line it gave before.
func TestElementsAsBefore(t *testing.T) {
	for _, user := range []string{"", "alice", "a, b>"} {
		for _, mech := range []string{"", "SCRAM-SHA-256"} {
			for _, ip := range []string{"", "?", "2001:db8::1"} {
				for _, pid := range []uint32{0, 1, 9, 10, 99999, 1 << 31, 4294967295} {
					for _, conn := range []string{"", "TLS", "secured"} {
						for _, session := range []string{"", "Lp4Jk1f6q7N/AAAB"} {
							e := Elements{User: user, Mech: mech, RemoteIP: ip, LocalIP: "127.0.0.1", MailPID: pid, Conn: conn, Session: session}
							if got, want := e.String(), elementsBefore(e); got != want {
								t.Errorf("%+v:\ngot  %q\nwant %q", e, got, want)
							}
						}
					}
				}
			}
		}
	}
}
