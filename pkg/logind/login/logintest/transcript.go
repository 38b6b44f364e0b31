package logintest

import (
	"bytes"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
)

// update makes Transcripts rewrite each file's server section with what
// the server said (go test -run Transcripts -update).
var update = flag.Bool("update", false, "rewrite the server section of the transcript files")

// Transcript settings: the greeting and host name every transcript's
// session gets.
const (
	Greeting = "loginsvc ready."
	Hostname = "mail.example.org"
)

// Transcripts runs p over net.Pipe (login.ServeConn) for each file that
// pattern matches (testdata/*.txtar), as go/printer's golden tests do.
// A file is in txtar format: a comment saying what it shows, then a
// "-- client --" section with the lines the client sends (pipelined,
// each ended with CRLF; after a line "\" the rest of the section is sent
// as it is, but for its last LF: bytes the lines cannot show), and a "-- server --" section with
// the lines the server must answer, greeting included, until it ends
// the session (so a transcript ends with LOGOUT, QUIT or an error that
// ends it). With -update the server section is rewritten.
func Transcripts(t *testing.T, p login.Protocol, pattern string) {
	transcripts(t, pattern, func([]byte) login.Protocol { return p })
}

// transcripts runs each file with the protocol mk returns for its
// comment.
func transcripts(t *testing.T, pattern string, mk func(comment []byte) login.Protocol) {
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts %s: %v", pattern, err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			a := parseTxtar(data)
			client, ok := a.section("client")
			if !ok {
				t.Fatal(`no "-- client --" section`)
			}
			got := converse(t, mk(a.comment), clientBytes(client))
			if *update {
				a.set("server", got)
				if err := os.WriteFile(file, a.format(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, _ := a.section("server")
			if string(want) != got {
				t.Errorf("server said:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// clientBytes is what the client section sends.
func clientBytes(sec []byte) []byte {
	var b bytes.Buffer
	lines := strings.SplitAfter(string(sec), "\n")
	for i, l := range lines {
		if l == "\\\n" {
			b.WriteString(strings.TrimSuffix(strings.Join(lines[i+1:], ""), "\n"))
			break
		}
		if l = strings.TrimSuffix(l, "\n"); l != "" || i < len(lines)-1 {
			b.WriteString(l + "\r\n")
		}
	}
	return b.Bytes()
}

// converse sends in to a session of p and returns what the server says
// until it closes the connection, CRLF made LF.
func converse(t *testing.T, p login.Protocol, in []byte) string {
	srv, cli := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		login.ServeConn(p, srv, Greeting, Hostname, time.Minute)
	}()
	go cli.Write(in) // fails once the server has closed: it ended the session early
	cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(cli)
	cli.Close()
	if err != nil {
		t.Errorf("reading the server: %v (the transcript must end the session)", err)
	}
	<-done
	return strings.ReplaceAll(string(out), "\r\n", "\n")
}

// archive is a txtar archive: a comment and named files (sections).
type archive struct {
	comment []byte
	files   []file
}

type file struct {
	name string
	data []byte
}

func (a *archive) section(name string) ([]byte, bool) {
	for _, f := range a.files {
		if f.name == name {
			return f.data, true
		}
	}
	return nil, false
}

func (a *archive) set(name, data string) {
	for i := range a.files {
		if a.files[i].name == name {
			a.files[i].data = []byte(data)
			return
		}
	}
	a.files = append(a.files, file{name, []byte(data)})
}

// parseTxtar parses the txtar format (golang.org/x/tools/txtar): lines
// "-- NAME --" start a file; what comes before the first is the comment.
func parseTxtar(data []byte) *archive {
	a := &archive{}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if name, ok := marker(line); ok {
			a.files = append(a.files, file{name: name})
			continue
		}
		if n := len(a.files); n > 0 {
			a.files[n-1].data = append(a.files[n-1].data, line...)
		} else {
			a.comment = append(a.comment, line...)
		}
	}
	return a
}

func marker(line []byte) (string, bool) {
	l := strings.TrimRight(string(line), "\r\n")
	if !strings.HasPrefix(l, "-- ") || !strings.HasSuffix(l, " --") || len(l) < 6 {
		return "", false
	}
	return strings.TrimSpace(l[3 : len(l)-3]), true
}

func (a *archive) format() []byte {
	var b bytes.Buffer
	b.Write(a.comment)
	for _, f := range a.files {
		b.WriteString("-- " + f.name + " --\n")
		b.Write(f.data)
		if len(f.data) > 0 && f.data[len(f.data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
