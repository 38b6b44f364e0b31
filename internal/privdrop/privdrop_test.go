package privdrop

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestDrop drops to nobody in a child process (the test binary re-run as
// helper) and checks that root cannot be regained.
func TestDrop(t *testing.T) {
	if os.Getenv("PRIVDROP_HELPER") == "1" {
		asRoot, err := Drop(Creds{UID: 65534, GID: 65534})
		if err != nil || asRoot {
			fmt.Printf("drop: asRoot=%v err=%v\n", asRoot, err)
			os.Exit(1)
		}
		groups, _ := syscall.Getgroups()
		err = syscall.Setuid(0)
		fmt.Printf("uid=%d euid=%d gid=%d groups=%v setuid0=%v checknoroot=%v\n",
			os.Getuid(), os.Geteuid(), os.Getgid(), groups, err, CheckNoRoot())
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDrop$")
	cmd.Env = append(os.Environ(), "PRIVDROP_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	want := "uid=65534 euid=65534 gid=65534 groups=[65534] setuid0=operation not permitted checknoroot=<nil>"
	if !strings.Contains(string(out), want) {
		t.Errorf("helper said %q, want %q", out, want)
	}
}

// TestDropNothing: without ids nothing changes, and asRoot tells whether
// the process is root.
func TestDropNothing(t *testing.T) {
	asRoot, err := Drop(Creds{UID: -1, GID: -1})
	if err != nil || asRoot != (os.Geteuid() == 0) {
		t.Errorf("Drop(-1, -1) = %v, %v; want %v, nil", asRoot, err, os.Geteuid() == 0)
	}
}

// TestCheckNoRootAsRoot: a root process can regain root.
func TestCheckNoRootAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if err := CheckNoRoot(); !errors.Is(err, ErrCanRegainRoot) {
		t.Errorf("CheckNoRoot as root = %v, want ErrCanRegainRoot", err)
	}
}
