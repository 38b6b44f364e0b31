package login

// Authenticator is what a Session authenticates through: its Client
// (auth.go), or in the protocols' transcript tests a fake
// (logintest.FakeAuth).
type Authenticator interface {
	Mechanisms() []string
	PlaintextAllowed() bool
	PlaintextRefused(user string) AuthOutcome
	Authenticate(mech, ir string, hasIR bool, io AuthIO, prefix []byte) AuthOutcome
	LoginPlain(user, pass string, prefix []byte) AuthOutcome
}
