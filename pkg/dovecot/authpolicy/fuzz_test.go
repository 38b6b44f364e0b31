package authpolicy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// flatSeeds are bodies for the fuzz tests: Dovecot's, and the edges of
// parseFlat's subset.
var flatSeeds = []string{
	fmt.Sprintf(body23, "127.0.0.1"),
	fmt.Sprintf(body24, "imap", "::1"),
	`{"protocol":"imap","remote":"192.0.2.12","local":"127.0.0.5","local_port":"143","remote_port":"1"}`,
	`{"login":"a","protocol":"pop3","remote":"127.0.0.2","success":false,"policy_reject":true,"tls":true}`,
	`{"a":{"b":"c"},"protocol":"imap"}`, `{}`, `[]`, `"x"`, `{"protocol":"\u0000"}`,
	` { "Protocol" : "imap" , "REMOTE":"::1" } `, `{"protocol":"imap","protocol":"pop3"}`,
	`{"tls":"yes"}`, `{"protocol":true}`, `{"success":null}`, `{"x":1,"protocol":"imap"}`,
	"{\"login\":\"\xff\"}", `{"login":"é"}`, `{"protocol":"imap"}x`, `{"protocol":"imap",}`,
}

// FuzzParseFlat: whatever parseFlat accepts, json.Unmarshal accepts and
// decodes into the same Request.
func FuzzParseFlat(f *testing.F) {
	for _, s := range flatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, shared, slow Request
		if !parseFlat(body, "", &fast) {
			return
		}
		// The values sliced from one copy of the body are the same.
		if !parseFlat(body, string(body), &shared) {
			t.Fatalf("parseFlat accepted %q only without its copy", body)
		}
		if diff := cmp.Diff(fast, shared); diff != "" {
			t.Fatalf("%q (-copies +shared):\n%s", body, diff)
		}
		if err := json.Unmarshal(body, &slow); err != nil {
			t.Fatalf("parseFlat accepted %q, json.Unmarshal: %v", body, err)
		}
		if diff := cmp.Diff(slow, fast); diff != "" {
			t.Fatalf("%q (-json +parseFlat):\n%s", body, diff)
		}
	})
}

// TestParseFlatSubset: Dovecot's bodies take the fast path, and the
// bodies outside the subset do not.
func TestParseFlatSubset(t *testing.T) {
	for _, tt := range []struct {
		body string
		fast bool
	}{
		{fmt.Sprintf(body23, "127.0.0.1"), true},
		{fmt.Sprintf(body24, "imap", "::1"), true},
		{`{"login":"a","protocol":"pop3","remote":"127.0.0.2","success":false,"policy_reject":true,"tls":true}`, true},
		{` { "x" : "y" , "protocol":"imap" } `, true},
		{`{}`, true},
		{`{"a":{"b":"c"},"protocol":"imap"}`, false}, // nested (2.3's "/" in an attribute name)
		{`{"login":"a\"b"}`, false},                  // an escape
		{`{"Protocol":"imap"}`, false},               // json matches keys case-insensitively
		{`{"protocol":true}`, false},                 // a type json refuses
		{`{"success":null}`, false},
		{`{"n":1}`, false},
		{"{\"login\":\"\xff\"}", false}, // invalid UTF-8, which json replaces
		{`{"protocol":"imap"}x`, false},
	} {
		var r Request
		if got := parseFlat([]byte(tt.body), tt.body, &r); got != tt.fast {
			t.Errorf("parseFlat(%s) = %v, want %v", tt.body, got, tt.fast)
		}
	}
}

// FuzzParseRequest: no body crashes the parser or the access question
// built from it, and every request that parses into a question gets a
// well-formed reply.
func FuzzParseRequest(f *testing.F) {
	for _, s := range flatSeeds {
		f.Add([]byte(s))
	}
	s := &Server{Check: compile("imap: 127.0.0.1 : setenv TCPWRAPD_POLICY_STATUS 3\n", "ALL: 127.0.0.2 : banners /nonexistent\nimap: unknown\n")}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRequest(body)
		if err != nil {
			return
		}
		h, err := r.HostsRequest(true)
		if err != nil {
			return
		}
		if strings.ContainsAny(h.Daemon, "/\x00") {
			t.Fatalf("daemon %q passed", h.Daemon)
		}
		reply, _ := s.Decide(context.Background(), h)
		if reply.Status < -1 || reply.Status > DefaultMaxStatus || (reply.Status < 0) != (reply.Msg != "") {
			t.Fatalf("reply %+v", reply)
		}
		if b := reply.AppendJSON(nil); !strings.HasPrefix(string(b), `{"status":`) {
			t.Fatalf("reply JSON %s", b)
		}
	})
}
