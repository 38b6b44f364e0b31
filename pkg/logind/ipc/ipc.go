// Package ipc is the contract between loginsvc's supervisor
// (pkg/logind/master) and its login processes (pkg/logind/login): the
// messages on their control socket, the settings sent to a login
// process, the connection states and close reasons it reports, the
// sealed memfd that carries the TLS key, and the "LEVEL text" lines a
// login process writes on its stderr. Both sides import it; it imports
// nothing else of loginsvc.
//
// A login process is the loginsvc binary started with LoginProcessEnv=1,
// its control socket as fd 3 and, in high-performance mode, the
// listening sockets from fd 4 on.
package ipc

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// The supervisor and each login process talk over one SOCK_SEQPACKET
// socket pair (the child's end is its fd 3). Every message is one Packet:
// a type byte and a fixed little-endian payload; client sockets travel as
// SCM_RIGHTS with the MsgConn Packet. Messages, supervisor to login:
//
//	'I' JSON(Settings) [+ fd] first message: settings and sandbox; with
//	                            TLS, a sealed memfd holding the cert and key
//	'C' id:u64 addr:16 port:u16 + fd
//	                            a client connection to serve, with the
//	                            client's address as accept returned it
//	                            (AppendAddr: IPv6 or IPv4-mapped, port
//	                            big-endian)
//	'E' id:u64 reserve:u8       evict that client ("Connection queue full");
//	                            reserve 1: keep its slot for the next 'C'
//	                            (an eviction for a waiting connection), 0:
//	                            not (login_prelogin_ip_limit)
//	'S' mode:u8                 stop (StopIdle, StopDrain, StopShutdown,
//	                            StopDetach)
//
// and login to supervisor:
//
//	'R'                         ready: sandboxed, serving
//	'A' id:u64 state:u8 ip:16 port:u16 at:i64
//	                            a client accepted by the process itself
//	                            (direct accept) is now in state; ip (IPv6,
//	                            IPv4-mapped for IPv4; all zero if unknown)
//	                            and port are its peer's, for the choice of
//	                            victims by source (evict.go); at is when
//	                            the process accepted it (Unix time in
//	                            nanoseconds), its age for eviction
//	'T' id:u64 state:u8         a client changed state (ConnState)
//	'X' id:u64 reason:u8        a client is gone (CloseReason)
//	'B' records                 several 'A'/'T'/'X'/'F' reports, each as
//	                            above ('A' 36 bytes, the others 10:
//	                            ReportLen)
//	'L' ...                     a client logged in; 'F' id:u64 n:u8, a
//	                            client failed an authentication (login.go)
//	'U' 0:u64 0:u8              the process's listeners are closed
//	'D' 0:u64 0:u8              detached (after StopDetach): it relays
//	                            logged-in sessions on its own from now
//
// Connection ids are the supervisor's (1, 2, ...) for clients it handed
// over, and Seq<<32 | n (n = 1, 2, ... per process) for clients a process
// accepted itself, so they never collide. A login process is not
// trusted: the supervisor checks every Packet (execWorker.readLoop) and
// report (pool.check) and kills a process that breaks the protocol.
const (
	MsgInit     = 'I'
	MsgConn     = 'C'
	MsgEvict    = 'E'
	MsgStop     = 'S'
	MsgReady    = 'R'
	MsgAccepted = 'A'
	MsgState    = 'T'
	MsgClosed   = 'X'
	MsgBatch    = 'B'
	// MsgUnlistened: a high-performance process has closed its
	// listening sockets and will accept no more clients (after a drain or
	// shutdown notice); everything it accepted was reported before it.
	MsgUnlistened = 'U'
	// MsgDetached: after StopDetach, a process that still relays
	// logged-in TLS sessions has shut its pre-login clients down and
	// cleared its parent-death signal: it runs on without the
	// supervisor until its last session ends, and says nothing more.
	MsgDetached = 'D'
)

// ConnState is where a client connection is in its life, as the
// supervisor tracks it for eviction.
type ConnState uint8

