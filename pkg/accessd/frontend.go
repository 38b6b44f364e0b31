package accessd

import (
	"context"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// The front ends of the access checks, by the names the admin socket's
// statistics (StatsSnapshot.FrontEnds) and socket activation
// (FileDescriptorName=, see ActivationSockets) give them.
const (
	// FrontEndAccess is Dovecot 2.3's login access socket (package
	// dovecotsock, login_access_sockets).
	FrontEndAccess = "access"
	// FrontEndAuthPolicy is Dovecot's HTTP auth policy (package
	// dovecot/authpolicy, auth_policy_server_url; docs/authpolicy.md).
	FrontEndAuthPolicy = "authpolicy"
	// FrontEndPostfix is Postfix's SMTPD policy service (package
	// postfix/smtpdpolicy, check_policy_service; docs/postfix.md).
	FrontEndPostfix = "postfix"
)

// FrontEnd is a Checker as one front end uses it: the same rules, Env and
// logs, with its decisions and problems also counted under its name in
// the Checker's Stats and its log lines carrying the attribute front_end.
// It implements dovecotsock.Checker. It is safe for concurrent use.
type FrontEnd struct {
	c    *Checker
	name string
	st   *frontEndStats
}

// FrontEnd returns the Checker as the front end name uses it.
func (c *Checker) FrontEnd(name string) *FrontEnd {
	return &FrontEnd{c: c, name: name, st: c.Stats.frontEnd(name)}
}

func (f *FrontEnd) stats() *frontEndStats {
	if f == nil {
		return nil
	}
	return f.st
}

// Name returns the front end's name.
func (f *FrontEnd) Name() string { return f.name }

// Check is Checker.Check for this front end.
func (f *FrontEnd) Check(ctx context.Context, req *hostsrules.Request, clientFD int) hostsrules.Decision {
	return f.c.check(ctx, f, req, clientFD)
}

// CheckNoClient decides req for a front end that holds no client socket
// (Dovecot's auth policy, Postfix's policy service: the client is
// connected to another server). It is Check with clientFD -1, so the
// deciding rule's options act as wrapopts.Service says for that case:
// spawn and aclexec run with /dev/null as stdio, banners are written
// nowhere (the front end sends the banner's first line in its reply),
// keepalive and linger do nothing, and twist does not run its command
// (there is no service to replace) while the check is still denied.
func (f *FrontEnd) CheckNoClient(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
	return f.c.check(ctx, f, req, -1)
}

// Error counts one problem of the given kind, also under this front end.
func (f *FrontEnd) Error(kind string) { f.c.Stats.error(f.st, kind) }
