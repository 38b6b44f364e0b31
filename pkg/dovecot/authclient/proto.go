package authclient

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is an auth-client protocol version, major 1.
type Version struct{ Major, Minor uint }

var (
	// Version12 is the protocol Dovecot 2.3 speaks.
	Version12 = Version{1, 2}
	// Version13 is the protocol Dovecot 2.4 speaks.
	Version13 = Version{1, 3}
)

// String returns "1.2" or "1.3".
func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// is13 reports whether v uses the 1.3 request format.
func (v Version) is13() bool { return v.Minor >= 3 }

// MechFlags are a mechanism's security flags from its MECH line.
type MechFlags uint32

// Mechanism flags, with their names on the MECH line
// (auth-client-interface.h).
const (
	MechPrivate        MechFlags = 0x0001 // "private": never advertised (APOP)
	MechAnonymous      MechFlags = 0x0002 // "anonymous"
	MechPlaintext      MechFlags = 0x0004 // "plaintext": sends the password
	MechDictionary     MechFlags = 0x0008 // "dictionary"
	MechActive         MechFlags = 0x0010 // "active"
	MechForwardSecrecy MechFlags = 0x0020 // "forward-secrecy"
	MechMutualAuth     MechFlags = 0x0040 // "mutual-auth"
	MechAllowNULs      MechFlags = 0x0080 // "allow-nuls"
	MechChannelBinding MechFlags = 0x0100 // "channel-binding" (1.3)
)

var mechFlagNames = []struct {
	name string
	flag MechFlags
}{
	{"private", MechPrivate}, {"anonymous", MechAnonymous},
	{"plaintext", MechPlaintext}, {"dictionary", MechDictionary},
	{"active", MechActive}, {"forward-secrecy", MechForwardSecrecy},
	{"mutual-auth", MechMutualAuth}, {"allow-nuls", MechAllowNULs},
	{"channel-binding", MechChannelBinding},
}

// String lists the flags' names, space separated.
func (f MechFlags) String() string {
	var names []string
	for _, n := range mechFlagNames {
		if f&n.flag != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, " ")
}

// Mech is one mechanism the auth server offers.
type Mech struct {
	Name  string
	Flags MechFlags
}

// Handshake is what the server said while the connection was set up.
type Handshake struct {
	// Version is the server's protocol version.
	Version Version
	// Spoken is the version this client speaks on the connection.
	Spoken Version
	// Mechs are the mechanisms in the server's order.
	Mechs []Mech
	// ServerPID is the auth process's pid (SPID); the post-login side
	// checks it against the hand-off request's auth_pid.
	ServerPID uint32
	// ConnectUID is the server's id of the connection (CUID).
	ConnectUID uint32
	// Cookie is the connection's 16-byte secret (COOKIE), sent in the
	// hand-off request.
	Cookie [16]byte
}

// Mech returns the mechanism named name (case-insensitively).
func (h *Handshake) Mech(name string) (Mech, bool) {
	for _, m := range h.Mechs {
		if strings.EqualFold(m.Name, name) {
			return m, true
		}
	}
	return Mech{}, false
}

// ProtocolError is input from the server that breaks the protocol. The
// client drops the connection on it and reconnects.
type ProtocolError struct {
	Line   string // the line, cut to 200 bytes
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("auth server sent broken input: %s: %q", e.Reason, e.Line)
}

func protoErr(line, reason string) error {
	if len(line) > 200 {
		line = line[:200]
	}
	return &ProtocolError{Line: line, Reason: reason}
}

// handshake accumulates the server's handshake lines.
type handshake struct {
	hs        Handshake
	version   bool
	cookie    bool
	spid      bool
	cuid      bool
	sawDoneOK bool
}

