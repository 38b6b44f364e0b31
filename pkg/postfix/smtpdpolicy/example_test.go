package smtpdpolicy_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/postfix/smtpdpolicy"
)

// ExampleServer_Decide replays a captured Postfix request through the
// code path of the live service and prints the reply bytes.
func ExampleServer_Decide() {
	p := hostsrules.Compile(
		hostsrules.Source{Name: "hosts.allow", Data: []byte("smtpd: 192.0.2.0/24\n")},
		hostsrules.Source{Name: "hosts.deny", Data: []byte("smtpd: ALL\n")})
	s := &smtpdpolicy.Server{
		Check: func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
			return p.Check(ctx, req, nil)
		},
		DenyMessage: "Mail from your network is not accepted here",
	}
	for _, client := range []string{"192.0.2.7", "198.51.100.9"} {
		block := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=" + client +
			"\nclient_name=unknown\nreverse_client_name=unknown\nserver_address=203.0.113.1\nserver_port=25\npolicy_context=\n\n"
		req, err := smtpdpolicy.ParseRequest([]byte(block), smtpdpolicy.Limits{})
		if err != nil {
			fmt.Println(err)
			return
		}
		hreq, err := req.HostsRequest("")
		if err != nil {
			fmt.Println(err)
			return
		}
		action, d, err := s.Decide(context.Background(), hreq)
		if err != nil {
			fmt.Println("no reply:", err)
			continue
		}
		fmt.Printf("%s %s:%d %q\n", client, d.File, d.Line, strings.TrimSpace(string(smtpdpolicy.AppendReply(nil, action))))
	}
	// Output:
	// 192.0.2.7 hosts.allow:1 "action=DUNNO"
	// 198.51.100.9 hosts.deny:1 "action=REJECT Mail from your network is not accepted here"
}