const (
	// StateChecking: accepted, asking the login_access_sockets (or
	// waiting for the PROXY header of a haproxy = yes listener).
	StateChecking ConnState = 1
	// StateLoggingIn: in the pre-login protocol (Dovecot's "pre-login"
	// clients, the eviction candidates): greeted, or about to be. A
	// client of a service with nothing to check is logging in from the
	// moment the supervisor hands it over (see checksFirst).
	StateLoggingIn ConnState = 2
	// StateProxying: logged in and relayed (TLS or proxy=y); never
	// evicted.
	StateProxying ConnState = 3
)

// String names the state as loginctl shows it.
func (s ConnState) String() string {
	switch s {
	case StateChecking:
		return "checking"
	case StateLoggingIn:
		return "logging-in"
	case StateProxying:
		return "proxying"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// CloseReason says why a client connection ended.
type CloseReason uint8

const (
	CloseNormal      CloseReason = iota // the client left (LOGOUT, QUIT, EOF)
	CloseRefused                        // an access socket refused it
	CloseEvicted                        // evicted at the limit ("Connection queue full")
	CloseTimeout                        // the pre-login deadline passed
	CloseError                          // protocol limits (bad commands, input buffer full) or I/O errors
	CloseShutdown                       // the service is shutting down
	CloseAccessError                    // an access socket could not be asked (connect or send failed); closed, failing closed
)

// String names the reason.
func (r CloseReason) String() string {
	names := [...]string{"normal", "refused", "evicted", "timeout", "error", "shutdown", "access-error"}
	if int(r) < len(names) {
		return names[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// StopMode is how a login process is asked to stop.
type StopMode uint8

const (
	// StopIdle is Dovecot's idle-kill SIGINT: exit now if there are no
	// clients. Unlike Dovecot's (which ignores it then), a process that
	// has clients (accepted before the notice arrived) accepts no more
	// and exits when the last one leaves, as with StopDrain: the
	// supervisor gives it no client after the notice.
	StopIdle StopMode = 1
	// StopDrain: no new clients will come; exit when the last one leaves
	// (reload with shutdown_clients = no, and the first phase of a reload).
	StopDrain StopMode = 2
	// StopShutdown: say goodbye to every pre-login client ("* BYE
	// Shutting down" in IMAP), end the TLS relays of logged-in clients,
	// and exit (shutdown_clients = yes: at a stop, and
	// ReloadShutdownDelay after a reload).
	StopShutdown StopMode = 3
	// StopDetach: the supervisor is stopping with shutdown_clients = no.
	// Pre-login clients are shut down as with StopShutdown; a process
	// left with logged-in TLS sessions detaches (MsgDetached) and relays
	// them until the last one ends, outliving the supervisor, as
	// Dovecot's processes outlive a master stopped with shutdown_clients
	// = no. A process with none exits.
	StopDetach StopMode = 4
)

// Settings are what a login process is told in its first message
// (MsgInit): its service's settings and its sandbox.
type Settings struct {
	Service         string
	Protocol        string
	ClientLimit     int
	ServiceCount    int
	AccessSockets   []string
	TrustedNetworks []netip.Prefix
	Greeting        string
	PreloginTimeout time.Duration
	AccessTimeout   time.Duration
	Chroot          string // "" = no chroot
	ChdirTo         string // used when Chroot is ""
	UID, GID        int    // -1 = keep (tests without root)
	VszLimit        uint64
	NoFile          uint64
	NProc           uint64 // RLIMIT_NPROC once running as UID (see loginNProc); 0 = keep
	Generation      uint64
	Seq             uint64 // process sequence number (ids of direct accepts)
	// Listeners is the number of listening sockets passed from fd 4 on:
	// the process accepts from them itself while it has a free slot
	// (high-performance mode, see Supervisor).
	Listeners int
	// TLS: SSL is the global ssl ("no", "yes", "required"); when it is
	// not "no", the init Packet carries a sealed memfd with the
	// certificate (the first TLSCertLen bytes) and the key (see tls.go).
	// SSLListen are the local addresses of the ssl = yes listeners
	// (implicit TLS), SSLMinProtocol the lowest TLS version, SSLCurves
	// the key exchanges allowed (none: Go's defaults).
	SSL            string
	TLSCertLen     int
	SSLMinProtocol uint16
	SSLCurves      []tls.CurveID
	SSLListen      []string
	// HAProxy: HAProxyListen are the local addresses of the haproxy =
	// yes listeners (a PROXY header precedes everything, see
	// haproxy.go), HAProxyTrusted the haproxy_trusted_networks and
	// HAProxyTimeout the haproxy_timeout.
	HAProxyListen  []string
	HAProxyTrusted []netip.Prefix
	HAProxyTimeout time.Duration
	// Authentication (docs/dovecot-auth.md): AuthSocket is Dovecot's
	// auth socket for login processes (login_socket_path, default
	// "login"), PostloginSocket the post-login service's socket that
	// a logged-in client is handed to (the service's postlogin_socket,
	// default its protocol: imap, pop3, submission, sieve); both
	// relative names resolve inside the chroot (base_dir/login).
	// AuthAllowCleartext: plaintext authentication is allowed on
	// connections that are not secured (disable_plaintext_auth = no,
	// auth_allow_cleartext = yes); false refuses it there.
	AuthSocket         string
	PostloginSocket    string
	AuthAllowCleartext bool
}

// PutU64 appends v to b as 8 little-endian bytes (a packet's connection
// id, as ReadPacket decodes it) and returns the extended slice.
func PutU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// SendPacket sends the message b on c, with descriptor fd (SCM_RIGHTS)
// unless fd is negative.
func SendPacket(c *net.UnixConn, b []byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = syscall.UnixRights(fd)
	}
	_, _, err := c.WriteMsgUnix(b, oob, nil)
	return err
}

// Packet is one decoded message (ReadPacket).
type Packet struct {
	Type   byte           // the message type (Msg*)
	ID     uint64         // the connection id it is about (0: none)
	Arg    uint8          // the message's one-byte argument (a state, a reason)
	FD     int            // -1 if none
	Accept Accept         // MsgAccepted: the client's address and accept time
	JSON   []byte         // MsgInit, MsgBatch: the payload
	Closed bool           // the peer closed the socket
	Remote netip.AddrPort // MsgConn: the client's address (invalid if none was sent)
}

// ErrShortPacket is ReadPacket's error for a message shorter than its
// type's fixed part (a malformed packet).
var ErrShortPacket = errors.New("short Packet")

// ReadPacket reads one message; buf and oob are scratch space (buf at
// least 4096 bytes for the init message).
func ReadPacket(c *net.UnixConn, buf, oob []byte) (Packet, error) {
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	p := Packet{FD: -1}
	if oobn > 0 {
		if msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if fds, ferr := syscall.ParseUnixRights(&m); ferr == nil {
					for i, fd := range fds {
						if i == 0 && p.FD < 0 {
							p.FD = fd
						} else {
							syscall.Close(fd)
						}
					}
				}
			}
		}
	}
	if err != nil {
		if p.FD >= 0 {
			syscall.Close(p.FD)
		}
		return p, err
	}
	if n == 0 {
		p.Closed = true
		return p, nil
	}
	b := buf[:n]
	p.Type = b[0]
	b = b[1:]
	switch p.Type {
	case MsgInit, MsgBatch:
		p.JSON = b
	case MsgConn, MsgEvict:
		if len(b) < 8 {
			return p, ErrShortPacket
		}
		p.ID = binary.LittleEndian.Uint64(b)
		if p.Type == MsgEvict && len(b) > 8 {
			p.Arg = b[8]
		}
		if p.Type == MsgConn && len(b) >= 8+ConnAddrLen {
			p.Remote = DecodeAddr(b[8:])
		}
	case MsgState, MsgClosed, MsgAccepted:
		if len(b) < 9 || len(b) < ReportLen(p.Type)-1 {
			return p, ErrShortPacket
		}
		p.ID = binary.LittleEndian.Uint64(b)
		p.Arg = b[8]
		p.Accept = ReportAccept(buf[:n])
	case MsgStop:
		if len(b) < 1 {
			return p, ErrShortPacket
		}
		p.Arg = b[0]
	}
	return p, nil
}

// ReportLen is the length in bytes of a report of type typ (type byte
// included), alone or in a MsgBatch.
func ReportLen(typ byte) int {
	if typ == MsgAccepted {
		return 10 + ConnAddrLen + 8
	}
	return 10
}

// Accept is what a MsgAccepted report says of a client beyond its id
// and state: where it came from and when the process accepted it. The
// zero Accept is that of every other report.
type Accept struct {
	// Remote is the client's address (the zero AddrPort if unknown:
	// behind haproxy).
	Remote netip.AddrPort
	// At is when the process accepted the client, in nanoseconds since
	// the Unix epoch (time.Time.UnixNano): the supervisor orders the
	// clients of all processes by it for eviction, whatever order
	// their (batched) reports arrive in. 0 if unknown.
	At int64
}

// AppendReport appends the report typ id arg; for MsgAccepted, acc
// follows (Remote as AppendAddr writes it, then At little-endian).
func AppendReport(b []byte, typ byte, id uint64, arg uint8, acc Accept) []byte {
	b = append(b, typ)
	b = binary.LittleEndian.AppendUint64(b, id)
	b = append(b, arg)
	if typ == MsgAccepted {
		b = AppendAddr(b, acc.Remote)
		b = binary.LittleEndian.AppendUint64(b, uint64(acc.At))
	}
	return b
}

// ReportAccept is the Accept of report r (one record, type byte first):
// that of a MsgAccepted report, the zero Accept otherwise or if r is
// shorter than ReportLen(MsgAccepted).
func ReportAccept(r []byte) Accept {
	if len(r) < ReportLen(MsgAccepted) || r[0] != MsgAccepted {
		return Accept{}
	}
	return Accept{Remote: DecodeAddr(r[10:]), At: int64(binary.LittleEndian.Uint64(r[10+ConnAddrLen:]))}
}

// ConnAddrLen is the size of a client address on the wire (MsgConn and
// MsgAccepted): 16 bytes of IPv6 (IPv4-mapped for IPv4) and the port,
// big-endian.
const ConnAddrLen = 18

// AppendAddr appends a's wire form (ConnAddrLen bytes; all zero for the
// invalid AddrPort).
func AppendAddr(b []byte, a netip.AddrPort) []byte {
	var ip [16]byte
	if a.Addr().IsValid() {
		ip = a.Addr().As16()
	}
	return binary.BigEndian.AppendUint16(append(b, ip[:]...), a.Port())
}

// DecodeAddr reads an address written by AppendAddr (unmapped; invalid
// if it was all zero).
func DecodeAddr(b []byte) netip.AddrPort {
	ip := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	if ip.IsUnspecified() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[16:18]))
}

// EncodeSettings is the MsgInit message carrying in.
func EncodeSettings(in *Settings) ([]byte, error) {
	j, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	return append([]byte{MsgInit}, j...), nil
}

// LoginProcessEnv is set (to "1") in the environment of every login
// process; a binary that finds it must run the login process
// (login.Main) instead of its usual main (cmd/loginsvc and the tests
// that start login processes do).
const LoginProcessEnv = "LOGINSVC_LOGIN_PROCESS"

// Exit statuses of a login process beyond 0 (a normal stop), Dovecot's.
const (
	// ExitFatal: a fatal set-up error (Dovecot's FATAL_DEFAULT).
	ExitFatal = 89
	// ExitExecFailed: the process could not be started at all (Dovecot's
	// FATAL_EXEC); the supervisor reports it for a failed fork or exec.
	ExitExecFailed = 84
)

// DefaultHAProxyTimeout is the default haproxy_timeout, Dovecot's 3 s, and
// what a login process uses when Settings.HAProxyTimeout is 0.
const DefaultHAProxyTimeout = 3 * time.Second
