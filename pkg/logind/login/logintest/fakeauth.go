package logintest

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// FakeAuth is a scripted stand-in for Dovecot's auth behind a Client, for
// the protocols' transcript tests: it words nothing itself (the outcomes
// carry Dovecot's texts) and shows what a hand-off would send.
//
// Mechanisms are PLAIN and LOGIN (both plaintext), advertised and usable
// only while plaintext authentication is allowed (Plaintext). Users, by
// name: alice with the password "secret" logs in; temp fails
// temporarily; disabled has login disabled; inuse fails with the reason
// "[IN-USE] Mailbox is locked."; everyone else fails. A successful
// authentication writes the line
//
//	(handoff prefix="..." input="...")
//
// to the client, with the prefix and the buffered input the hand-off
// would pass on (Go-quoted), and ends the session.
type FakeAuth struct {
	// Plaintext is what PlaintextAllowed answers.
	Plaintext bool
	c         *login.Client
	in        *input.Buffer // the session's input, set by the wrapper
}

// Mechanisms lists PLAIN and LOGIN where plaintext is allowed.
func (f *FakeAuth) Mechanisms() []string {
	if !f.Plaintext {
		return nil
	}
	return []string{"PLAIN", "LOGIN"}
}

// PlaintextAllowed reports Plaintext.
func (f *FakeAuth) PlaintextAllowed() bool { return f.Plaintext }

// PlaintextRefused is the refusal where plaintext is not allowed.
func (f *FakeAuth) PlaintextRefused(string) login.AuthOutcome {
	return login.AuthOutcome{Result: login.AuthMechSSLRequired, Text: "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."}
}

// LoginPlain checks user and pass.
func (f *FakeAuth) LoginPlain(user, pass string, prefix []byte) login.AuthOutcome {
	if !f.Plaintext {
		return f.PlaintextRefused(user)
	}
	return f.check(user, pass, prefix)
}

// Authenticate runs PLAIN (one empty challenge without an initial
// response) or LOGIN (the user name and password challenges).
func (f *FakeAuth) Authenticate(mech, ir string, hasIR bool, io login.AuthIO, prefix []byte) login.AuthOutcome {
	mech = strings.ToUpper(mech)
	if mech != "PLAIN" && mech != "LOGIN" {
		return login.AuthOutcome{Result: login.AuthMechInvalid, Text: "Unsupported authentication mechanism."}
	}
	if !f.Plaintext {
		return login.AuthOutcome{Result: login.AuthMechSSLRequired, Text: "Plaintext authentication disabled."}
	}
	var resps []string
	if hasIR && ir != "=" {
		resps = append(resps, ir)
	} else if hasIR {
		resps = append(resps, "")
	}
	challenges := []string{""}
	if mech == "LOGIN" {
		challenges = []string{"VXNlcm5hbWU6", "UGFzc3dvcmQ6"}
	}
	for len(resps) < len(challenges) {
		f.c.Queue(io.Challenge(challenges[len(resps)]))
		r, cancel, err := io.Response(f.in)
		if err != nil {
			return login.AuthOutcome{Result: login.AuthFailed, Text: "Authentication failed.", End: login.Ending{Why: "Connection closed", Reason: ipc.CloseNormal}}
		}
		if cancel {
			return login.AuthOutcome{Result: login.AuthAborted, Text: "Authentication aborted by client."}
		}
		resps = append(resps, r)
	}
	var dec []string
	for i, r := range resps {
		b, err := base64.StdEncoding.DecodeString(r)
		if err != nil {
			// Dovecot's auth fails it with a reason.
			text := "Invalid base64 in response"
			if i == 0 && hasIR {
				text = "Invalid base64 data in initial response"
			}
			return login.AuthOutcome{Result: login.AuthFailedReason, Text: text}
		}
		dec = append(dec, string(b))
	}
	if mech == "LOGIN" {
		return f.check(dec[0], dec[1], prefix)
	}
	p := strings.Split(dec[0], "\x00")
	if len(p) != 3 {
		return login.AuthOutcome{Result: login.AuthFailed, Text: "Authentication failed."}
	}
	return f.check(p[1], p[2], prefix)
}

func (f *FakeAuth) check(user, pass string, prefix []byte) login.AuthOutcome {
	switch {
	case user == "alice" && pass == "secret":
		f.c.Queue(fmt.Sprintf("(handoff prefix=%q input=%q)\r\n", prefix, f.in.Data()))
		return login.AuthOutcome{Result: login.AuthSuccess, End: login.Ending{Why: "Login", Reason: ipc.CloseNormal}}
	case user == "temp":
		return login.AuthOutcome{Result: login.AuthTempFail, Text: "Temporary authentication failure."}
	case user == "disabled":
		return login.AuthOutcome{Result: login.AuthLoginDisabled, Text: "Login disabled for this user"}
	case user == "inuse":
		return login.AuthOutcome{Result: login.AuthFailedReason, Text: "[IN-USE] Mailbox is locked."}
	}
	return login.AuthOutcome{Result: login.AuthFailed, Text: "Authentication failed."}
}

// AuthTranscripts is Transcripts for a protocol that authenticates
// through a FakeAuth: mk builds the protocol with the given Auth
// factory. Plaintext authentication is allowed unless the file's comment
// has a line "plaintext: no".
func AuthTranscripts(t *testing.T, mk func(auth func(*login.Client) login.Authenticator) login.Protocol, pattern string) {
	transcripts(t, pattern, func(comment []byte) login.Protocol {
		fake := &FakeAuth{Plaintext: !strings.Contains(string(comment), "\nplaintext: no\n") && !strings.HasPrefix(string(comment), "plaintext: no\n")}
		p := mk(func(c *login.Client) login.Authenticator {
			fake.c = c
			return fake
		})
		return inputRecorder{p, fake}
	})
}

// inputRecorder gives the fake the session's input.
type inputRecorder struct {
	login.Protocol
	fake *FakeAuth
}

func (p inputRecorder) NewSession(c *login.Client) login.Session {
	return recordingSession{p.Protocol.NewSession(c), p.fake}
}

type recordingSession struct {
	login.Session
	fake *FakeAuth
}

func (s recordingSession) AfterTLS() string {
	if g, ok := s.Session.(login.TLSGreeter); ok {
		return g.AfterTLS()
	}
	return ""
}

func (s recordingSession) Next(in *input.Buffer) (string, login.Ending, error) {
	s.fake.in = in
	return s.Session.Next(in)
}
