package pop3_test

import (
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/logintest"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/pop3"
)

// TestTranscripts runs the sessions in testdata/*.txtar over net.Pipe,
// authenticating through logintest.FakeAuth (go test -run Transcripts
// -update rewrites their server sections).
func TestTranscripts(t *testing.T) {
	logintest.AuthTranscripts(t, withAuth, "testdata/*.txtar")
}

// FuzzSession: any input ends a session without a panic or a hang.
func FuzzSession(f *testing.F) {
	logintest.Fuzz(f, withAuth, "USER alice\r\nPASS secret\r\nSTAT\r\n", "AUTH PLAIN\r\n*\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n")
}

// withAuth is the protocol authenticating through auth's fake.
func withAuth(auth func(*login.Client) login.Authenticator) login.Protocol {
	return pop3.Protocol{Auth: auth}
}
