// Command loginsvc will be the login-process supervisor (Dovecot's
// high-security and high-performance modes). It is not implemented yet:
// it says so and exits 1.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "loginsvc: not implemented yet (see the loginsvc issue); use Dovecot's own login processes with tcpwrapd")
	os.Exit(1)
}
