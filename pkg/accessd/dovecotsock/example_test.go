package dovecotsock_test

import (
	"fmt"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
)

func ExampleDecodeRequest() {
	for _, msg := range []string{"imap\n", "imap\r\n", "\n", "imap", "imap\nextra"} {
		name, err := dovecotsock.DecodeRequest([]byte(msg))
		fmt.Printf("%q: %q %v\n", msg, name, err)
	}
	// Output:
	// "imap\n": "imap" <nil>
	// "imap\r\n": "imap\r" <nil>
	// "\n": "" 1 bytes: request too short
	// "imap": "" 4 bytes: request does not end in a newline
	// "imap\nextra": "" 10 bytes: request does not end in a newline
}
