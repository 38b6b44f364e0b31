package master

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// startStopped starts cmd and stops it at the end of the test: SIGTERM,
// then SIGKILL after grace; if the test failed, out is logged as what.
func startStopped(t *testing.T, cmd *exec.Cmd, grace time.Duration, what string, out *syncBuf) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s:\n%s", what, out.String())
		}
	})
}

// execCmd re-runs the test binary as a helper child.
type execCmd struct{ env string }

func (c *execCmd) run() (string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), c.env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
