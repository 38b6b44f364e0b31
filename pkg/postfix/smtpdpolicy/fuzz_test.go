package smtpdpolicy

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// FuzzReadRequest: no input crashes or hangs the attribute-block reader
// or the access question built from it; the reader never returns a block
// over its limits; every request that parses into a question gets a
// one-line ASCII action that is DUNNO or a REJECT.
func FuzzReadRequest(f *testing.F) {
	real, err := os.ReadFile("testdata/postfix37-rcpt.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(real),
		string(real) + string(real),
		"request=smtpd_access_policy\nclient_address=127.0.0.2\n\n",
		"request=smtpd_access_policy\r\nclient_address=::ffff:127.0.0.1\r\nclient_name=unknown\r\nreverse_client_name=x.test\r\n\r\n",
		"request=smtpd_access_policy\nclient_address=unknown\npolicy_context=submission\nserver_address=127.0.0.1\nserver_port=25\n\n",
		"request=smtpd_access_policy\n=x\n\n", "\n", "", "request=smtpd_access_policy\nclient_address=1.2.3.4",
	} {
		f.Add([]byte(s))
	}
	s := &Server{Check: compile("smtpd: 127.0.0.1\n", "ALL: 127.0.0.2 : banners /nonexistent\nsmtpd: PARANOID\nsubmission: ALL\n")}
	lim := Limits{MaxBytes: 4096, MaxAttributes: 50}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), 64)
		for range 8 {
			req, err := ReadRequest(r, lim)
			if err != nil {
				return
			}
			if req.Request != RequestType {
				t.Fatalf("request %q passed", req.Request)
			}
			h, err := req.HostsRequest("")
			if err != nil {
				continue
			}
			if strings.ContainsAny(h.Daemon, "/\x00") {
				t.Fatalf("daemon %q passed", h.Daemon)
			}
			action, _, err := s.Decide(context.Background(), h)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if action != ActionDunno && !strings.HasPrefix(action, "REJECT ") {
				t.Fatalf("action %q", action)
			}
			for i := 0; i < len(action); i++ {
				if action[i] < 0x20 || action[i] >= 0x7f {
					t.Fatalf("action %q has byte %#x", action, action[i])
				}
			}
		}
	})
}
