package masterauth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// Layout selects the request struct of a Dovecot version.
type Layout int

// Layouts.
const (
	// Dovecot23 is struct master_auth_request of Dovecot 2.3: 96 bytes.
	Dovecot23 Layout = 23
	// Dovecot24 is struct login_request of Dovecot 2.4: 104 bytes.
	Dovecot24 Layout = 24
)

// String returns "2.3" or "2.4".
func (l Layout) String() string {
	switch l {
	case Dovecot23:
		return "2.3"
	case Dovecot24:
		return "2.4"
	}
	return "Layout(" + strconv.Itoa(int(l)) + ")"
}

// ipSize is sizeof(struct ip_addr): family, padding, 16-byte address, and
// in 2.4 a 4-byte scope_id.
func (l Layout) ipSize() int {
	if l == Dovecot24 {
		return 24
	}
	return 20
}

// Size returns the size of the request struct: 96 (2.3) or 104 (2.4), or
// 0 for an unknown layout.
func (l Layout) Size() int {
	switch l {
	case Dovecot23, Dovecot24:
		// 4 u32 + cookie + 2 ip_addr + 2 ports + flags + data_size,
		// padded to 8 for the ino_t.
		n := 16 + CookieSize + 2*l.ipSize() + 4 + 4 + 4
		return (n+7)&^7 + 8
	}
	return 0
}

// offsets of the fields after the two addresses.
func (l Layout) offPorts() int { return 16 + CookieSize + 2*l.ipSize() }
func (l Layout) offIno() int   { return l.Size() - 8 }

// Flags are the request's flag bits. Their meaning depends on the layout.
type Flags uint32

// Flag bits.
const (
	// FlagTLSCompression: TLS compression is on (2.3 and 2.4).
	FlagTLSCompression Flags = 1 << 0
	// FlagConnSecured: the connection is secured: TLS, trusted network
	// or local (2.3 only; 2.4 dropped the bit).
	FlagConnSecured Flags = 1 << 1
	// FlagConnSSLSecured: the connection uses TLS (2.3).
	FlagConnSSLSecured Flags = 1 << 2
	// FlagEndClientSecuredTLS: the end client's connection, not just the
	// previous hop's, uses TLS (2.4; same bit as FlagConnSSLSecured).
	FlagEndClientSecuredTLS Flags = 1 << 2
	// FlagImplicit: an implicit login; no command reply is expected
	// (2.3 and 2.4).
	FlagImplicit Flags = 1 << 3
	// FlagMultiplexOutput: the client fd carries ostream-multiplex
	// output (2.4 only).
	FlagMultiplexOutput Flags = 1 << 4
)

// Sizes and limits (master-auth.h, login-interface.h).
const (
	// CookieSize is the size of the auth connection's cookie.
	CookieSize = 16
	// MaxDataSize is the most data a request may carry
	// (MASTER_AUTH_MAX_DATA_SIZE, LOGIN_REQUEST_MAX_DATA_SIZE).
	MaxDataSize = 1024 + 128 + 64 + 2
	// ReplySize is the size of the reply struct.
	ReplySize = 12
)

// InternalFailureText is what the login process tells the client when
// the hand-off fails (MASTER_AUTH_ERRMSG_INTERNAL_FAILURE).
const InternalFailureText = "Internal error occurred. Refer to server log for more information."

// Linux address families, as struct ip_addr stores them.
const (
	afInet  = 2
	afInet6 = 10
)

// Request is one hand-off request.
type Request struct {
	// Tag identifies the request; the reply carries it back. [Send] sets
	// it.
	Tag uint32
	// AuthPID is the auth server's pid (the SPID of the auth
	// connection); the post-login side checks it.
	AuthPID uint32
	// AuthID is the id of the successful auth request.
	AuthID uint32
	// ClientPID is the CPID the login process's auth connection sent.
	ClientPID uint32
	// Cookie is the auth connection's COOKIE.
	Cookie [CookieSize]byte
	// LocalAddr and RemoteAddr are the client connection's addresses
	// (after HAProxy or trusted forwarding). IPv4-mapped addresses are
	// sent as IPv4.
	LocalAddr, RemoteAddr netip.AddrPort
	// Flags are the layout's flag bits.
	Flags Flags
	// Ino is the inode of the passed fd; [Send] sets it, the receiver
	// checks it.
	Ino uint64
	// Data is the request data ([Data]); at most MaxDataSize bytes.
	Data []byte
}

// ErrDataTooLarge: Request.Data is longer than MaxDataSize.
var ErrDataTooLarge = fmt.Errorf("hand-off data larger than %d bytes", MaxDataSize)

// Data returns the request data: sessionID, a NUL, the protocol prefix,
// then the client's buffered input.
func Data(sessionID string, prefix, input []byte) []byte {
	b := make([]byte, 0, len(sessionID)+1+len(prefix)+len(input))
	b = append(b, sessionID...)
	b = append(b, 0)
	b = append(b, prefix...)
	return append(b, input...)
}

// IMAPPrefix returns the IMAP protocol prefix: '1' if the client asked
// for CAPABILITY before logging in (outside STARTTLS), so that imap
// answers with an untagged CAPABILITY instead of a [CAPABILITY] response
// code, else '0'; then the tag of the LOGIN or AUTHENTICATE command, and
// a NUL.
func IMAPPrefix(capabilitySent bool, tag string) []byte {
	b := make([]byte, 0, len(tag)+2)
	if capabilitySent {
		b = append(b, '1')
	} else {
		b = append(b, '0')
	}
	b = append(b, tag...)
	return append(b, 0)
}

