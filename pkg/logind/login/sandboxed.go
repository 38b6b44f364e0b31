package login

import (
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/sandbox"
)

// Sandbox applies a login process's restrictions (package sandbox,
// docs/loginsvc.md, "Sandbox") before it serves.
func Sandbox(in *ipc.Settings) error { return sandbox.Apply(in, startPPID) }

// ErrSupervisorGone is returned by the sandbox when the supervisor died
// before the login process could set its parent-death signal again.
var ErrSupervisorGone = sandbox.ErrSupervisorGone

// startPPID is the login process's parent (the supervisor) as it was at
// start; 0 until Main records it.
var startPPID int
