package authclient

import (
	"log/slog"
	"net/netip"
	"strconv"
)

// Request is one authentication as a login process starts it: the
// fields of Dovecot's struct auth_request_info that go on the AUTH line.
// Zero values are left out, as Dovecot leaves them out.
type Request struct {
	// Mech is the SASL mechanism, as the server named it ("PLAIN").
	Mech string
	// Service is the protocol: "imap", "pop3", "submission", "sieve".
	// It is sent as service= (1.2) or protocol= (1.3).
	Service string
	// Session is the session id (session=), the one the hand-off sends.
	Session string

	// Secured: the connection from the previous hop is TLS, from a
	// login_trusted_networks address, or from the local host (secured).
	Secured bool
	// TLS: the previous hop uses TLS, directly or as HAProxy reported it
	// (secured=tls). Only sent together with Secured.
	TLS bool
	// ValidClientCert: the TLS client presented a valid certificate.
	ValidClientCert bool
	// NoPenalty skips auth's per-IP failure penalty.
	NoPenalty bool
	// FinalRespOK: the protocol can carry a final SASL response with
	// its success reply (imap, submission). Protocol 1.3 always sends it.
	FinalRespOK bool
	// Debug turns on auth_debug logging for this request.
	Debug bool

	// CertUsername is the TLS client certificate's user name.
	CertUsername string
	// LocalAddr and RemoteAddr are the client connection's addresses as
	// the login process sees them after HAProxy or trusted-network
	// forwarding (lip, lport, rip, rport).
	LocalAddr, RemoteAddr netip.AddrPort
	// RealLocalAddr and RealRemoteAddr are the addresses of the TCP
	// connection itself (the proxy's, behind HAProxy). Each part is sent
	// (real_lip, real_lport, real_rip, real_rport) only where it differs
	// from LocalAddr or RemoteAddr.
	RealLocalAddr, RealRemoteAddr netip.AddrPort
	// LocalName is the TLS SNI host name (local_name).
	LocalName string
	// ClientID is the IMAP ID the client sent, as logged (client_id).
	ClientID string
	// ForwardFields are "key=value" pairs a trusted proxy forwarded (IMAP
	// ID x-forward-*, XCLIENT FORWARD=); sent as one forward_fields=.
	ForwardFields []string
	// SSLJA3Hash is the TLS client's JA3 hash; sent with protocol 1.3
	// only.
	SSLJA3Hash string
	// Extra are further "key=value" fields, sent as they are.
	Extra []string

	// InitialResponse is the SASL initial response, base64, as the
	// client sent it (resp=). It is sent when HasInitialResponse is set;
	// an empty one (IMAP's "=") is then "resp=".
	InitialResponse    Secret
	HasInitialResponse bool
}

// LogValue implements slog.LogValuer; the initial response is never
// shown.
func (r Request) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("mech", r.Mech), slog.String("service", r.Service),
		slog.String("session", r.Session),
		slog.Bool("secured", r.Secured), slog.Bool("tls", r.TLS),
	}
	if r.RemoteAddr.IsValid() {
		attrs = append(attrs, slog.String("rip", r.RemoteAddr.Addr().String()))
	}
	if r.LocalAddr.IsValid() {
		attrs = append(attrs, slog.String("lip", r.LocalAddr.Addr().String()))
	}
	if r.HasInitialResponse {
		attrs = append(attrs, slog.Any("resp", r.InitialResponse))
	}
	return slog.GroupValue(attrs...)
}

// appendAuth appends the AUTH line for request id in protocol v,
// LF included.
func appendAuth(b []byte, id uint32, v Version, r *Request) []byte {
	b = append(b, "AUTH\t"...)
	b = strconv.AppendUint(b, uint64(id), 10)
	b = append(b, '\t')
	b = append(b, TabEscape(r.Mech)...)
	if v.is13() {
		b = append(b, "\tprotocol="...)
	} else {
		b = append(b, "\tservice="...)
	}
	b = append(b, TabEscape(r.Service)...)
	if r.FinalRespOK || v.is13() {
		b = append(b, "\tfinal-resp-ok"...)
	}
	if r.Secured {
		b = append(b, "\tsecured"...)
		if r.TLS {
			b = append(b, "=tls"...)
		}
	}
	if r.NoPenalty {
		b = append(b, "\tno-penalty"...)
	}
	if r.ValidClientCert {
		b = append(b, "\tvalid-client-cert"...)
	}
	if r.Debug {
		b = append(b, "\tdebug"...)
	}
	b = appendField(b, "session", r.Session)
	b = appendField(b, "cert_username", r.CertUsername)
	la, ra := r.LocalAddr, r.RemoteAddr
	if la.Addr().IsValid() {
		b = appendIP(b, "lip", la.Addr())
	}
	if ra.Addr().IsValid() {
		b = appendIP(b, "rip", ra.Addr())
	}
	if la.Port() != 0 {
		b = appendPort(b, "lport", la.Port())
	}
	if ra.Port() != 0 {
		b = appendPort(b, "rport", ra.Port())
	}
	if v.is13() {
		b = appendField(b, "ssl_ja3_hash", r.SSLJA3Hash)
	}
	rla, rra := r.RealLocalAddr, r.RealRemoteAddr
	if rla.Addr().IsValid() && rla.Addr() != la.Addr() {
		b = appendIP(b, "real_lip", rla.Addr())
	}
	if rra.Addr().IsValid() && rra.Addr() != ra.Addr() {
		b = appendIP(b, "real_rip", rra.Addr())
	}
	if rla.Port() != 0 && rla.Port() != la.Port() {
		b = appendPort(b, "real_lport", rla.Port())
	}
	if rra.Port() != 0 && rra.Port() != ra.Port() {
		b = appendPort(b, "real_rport", rra.Port())
	}
	b = appendField(b, "local_name", r.LocalName)
	b = appendField(b, "client_id", r.ClientID)
	if len(r.ForwardFields) > 0 {
		b = appendField(b, "forward_fields", JoinLine(r.ForwardFields...))
	}
	for _, f := range r.Extra {
		b = append(b, '\t')
		b = append(b, TabEscape(f)...)
	}
	if r.HasInitialResponse {
		b = append(b, "\tresp="...)
		b = append(b, TabEscape(r.InitialResponse.Reveal())...)
	}
	return append(b, '\n')
}

// appendField appends TAB key=escaped(value) unless value is empty.
func appendField(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, '\t')
	b = append(b, key...)
	b = append(b, '=')
	return append(b, TabEscape(value)...)
}

// appendIP appends TAB key=address, formatted as Dovecot's net_ip2addr
// does (IPv4-mapped IPv6 addresses as IPv4, no zone), without
// allocating (one AUTH line per login).
func appendIP(b []byte, key string, a netip.Addr) []byte {
	b = append(b, '\t')
	b = append(b, key...)
	b = append(b, '=')
	return a.Unmap().WithZone("").AppendTo(b)
}

// appendPort appends TAB key=port.
func appendPort(b []byte, key string, port uint16) []byte {
	b = append(b, '\t')
	b = append(b, key...)
	b = append(b, '=')
	return strconv.AppendUint(b, uint64(port), 10)
}