// feed takes one handshake line. It returns true once DONE completed a
// valid handshake.
func (h *handshake) feed(line string) (bool, error) {
	args := SplitLine(line)
	if len(args) == 0 {
		return false, protoErr(line, "empty handshake line")
	}
	switch args[0] {
	case "VERSION":
		if len(args) < 3 {
			return false, protoErr(line, "invalid version line")
		}
		maj, err1 := parseUint(args[1])
		min, err2 := parseUint(args[2])
		if err1 != nil || err2 != nil {
			return false, protoErr(line, "invalid version line")
		}
		if maj != 1 {
			return false, protoErr(line, "incompatible major version")
		}
		h.hs.Version = Version{uint(maj), uint(min)}
		h.version = true
	case "MECH":
		if len(args) < 2 || args[1] == "" {
			return false, protoErr(line, "broken MECH line")
		}
		m := Mech{Name: args[1]}
		for _, a := range args[2:] {
			for _, n := range mechFlagNames {
				if a == n.name {
					m.Flags |= n.flag
				}
			}
		}
		h.hs.Mechs = append(h.hs.Mechs, m)
	case "SPID":
		if len(args) < 2 {
			return false, protoErr(line, "invalid SPID")
		}
		n, err := parseUint(args[1])
		if err != nil {
			return false, protoErr(line, "invalid SPID")
		}
		h.hs.ServerPID, h.spid = n, true
	case "CUID":
		if len(args) < 2 {
			return false, protoErr(line, "broken CUID line")
		}
		n, err := parseUint(args[1])
		if err != nil {
			return false, protoErr(line, "broken CUID line")
		}
		h.hs.ConnectUID, h.cuid = n, true
	case "COOKIE":
		if h.cookie {
			return false, protoErr(line, "cookie sent twice")
		}
		if len(args) < 2 || len(args[1]) != 32 {
			return false, protoErr(line, "invalid cookie")
		}
		if _, err := hex.Decode(h.hs.Cookie[:], []byte(args[1])); err != nil {
			return false, protoErr(line, "invalid cookie")
		}
		h.cookie = true
	case "DONE":
		switch {
		case !h.version:
			return false, protoErr(line, "no VERSION before DONE")
		case len(h.hs.Mechs) == 0:
			return false, protoErr(line, "no mechanisms")
		case !h.cookie:
			return false, protoErr(line, "no cookie")
		case !h.spid:
			return false, protoErr(line, "no SPID")
		}
		return true, nil
	default:
		return false, protoErr(line, "unknown handshake line")
	}
	return false, nil
}

// parseUint parses a decimal uint32 as Dovecot's str_to_uint does: digits
// only, no sign, no overflow.
func parseUint(s string) (uint32, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, errors.New("not a number")
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// Status is the kind of a server reply to a request.
type Status int

// Statuses of a request's step.
const (
	// StatusContinue: the mechanism wants another response (CONT).
	StatusContinue Status = iota
	// StatusOK: authenticated (OK).
	StatusOK
	// StatusFail: authentication failed (FAIL).
	StatusFail
	// StatusInternalFail: the connection to auth was lost while the
	// request was pending; Reply.Temp is set.
	StatusInternalFail
)

// String returns "CONT", "OK", "FAIL" or "INTERNAL_FAIL".
func (s Status) String() string {
	switch s {
	case StatusContinue:
		return "CONT"
	case StatusOK:
		return "OK"
	case StatusFail:
		return "FAIL"
	case StatusInternalFail:
		return "INTERNAL_FAIL"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// serverReply is one parsed OK, CONT or FAIL line.
type serverReply struct {
	status    Status
	id        uint32
	challenge string   // CONT: the base64 challenge
	args      []string // OK, FAIL: the fields; CONT (1.3): fields after the challenge
}

// parseReply parses a post-handshake server line. A returned
// *ProtocolError means the connection must be dropped.
func parseReply(line string) (serverReply, error) {
	args := SplitLine(line)
	if len(args) == 0 {
		return serverReply{}, protoErr(line, "empty line")
	}
	var r serverReply
	switch args[0] {
	case "OK":
		r.status = StatusOK
	case "CONT":
		r.status = StatusContinue
		if len(args) < 3 {
			return serverReply{}, protoErr(line, "broken CONT line")
		}
	case "FAIL":
		r.status = StatusFail
	default:
		return serverReply{}, protoErr(line, "unknown response")
	}
	if len(args) < 2 {
		return serverReply{}, protoErr(line, "missing ID")
	}
	id, err := parseUint(args[1])
	if err != nil {
		return serverReply{}, protoErr(line, "missing ID")
	}
	r.id = id
	if r.status == StatusContinue {
		r.challenge = args[2]
		r.args = args[3:]
	} else {
		r.args = args[2:]
	}
	return r, nil
}
