package worker

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
)

// TestLoginNoFile: a login process's RLIMIT_NOFILE allows for every
// client's socket plus, with login_access_sockets, its connection to the
// access socket, plus the reserve and the listeners, and at least for
// every client of the service's processes in flight at once to the
// post-login service (process_limit × client_limit: the kernel counts a
// user's descriptors in flight against the sender's limit); it is
// clamped to the inherited hard limit.
func TestLoginNoFile(t *testing.T) {
	for _, tt := range []struct {
		name        string
		global      string // login_access_sockets
		conf        string // the service's settings
		listeners   int
		hard        uint64
		want        uint64
		wantClamped bool
	}{
		// NoFileInFlightMin (more than process_limit 100, the default, ×
		// 1 client) + 64 + 1 listener.
		{"high-security", "", "service_count = 1", 1, 20000, 1089, false},
		{"high-security with access sockets", "tcpwrap", "service_count = 1", 1, 20000, 1089, false},
		{"high-security with TLS", "", "service_count = 1", 1, 20000, 1089, false},
		{"high-security benchmark", "", "service_count = 1\n process_limit = 1024", 1, 20000, 1089, false},
		{"high-security, 2000 processes", "", "service_count = 1\n process_limit = 2000", 1, 20000, 2065, false},
		{"high-security, one process", "", "service_count = 1\n process_limit = 1", 1, 20000, 1089, false},
		{"high-security, one process with TLS", "", "service_count = 1\n process_limit = 1", 1, 20000, 1089, false},
		{"high-security, hard limit low", "", "service_count = 1", 1, 500, 500, false},
		{"high-performance default", "", "service_count = 0", 2, 20000, 20000, false},
		{"high-performance, one process", "tcpwrapd/access", "service_count = 0\n process_limit = 1", 1, 20000, 2065, false},
		{"hp-idle benchmark", "", "service_count = 0\n client_limit = 9000\n process_limit = 6", 1, 20000, 20000, false},
		{"over the hard limit", "tcpwrap", "service_count = 0\n client_limit = 19000", 1, 20000, 20000, true},
		{"hard limit unknown", "tcpwrap", "service_count = 0\n client_limit = 19000", 1, 0, 38065, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("t.conf", []byte(fmt.Sprintf("login_access_sockets = %s\nservice imap-login {\n %s\n}\n", tt.global, tt.conf)))
			if err != nil {
				t.Fatal(err)
			}
			ssl := "no"
			if strings.HasSuffix(tt.name, "with TLS") {
				ssl = "yes"
			}
			got, clamped := NoFile(cfg.Service("imap-login"), ssl, tt.listeners, tt.hard)
			if got != tt.want || clamped != tt.wantClamped {
				t.Errorf("NoFile = %d, %v; want %d, %v", got, clamped, tt.want, tt.wantClamped)
			}
		})
	}
}
