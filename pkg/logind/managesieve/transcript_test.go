package managesieve_test

import (
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/logintest"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/managesieve"
)

// TestTranscripts runs the sessions in testdata/*.txtar over net.Pipe,
// authenticating through logintest.FakeAuth (go test -run Transcripts
// -update rewrites their server sections).
func TestTranscripts(t *testing.T) {
	logintest.AuthTranscripts(t, withAuth, "testdata/*.txtar")
}

// FuzzSession: any input ends a session without a panic or a hang.
func FuzzSession(f *testing.F) {
	logintest.Fuzz(f, withAuth, "AUTHENTICATE \"PLAIN\" {20+}\r\nAGFsaWNlAHNlY3JldA==\r\nLISTSCRIPTS\r\n", "AUTHENTICATE \"PLAIN\"\r\n\"a\\\\b\" x\r\nNOOP \"t\"\r\nAUTHENTICATE {99999}\r\n")
}

// withAuth is the protocol authenticating through auth's fake.
func withAuth(auth func(*login.Client) login.Authenticator) login.Protocol {
	return managesieve.Protocol{Auth: auth}
}
