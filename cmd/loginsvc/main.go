// Command loginsvc supervises login processes for IMAP, POP3, submission
// and ManageSieve the way Dovecot 2.3's master runs imap-login and its
// siblings (high-security and high-performance modes), and is also the
// login process itself when started by the supervisor (docs/loginsvc.md).
//
// Usage: loginsvc [-F] [-c FILE] [-n | -a | -dovecot-conf VERSION]. Exit
// status 0, 1 on failure,
// 2 on bad usage.
package main

import (
	"os"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
)

func main() {
	if os.Getenv(ipc.LoginProcessEnv) == "1" {
		os.Exit(login.Main(protocols...))
	}
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}
