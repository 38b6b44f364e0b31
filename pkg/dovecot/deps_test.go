package dovecot_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps: the Dovecot protocol packages import only the standard
// library and x/sys; nothing of loginsvc's process machinery.
func TestDeps(t *testing.T) {
	allowed := map[string]bool{"golang.org/x/sys/unix": true}
	for _, pkg := range []string{"./authclient", "./masterauth"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/tcpwrapd/tcpwrapd/pkg/dovecot/"+strings.TrimPrefix(pkg, "./")) || allowed[dep] {
				continue
			}
			t.Errorf("%s imports %s", pkg, dep)
		}
	}
}
