package logind

import (
	"os"
	"os/exec"
	"syscall"
)

// execCmd re-runs the test binary as a helper child.
type execCmd struct{ env string }

func (c *execCmd) run() (string, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), c.env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
