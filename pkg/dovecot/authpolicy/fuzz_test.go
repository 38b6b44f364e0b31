package authpolicy

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// FuzzParseRequest: no body crashes the parser or the access question
// built from it, and every request that parses into a question gets a
// well-formed reply.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		fmt.Sprintf(body23, "127.0.0.1"),
		fmt.Sprintf(body24, "imap", "::1"),
		`{"protocol":"imap","remote":"192.0.2.12","local":"127.0.0.5","local_port":"143","remote_port":"1"}`,
		`{"login":"a","protocol":"pop3","remote":"127.0.0.2","success":false,"policy_reject":true,"tls":true}`,
		`{"a":{"b":"c"},"protocol":"imap"}`, `{}`, `[]`, `"x"`, `{"protocol":"\u0000"}`,
	} {
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
