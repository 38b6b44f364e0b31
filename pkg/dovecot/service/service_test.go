package service

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEnvFrom(t *testing.T) {
	base := map[string]string{"GENERATION": "9", "CLIENT_LIMIT": "4", "SOCKET_COUNT": "1", "SERVICE_NAME": "tcpwrap", "LOG_SERVICE": "1"}
	tests := []struct {
		name    string
		set     map[string]string
		want    Env
		wantErr string
	}{
		{"minimal", nil, Env{Generation: 9, ClientLimit: 4, SocketCount: 1, ServiceName: "tcpwrap", SetUID: -1, SetGID: -1, LogService: true}, ""},
		{"restrict", map[string]string{"RESTRICT_SETUID": "102", "RESTRICT_SETGID": "105", "RESTRICT_SETEXTRAGROUPS": "7,8"},
			Env{Generation: 9, ClientLimit: 4, SocketCount: 1, ServiceName: "tcpwrap", SetUID: 102, SetGID: 105, ExtraGroups: []int{7, 8}, LogService: true}, ""},
		{"not dovecot", map[string]string{"GENERATION": ""}, Env{}, "not started by a Dovecot master"},
		{"no client limit", map[string]string{"CLIENT_LIMIT": ""}, Env{}, "CLIENT_LIMIT missing"},
		{"zero client limit", map[string]string{"CLIENT_LIMIT": "0"}, Env{}, `CLIENT_LIMIT: invalid value "0"`},
		{"bad uid", map[string]string{"RESTRICT_SETUID": "x"}, Env{}, `RESTRICT_SETUID: invalid value "x"`},
		{"bad generation", map[string]string{"GENERATION": "-1"}, Env{}, `GENERATION: invalid value "-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.set {
				env[k] = v
			}
			got, err := EnvFrom(func(k string) string { return env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := EnvFrom(func(string) string { return "" }); !errors.Is(err, ErrNotDovecot) {
		t.Errorf("empty environment: %v, want ErrNotDovecot", err)
	}
}

func TestDovecotLogHandler(t *testing.T) {
	var buf bytes.Buffer
	h := NewLogHandler(&buf, slog.LevelDebug)
	log := slog.New(h).With("service", "tcpwrap")
	log.Debug("d")
	log.Info("access refused", "daemon", "imap", "rule", "ALL: 127.0.0.2", "took", 1500*time.Millisecond)
	log.Warn("two\nlines", slog.Group("g", "k", "v w"))
	log.WithGroup("q").Error("bad", "err", errors.New(`x "y"`))
	pid := fmt.Sprint(os.Getpid())
	want := "\x01\x01" + pid + " d: service=tcpwrap\n" +
		"\x01\x02" + pid + ` access refused: service=tcpwrap daemon=imap rule="ALL: 127.0.0.2" took=1.5s` + "\n" +
		"\x01\x03" + pid + ` two\nlines: service=tcpwrap g.k="v w"` + "\n" +
		"\x01\x04" + pid + ` bad: service=tcpwrap q.err="x \"y\""` + "\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	buf.Reset()
	slog.New(NewLogHandler(&buf, nil)).Debug("hidden")
	if buf.Len() != 0 {
		t.Errorf("Debug logged at the default level: %q", buf.String())
	}
	buf.Reset()
	Fatal(&buf, "no\nway")
	if got := buf.String(); got != "\x01\x05"+pid+` no\nway`+"\n" {
		t.Errorf("Fatal wrote %q", got)
	}
}
