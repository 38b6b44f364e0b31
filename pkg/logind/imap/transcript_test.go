package imap_test

import (
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/imap"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/logintest"
)

// TestTranscripts runs the sessions in testdata/*.txtar over net.Pipe
// (go test -run Transcripts -update rewrites their server sections).
func TestTranscripts(t *testing.T) {
	logintest.Transcripts(t, imap.Protocol{}, "testdata/*.txtar")
}
