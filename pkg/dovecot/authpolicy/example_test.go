package authpolicy_test

import (
	"context"
	"fmt"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authpolicy"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// A Server over compiled rules; Decide is the path of every allow request
// (Serve answers them over HTTP).
func ExampleServer_Decide() {
	p := hostsrules.Compile(
		hostsrules.Source{Name: "hosts.allow", Data: []byte("imap: 192.0.2.0/24 : setenv TCPWRAPD_POLICY_STATUS 5\n")},
		hostsrules.Source{Name: "hosts.deny", Data: []byte("imap: 198.51.100.7\n")})
	s := &authpolicy.Server{Check: func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
		return p.Check(ctx, req, nil)
	}}
	for _, body := range []string{
		`{"login":"alice","protocol":"imap","pwhash":"0a1b","remote":"203.0.113.1","tls":false}`,
		`{"login":"alice","protocol":"imap","pwhash":"0a1b","remote":"198.51.100.7","tls":false}`,
		`{"login":"alice","protocol":"pop3","pwhash":"0a1b","remote":"198.51.100.7","tls":false}`,
		`{"login":"alice","protocol":"imap","pwhash":"0a1b","remote":"192.0.2.1","tls":false}`,
	} {
		r, _ := authpolicy.ParseRequest([]byte(body))
		hreq, _ := r.HostsRequest(false)
		reply, d := s.Decide(context.Background(), hreq)
		fmt.Printf("%s %s -> %s (%s)\n", r.Protocol, r.Remote, reply.AppendJSON(nil), d.Reason)
	}
	// Output:
	// imap 203.0.113.1 -> {"status":0} (default)
	// imap 198.51.100.7 -> {"status":-1,"msg":"Access denied."} (matched)
	// pop3 198.51.100.7 -> {"status":0} (default)
	// imap 192.0.2.1 -> {"status":5} (matched)
}
