package submission_test

import (
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/logintest"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/submission"
)

// TestTranscripts runs the sessions in testdata/*.txtar over net.Pipe,
// authenticating through logintest.FakeAuth (go test -run Transcripts
// -update rewrites their server sections).
func TestTranscripts(t *testing.T) {
	logintest.AuthTranscripts(t, withAuth, "testdata/*.txtar")
}

// FuzzSession: any input ends a session without a panic or a hang.
func FuzzSession(f *testing.F) {
	logintest.Fuzz(f, withAuth, "EHLO a.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b>\r\n", "AUTH LOGIN\r\n*\r\nX1\r\nRSET x\r\n")
}

// withAuth is the protocol authenticating through auth's fake.
func withAuth(auth func(*login.Client) login.Authenticator) login.Protocol {
	return submission.Protocol{Auth: auth}
}
