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
	logintest.AuthTranscripts(t, func(auth func(*login.Client) login.Authenticator) login.Protocol {
		return managesieve.Protocol{Auth: auth}
	}, "testdata/*.txtar")
}