// MarshalBinary returns the request struct in layout l followed by
// Data. The error is ErrDataTooLarge or an unknown layout.
func (r *Request) MarshalBinary(l Layout) ([]byte, error) {
	size := l.Size()
	if size == 0 {
		return nil, fmt.Errorf("unknown layout %v", l)
	}
	if len(r.Data) > MaxDataSize {
		return nil, ErrDataTooLarge
	}
	b := make([]byte, size, size+len(r.Data))
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], r.Tag)
	ne.PutUint32(b[4:], r.AuthPID)
	ne.PutUint32(b[8:], r.AuthID)
	ne.PutUint32(b[12:], r.ClientPID)
	copy(b[16:], r.Cookie[:])
	off := 16 + CookieSize
	putIP(b[off:], r.LocalAddr.Addr())
	putIP(b[off+l.ipSize():], r.RemoteAddr.Addr())
	p := l.offPorts()
	ne.PutUint16(b[p:], r.LocalAddr.Port())
	ne.PutUint16(b[p+2:], r.RemoteAddr.Port())
	ne.PutUint32(b[p+4:], uint32(r.Flags))
	ne.PutUint32(b[p+8:], uint32(len(r.Data)))
	ne.PutUint64(b[l.offIno():], r.Ino)
	return append(b, r.Data...), nil
}

// putIP writes a struct ip_addr (family 0 for an invalid address). The
// 2.4 scope_id stays 0.
func putIP(b []byte, a netip.Addr) {
	a = a.Unmap()
	switch {
	case a.Is4():
		binary.NativeEndian.PutUint16(b, afInet)
		v := a.As4()
		copy(b[4:], v[:])
	case a.Is6():
		binary.NativeEndian.PutUint16(b, afInet6)
		v := a.As16()
		copy(b[4:], v[:])
	}
}

func getIP(b []byte) (netip.Addr, error) {
	switch fam := binary.NativeEndian.Uint16(b); fam {
	case 0:
		return netip.Addr{}, nil
	case afInet:
		return netip.AddrFrom4([4]byte(b[4:8])), nil
	case afInet6:
		return netip.AddrFrom16([16]byte(b[4:20])), nil
	default:
		return netip.Addr{}, fmt.Errorf("unknown address family %d", fam)
	}
}

// ParseRequest decodes a request struct of layout l and the data after
// it, as a post-login service reads them. b must hold the struct and
// exactly data_size more bytes.
func ParseRequest(l Layout, b []byte) (Request, error) {
	size := l.Size()
	if size == 0 {
		return Request{}, fmt.Errorf("unknown layout %v", l)
	}
	if len(b) < size {
		return Request{}, fmt.Errorf("hand-off request: %d bytes, want %d", len(b), size)
	}
	ne := binary.NativeEndian
	var r Request
	r.Tag = ne.Uint32(b[0:])
	r.AuthPID = ne.Uint32(b[4:])
	r.AuthID = ne.Uint32(b[8:])
	r.ClientPID = ne.Uint32(b[12:])
	copy(r.Cookie[:], b[16:])
	off := 16 + CookieSize
	lip, err1 := getIP(b[off:])
	rip, err2 := getIP(b[off+l.ipSize():])
	if err := errors.Join(err1, err2); err != nil {
		return Request{}, fmt.Errorf("hand-off request: %w", err)
	}
	p := l.offPorts()
	r.LocalAddr = netip.AddrPortFrom(lip, ne.Uint16(b[p:]))
	r.RemoteAddr = netip.AddrPortFrom(rip, ne.Uint16(b[p+2:]))
	r.Flags = Flags(ne.Uint32(b[p+4:]))
	n := ne.Uint32(b[p+8:])
	r.Ino = ne.Uint64(b[l.offIno():])
	if n > MaxDataSize {
		return Request{}, fmt.Errorf("hand-off request: data_size %d: %w", n, ErrDataTooLarge)
	}
	if uint32(len(b)-size) != n {
		return Request{}, fmt.Errorf("hand-off request: %d data bytes, data_size says %d", len(b)-size, n)
	}
	r.Data = append([]byte(nil), b[size:]...)
	return r, nil
}

// Status is the reply's status.
type Status uint32

// Statuses (enum master_auth_status, enum login_reply_status).
const (
	StatusOK            Status = 0
	StatusInternalError Status = 1
)

// String returns "OK", "INTERNAL_ERROR" or the number.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusInternalError:
		return "INTERNAL_ERROR"
	}
	return "Status(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// Reply is the post-login service's answer.
type Reply struct {
	// Tag is the request's tag (0 would be a notification from the
	// master).
	Tag uint32
	// Status is StatusOK or StatusInternalError.
	Status Status
	// MailPID is the pid of the post-login process now serving the
	// client (logged as mpid=).
	MailPID int32
}

// ParseReply decodes a reply; b must be exactly ReplySize bytes. A status
// other than OK and INTERNAL_ERROR is an error.
func ParseReply(b []byte) (Reply, error) {
	if len(b) != ReplySize {
		return Reply{}, fmt.Errorf("hand-off reply: %d bytes, want %d", len(b), ReplySize)
	}
	ne := binary.NativeEndian
	r := Reply{Tag: ne.Uint32(b), Status: Status(ne.Uint32(b[4:])), MailPID: int32(ne.Uint32(b[8:]))}
	if r.Status != StatusOK && r.Status != StatusInternalError {
		return Reply{}, fmt.Errorf("hand-off reply: unknown status %d", uint32(r.Status))
	}
	return r, nil
}

// MarshalBinary encodes the reply (for tests and stand-in services).
func (r Reply) MarshalBinary() ([]byte, error) {
	b := make([]byte, ReplySize)
	ne := binary.NativeEndian
	ne.PutUint32(b, r.Tag)
	ne.PutUint32(b[4:], uint32(r.Status))
	ne.PutUint32(b[8:], uint32(r.MailPID))
	return b, nil
}
