package logind

import (
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
// socket pair (the child's end is its fd 3). Every message is one packet:
// a type byte and a fixed little-endian payload; client sockets travel as
// SCM_RIGHTS with the msgConn packet. Messages, supervisor to login:
//
//	'I' JSON(workerInit) [+ fd] first message: settings and sandbox; with
//	                            TLS, a sealed memfd holding the cert and key
//	'C' id:u64 addr:16 port:u16 + fd
//	                            a client connection to serve, with the
//	                            client's address as accept returned it
//	                            (appendAddr: IPv6 or IPv4-mapped, port
//	                            big-endian)
//	'E' id:u64 reserve:u8       evict that client ("Connection queue full");
//	                            reserve 1: keep its slot for the next 'C'
//	                            (an eviction for a waiting connection), 0:
//	                            not (login_prelogin_ip_limit)
//	'S' mode:u8                 stop (StopIdle, StopDrain, StopShutdown)
//
// and login to supervisor:
//
//	'R'                         ready: sandboxed, serving
//	'A' id:u64 state:u8 ip:16 port:u16
//	                            a client accepted by the process itself
//	                            (direct accept) is now in state; ip (IPv6,
//	                            IPv4-mapped for IPv4; all zero if unknown)
//	                            and port are its peer's, for the choice of
//	                            victims by source (evict.go)
//	'T' id:u64 state:u8         a client changed state (ConnState)
//	'X' id:u64 reason:u8        a client is gone (CloseReason)
//	'B' records                 several 'A'/'T'/'X' reports, each as above
//	                            ('A' 28 bytes, the others 10: reportLen)
//
// Connection ids are the supervisor's (1, 2, ...) for clients it handed
// over, and Seq<<32 | n (n = 1, 2, ... per process) for clients a process
// accepted itself, so they never collide. A login process is not
// trusted: the supervisor checks every packet (execWorker.readLoop) and
// report (pool.check) and kills a process that breaks the protocol.
const (
	msgInit     = 'I'
	msgConn     = 'C'
	msgEvict    = 'E'
	msgStop     = 'S'
	msgReady    = 'R'
	msgAccepted = 'A'
	msgState    = 'T'
	msgClosed   = 'X'
	msgBatch    = 'B'
	// msgUnlistened: a high-performance process has closed its
	// listening sockets and will accept no more clients (after a drain or
	// shutdown notice); everything it accepted was reported before it.
	msgUnlistened = 'U'
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
	// Shutting down" in IMAP) and exit.
	StopShutdown StopMode = 3
)

// workerInit is the first message to a login process.
type workerInit struct {
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
	// not "no", the init packet carries a sealed memfd with the
	// certificate (the first TLSCertLen bytes) and the key (see tls.go).
	// SSLListen are the local addresses of the ssl = yes listeners
	// (implicit TLS), SSLMinProtocol the lowest TLS version.
	SSL            string
	TLSCertLen     int
	SSLMinProtocol uint16
	SSLListen      []string
	// HAProxy: HAProxyListen are the local addresses of the haproxy =
	// yes listeners (a PROXY header precedes everything, see
	// haproxy.go), HAProxyTrusted the haproxy_trusted_networks and
	// HAProxyTimeout the haproxy_timeout.
	HAProxyListen  []string
	HAProxyTrusted []netip.Prefix
	HAProxyTimeout time.Duration
}

// packet helpers

func putU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

func sendPacket(c *net.UnixConn, b []byte, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = syscall.UnixRights(fd)
	}
	_, _, err := c.WriteMsgUnix(b, oob, nil)
	return err
}

// packet is one decoded message.
type packet struct {
	typ    byte
	id     uint64
	arg    uint8
	fd     int            // -1 if none
	addr   netip.AddrPort // msgAccepted: the client's address
	json   []byte
	closed bool
	remote netip.AddrPort // msgConn: the client's address (invalid if none was sent)
}

var errShortPacket = errors.New("short packet")

// readPacket reads one message; buf and oob are scratch space (buf at
// least 4096 bytes for the init message).
func readPacket(c *net.UnixConn, buf, oob []byte) (packet, error) {
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	p := packet{fd: -1}
	if oobn > 0 {
		if msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if fds, ferr := syscall.ParseUnixRights(&m); ferr == nil {
					for i, fd := range fds {
						if i == 0 && p.fd < 0 {
							p.fd = fd
						} else {
							syscall.Close(fd)
						}
					}
				}
			}
		}
	}
	if err != nil {
		if p.fd >= 0 {
			syscall.Close(p.fd)
		}
		return p, err
	}
	if n == 0 {
		p.closed = true
		return p, nil
	}
	b := buf[:n]
	p.typ = b[0]
	b = b[1:]
	switch p.typ {
	case msgInit, msgBatch:
		p.json = b
	case msgConn, msgEvict:
		if len(b) < 8 {
			return p, errShortPacket
		}
		p.id = binary.LittleEndian.Uint64(b)
		if p.typ == msgEvict && len(b) > 8 {
			p.arg = b[8]
		}
		if p.typ == msgConn && len(b) >= 8+connAddrLen {
			p.remote = decodeAddr(b[8:])
		}
	case msgState, msgClosed, msgAccepted:
		if len(b) < 9 || len(b) < reportLen(p.typ)-1 {
			return p, errShortPacket
		}
		p.id = binary.LittleEndian.Uint64(b)
		p.arg = b[8]
		p.addr = reportAddr(buf[:n])
	case msgStop:
		if len(b) < 1 {
			return p, errShortPacket
		}
		p.arg = b[0]
	}
	return p, nil
}

// reportLen is the length in bytes of a report of type typ (type byte
// included), alone or in a msgBatch.
func reportLen(typ byte) int {
	if typ == msgAccepted {
		return 10 + connAddrLen
	}
	return 10
}

// appendReport appends the report typ id arg; for msgAccepted, remote
// (the zero AddrPort if unknown) follows, as appendAddr writes it.
func appendReport(b []byte, typ byte, id uint64, arg uint8, remote netip.AddrPort) []byte {
	b = append(b, typ)
	b = binary.LittleEndian.AppendUint64(b, id)
	b = append(b, arg)
	if typ == msgAccepted {
		b = appendAddr(b, remote)
	}
	return b
}

// reportAddr is the client address of report r (one record, type byte
// first): that of a msgAccepted report, the zero AddrPort otherwise or
// if unknown.
func reportAddr(r []byte) netip.AddrPort {
	if len(r) < 10+connAddrLen || r[0] != msgAccepted {
		return netip.AddrPort{}
	}
	return decodeAddr(r[10:])
}

// connAddrLen is the size of a client address on the wire (msgConn and
// msgAccepted): 16 bytes of IPv6 (IPv4-mapped for IPv4) and the port,
// big-endian.
const connAddrLen = 18

// appendAddr appends a's wire form (connAddrLen bytes; all zero for the
// invalid AddrPort).
func appendAddr(b []byte, a netip.AddrPort) []byte {
	var ip [16]byte
	if a.Addr().IsValid() {
		ip = a.Addr().As16()
	}
	return binary.BigEndian.AppendUint16(append(b, ip[:]...), a.Port())
}

// decodeAddr reads an address written by appendAddr (unmapped; invalid
// if it was all zero).
func decodeAddr(b []byte) netip.AddrPort {
	ip := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	if ip.IsUnspecified() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[16:18]))
}

func encodeInit(in *workerInit) ([]byte, error) {
	j, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	return append([]byte{msgInit}, j...), nil
}
