// Command loginsvc supervises login processes for IMAP, POP3, submission
// and ManageSieve the way Dovecot 2.3's master runs imap-login and its
// siblings (high-security and high-performance modes), and is also the
// login process itself when started by the supervisor. See package
// github.com/tcpwrapd/tcpwrapd/pkg/logind.
//
// Usage: loginsvc [-F] [-c FILE] [-n | -a]. Exit status 0, 1 on failure,
// 2 on bad usage.
package main

import (
	"os"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind"
)

func main() {
	if os.Getenv(logind.LoginProcessEnv) == "1" {
		os.Exit(logind.LoginProcessMain())
	}
	os.Exit(logind.Main(os.Args, os.Stdout, os.Stderr))
}
