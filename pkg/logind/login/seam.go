package login

// Authenticator is what a Session authenticates through: its Client
// (auth.go), or in the protocols' transcript tests a fake
// (logintest.FakeAuth).
type Authenticator interface {
	// Mechanisms lists the SASL mechanisms that may be advertised now
	// (Client.Mechanisms: plaintext ones hidden by
	// disable_plaintext_auth, none with ssl = required before TLS).
	Mechanisms() []string
	// PlaintextAllowed reports whether plaintext authentication is
	// allowed on the connection now (Dovecot's
	// client_check_plaintext_auth passing).
	PlaintextAllowed() bool
	// PlaintextRefused counts a refused plaintext attempt by user and
	// returns its outcome (AuthSSLRequired or AuthMechSSLRequired).
	PlaintextRefused(user string) AuthOutcome
	// Authenticate runs one SASL exchange with Dovecot's auth: mech as
	// the client named it, ir the base64 initial response when hasIR,
	// challenges and responses through io; on success the client goes
	// to the post-login service with prefix (docs/dovecot-auth.md).
	Authenticate(mech, ir string, hasIR bool, io AuthIO, prefix []byte) AuthOutcome
	// LoginPlain is Authenticate with PLAIN and "\0user\0pass" (IMAP
	// LOGIN, POP3 USER/PASS).
	LoginPlain(user, pass string, prefix []byte) AuthOutcome
}
