package worker

import (
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
)

// TestDovecotSyslogFormat: each level as Dovecot's syslog handler writes
// it (info without a prefix; Warning:, Error:; no debug), at
// syslog_facility, from instance_name, without a pid; the relay's
// notices with their attributes.
func TestDovecotSyslogFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg, err := config.Parse("c.conf", []byte("login_log_path = "+path+"\ninstance_name = dovecot-test\nsyslog_facility = local3\n"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(dovecotHandler{dovecotLog(cfg), "pop3-login"}).With("service", "pop3-login", "pid", 7)
	log.Debug("not written")
	log.Info("Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=192.0.2.1")
	log.Warn("haproxy: Client not trusted (rip=192.0.2.9)")
	log.Error("access(tcpwrap): Invalid input")
	log.Error("crash output of the login process cut short", "lines_not_logged", 3)
	stamp := regexp.MustCompile(`^(<\d+>)[A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d `)
	var got []string
	buf := make([]byte, 4096)
	for range 4 {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, stamp.ReplaceAllString(string(buf[:n]), "$1"))
	}
	want := []string{ // local3 is 19<<3 = 152
		"<158>dovecot-test: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=192.0.2.1",
		"<156>dovecot-test: pop3-login: Warning: haproxy: Client not trusted (rip=192.0.2.9)",
		"<155>dovecot-test: pop3-login: Error: access(tcpwrap): Invalid input",
		"<155>dovecot-test: pop3-login: Error: crash output of the login process cut short lines_not_logged=3",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}
