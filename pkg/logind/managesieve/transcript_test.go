package managesieve_test

import (
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/logintest"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/managesieve"
)

// TestTranscripts runs the sessions in testdata/*.txtar over net.Pipe
// (go test -run Transcripts -update rewrites their server sections).
func TestTranscripts(t *testing.T) {
	logintest.Transcripts(t, managesieve.Protocol{}, "testdata/*.txtar")
}
