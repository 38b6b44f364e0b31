package wrapopts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// A service binds a Service to each check's client socket (here none: -1)
// and waits for background commands before it exits.
func ExampleRunner_Service() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "out")

	p := hostsrules.Compile(
		hostsrules.Source{Name: "hosts.allow", Data: []byte("imap: ALL: setenv GREETING hello %d: spawn echo \"$GREETING\" > " + out + "\n")},
		hostsrules.Source{Name: "hosts.deny", State: hostsrules.FileMissing})
	r := &wrapopts.Runner{MaxBackground: 4}
	env := &hostsrules.Env{Effects: r.Service(-1, nil)}
	d := p.Check(context.Background(), &hostsrules.Request{Daemon: "imap"}, env)
	r.Wait()
	b, _ := os.ReadFile(out)
	fmt.Printf("%s, spawn wrote %q\n", d.Verdict, b)
	// Output: granted, spawn wrote "hello imap\n"
}
