package login_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/imap"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/managesieve"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/pop3"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/submission"
)

// TestNotices checks each protocol's words for the process's notices as
// Dovecot 2.3.19.1's login processes (and Pigeonhole 0.5.19's) write
// them: client_notify_disconnect's goodbyes, and client_notify_status,
// which only imap-login implements.
func TestNotices(t *testing.T) {
	const internal = "Internal login failure. Refer to server log for more information."
	notices := []login.Notice{login.NoticeEvicted, login.NoticeTimeout, login.NoticeShutdown,
		login.NoticeInputFull, login.NoticeInternalError, login.NoticeAuthWaiting}
	for _, tc := range []struct {
		proto login.Protocol
		want  []string // in the order of notices
	}{
		{imap.Protocol{}, []string{"* BYE Connection queue full\r\n", "* BYE Disconnected for inactivity.\r\n",
			"* BYE Shutting down\r\n", "* BYE Input buffer full, aborting\r\n",
			"* BYE [UNAVAILABLE] " + internal + "\r\n", "* OK Waiting for authentication process to respond..\r\n"}},
		{pop3.Protocol{}, []string{"-ERR Connection queue full\r\n", "-ERR Disconnected for inactivity.\r\n",
			"-ERR Shutting down\r\n", "-ERR Input buffer full, aborting\r\n",
			"-ERR [SYS/TEMP] " + internal + "\r\n", ""}},
		{submission.Protocol{}, []string{"421 4.3.2 h Connection queue full\r\n", "421 4.4.2 h Disconnected for inactivity\r\n",
			"421 4.3.2 h Shutting down\r\n", "500 5.5.2 Line too long\r\n",
			"421 4.0.0 h " + internal + "\r\n", ""}},
		{managesieve.Protocol{}, []string{"BYE \"Connection queue full\"\r\n", "BYE \"Disconnected for inactivity.\"\r\n",
			"BYE (TRYLATER) \"Shutting down\"\r\n", "BYE \"Input buffer full, aborting\"\r\n",
			"BYE \"" + internal + "\"\r\n", ""}},
	} {
		t.Run(tc.proto.Name(), func(t *testing.T) {
			p := &capture{Protocol: tc.proto}
			srv, cli := net.Pipe()
			cli.Close() // the session ends at once; its Notice is asked afterwards
			login.ServeConnWith(p, srv, login.ServeOptions{Greeting: "ready", Host: "h", Timeout: time.Minute, Log: io.Discard})
			var got []string
			for _, n := range notices {
				got = append(got, p.s.Notice(n))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("notices (-want +got):\n%s", d)
			}
		})
	}
}
