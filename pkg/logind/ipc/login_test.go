package ipc

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLoginReportRoundTrip: what AppendLogin writes, ParseLogin reads
// back; a user longer than MaxLoginUser is cut at a UTF-8 boundary.
func TestLoginReportRoundTrip(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	for _, l := range []Login{
		{ID: 1, User: "alice", Mech: "PLAIN", MailPID: 4321, Remote: netip.MustParseAddrPort("192.0.2.7:51000"), TLS: true},
		{ID: 7<<32 | 3, User: "bob@example.org", Mech: "SCRAM-SHA-256", MailPID: 0, Remote: netip.MustParseAddrPort("[2001:db8::1]:993")},
		{ID: 2, User: "carol", Mech: "LOGIN", MailPID: MaxMailPID},
		{ID: 3, User: long, Mech: "PLAIN", MailPID: 1},
	} {
		got, err := ParseLogin(AppendLogin(nil, l))
		if err != nil {
			t.Fatalf("%+v: %v", l, err)
		}
		want := l
		want.User = CutUser(l.User)
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
	if u := CutUser(long); len(u) != 254 || !ValidUser([]byte(u)) {
		t.Errorf("CutUser: %d bytes, valid %v; want 254 bytes of whole characters", len(u), ValidUser([]byte(u)))
	}
}

// TestParseLoginRefusesLies: a login report that is malformed or says
// what no honest login process says is refused, with what is wrong.
func TestParseLoginRefusesLies(t *testing.T) {
	ok := Login{ID: 1, User: "alice", Mech: "PLAIN", MailPID: 99}
	good := AppendLogin(nil, ok)
	with := func(f func(*Login)) []byte { l := ok; f(&l); return AppendLogin(nil, l) }
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", []byte{MsgLogin}, "malformed login report (1 bytes)"},
		{"fixed part cut", good[:20], "malformed login report (20 bytes)"},
		{"user cut", good[:len(good)-8], "(36 bytes, user of 5)"},
		{"trailing byte", append(append([]byte(nil), good...), 0), "mechanism of 5"},
		{"user length past the end", append(append([]byte(nil), good[:loginFixed-2]...), 200, 'a'), "user of 200"},
		{"not a login report", append([]byte{MsgState}, good[1:]...), "malformed login report"},
		{"unknown flag", func() []byte { b := append([]byte(nil), good...); b[9] = 0x82; return b }(), "unknown flags 0x82"},
		{"mail pid out of range", with(func(l *Login) { l.MailPID = MaxMailPID + 1 }), "mail pid 4194305"},
		{"empty user", with(func(l *Login) { l.User = "" }), "invalid user (0 bytes"},
		{"user with a newline", with(func(l *Login) { l.User = "alice\nINFO forged" }), "invalid user"},
		{"user with an escape", with(func(l *Login) { l.User = "\x1b[2Jalice" }), "invalid user"},
		{"user with DEL", with(func(l *Login) { l.User = "al\x7fice" }), "invalid user"},
		{"user with a C1 control", with(func(l *Login) { l.User = "al\u009bice" }), "invalid user"},
		{"user not UTF-8", with(func(l *Login) { l.User = "al\xffice" }), "invalid user"},
		{"empty mechanism", with(func(l *Login) { l.Mech = "" }), "invalid mechanism"},
		{"lower-case mechanism", with(func(l *Login) { l.Mech = "plain" }), "invalid mechanism"},
		{"mechanism too long", with(func(l *Login) { l.Mech = strings.Repeat("A", MaxLoginMech+1) }), "invalid mechanism"},
		{"mechanism with a space", with(func(l *Login) { l.Mech = "PLAIN X" }), "invalid mechanism"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseLogin(tt.b)
			if err == nil {
				t.Fatalf("accepted: %+v", l)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to say %q", err, tt.want)
			}
		})
	}
	if _, err := ParseLogin(good); err != nil {
		t.Errorf("the honest report: %v", err)
	}
}
