package master

// The pre-login protocols' commands are tested over net.Pipe with the
// transcripts in pkg/logind/{imap,pop3,submission,managesieve}/testdata;
// what needs a real login process (its deadline) is here.

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// step sends send (as is, nothing appended) and reads as many lines as
// want has ("EOF": the server closed the connection).
type step struct {
	send string
	want []string
}

// converse runs steps on c, stopping at the first difference.
func converse(t *testing.T, c *tclient, steps []step) {
	t.Helper()
	for i, s := range steps {
		if s.send != "" {
			c.c.Write([]byte(s.send))
		}
		got := make([]string, len(s.want))
		for j := range got {
			got[j] = c.line()
		}
		if d := cmp.Diff(s.want, got); d != "" {
			sent := s.send
			if len(sent) > 60 {
				sent = sent[:60] + "..."
			}
			t.Fatalf("step %d, sent %q: (-want +got)\n%s", i, sent, d)
		}
	}
}

// TestIMAPLiteralDeadline: the absolute pre-login deadline also ends a
// client that leaves a literal unfinished.
func TestIMAPLiteralDeadline(t *testing.T) {
	l := startLab(t, "imap-login", "login_prelogin_timeout = 1s", "service_count = 0\nprocess_min_avail = 1")
	for _, tc := range []struct{ name, send, cont string }{
		{"synchronizing, no octets", "a LOGIN {5}\r\n", "+ OK"},
		{"LITERAL+, some octets", "a LOGIN bench {9+}\r\nbench", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := l.dial("")
			start := time.Now()
			c.line()
			c.c.Write([]byte(tc.send))
			want := []string{"* BYE Disconnected for inactivity.", "EOF"}
			if tc.cont != "" {
				want = append([]string{tc.cont}, want...)
			}
			converse(t, c, []step{{"", want}})
			if e := time.Since(start); e > 1900*time.Millisecond {
				t.Errorf("closed %v after connecting, the deadline is 1s", e)
			}
		})
	}
}
