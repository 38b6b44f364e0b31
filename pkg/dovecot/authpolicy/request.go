package authpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// Secret is a value that must never be logged: Dovecot's "pwhash"
// attribute (a truncated hash of nonce, login and password). Its String,
// GoString and LogValue all give "REDACTED"; only a conversion to string
// reads the value.
type Secret string

// LogValue returns "REDACTED" (for log/slog).
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// String returns "REDACTED" (for fmt's %s and %v).
func (Secret) String() string { return "REDACTED" }

// GoString returns "REDACTED" (for fmt's %#v).
func (Secret) GoString() string { return "REDACTED" }

// Request is one decoded auth policy request body. The field names are
// the JSON keys tcpwrapd reads; Dovecot builds them from
// auth_policy_request_attributes (2.3: `remote=%{rip}`, 2.4:
// `auth_policy_request_attributes { remote = %{remote_ip} }`). Keys it does
// not know, and nested objects, are ignored. Every attribute is a string,
// as Dovecot sends it; an absent attribute is "".
type Request struct {
	// Protocol is the daemon name the rules are checked for ("imap",
	// "pop3", "submission", "sieve"; Dovecot's %s / %{protocol}).
	// Required.
	Protocol string `json:"protocol"`
	// Remote is the client IP address (%{rip} / %{remote_ip}), already
	// corrected by Dovecot for a PROXY-protocol or trusted-network
	// forwarder. "" means unknown.
	Remote string `json:"remote"`
	// RemotePort is the client port (%{rport} / %{remote_port}), optional.
	RemotePort string `json:"remote_port"`
	// Local and LocalPort are the server address and port the client
	// connected to (%{lip} %{lport} / %{local_ip} %{local_port}),
	// optional: they make daemon@host patterns and %A, %s work.
	Local     string `json:"local"`
	LocalPort string `json:"local_port"`
	// Login is the user name the client asked for (%{requested_username}).
	Login string `json:"login"`
	// Pwhash is Dovecot's password hash attribute; never logged.
	Pwhash Secret `json:"pwhash"`
	// SessionID and DeviceID are Dovecot's session and client ids.
	SessionID string `json:"session_id"`
	DeviceID  string `json:"device_id"`
	// FailType is 2.4's fail_type attribute ("", "credentials",
	// "account", "expired", "disabled", "policy", "internal").
	FailType string `json:"fail_type"`
	// TLS is Dovecot's "tls" (the client connection is TLS-secured).
	TLS bool `json:"tls"`
	// Success and PolicyReject are set in report requests only.
	Success      *bool `json:"success"`
	PolicyReject *bool `json:"policy_reject"`
}

// ErrMalformed is wrapped by every error of ParseRequest and
// Request.HostsRequest.
var ErrMalformed = errors.New("malformed auth policy request")

// ParseRequest decodes an auth policy request body: exactly one JSON
// object, nothing after it. Values of the known keys must have the types
// Dovecot sends (strings; booleans for tls, success and policy_reject).
// Errors wrap ErrMalformed. The string fields of the common body (no
// escapes, no nesting) share one copy of it. It is safe for concurrent
// use.
func ParseRequest(body []byte) (*Request, error) {
	r := new(Request)
	if err := parseRequest(body, r); err != nil {
		return nil, err
	}
	return r, nil
}

// parseRequest is ParseRequest into r, which it overwrites: one
// allocation (the copy of body) for the common body.
func parseRequest(body []byte, r *Request) error {
	*r = Request{}
	if parseFlat(body, string(body), r) {
		return nil
	}
	*r = Request{}
	if err := json.Unmarshal(body, r); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// HostsRequest returns the access question the request asks:
//
//   - Daemon is Protocol, which must be a plain name
//     (wrapopts.CheckPlainName: it names the banner file);
//   - Client is Remote (an IPv4-mapped address unmapped) with
//     RemotePort, or an unknown address and name when Remote is "";
//   - Server is Local with LocalPort, or no address when Local is "";
//   - User is Login when loginAsUser is set (user@host patterns then
//     test the name the client logged in with, not an RFC 931 answer),
//     else hostsrules.Unknown: no ident lookup is ever made, because
//     tcpwrapd has no connection to the client.
//
// A missing protocol, an address or port that does not parse, or a port
// without its address is an error wrapping ErrMalformed.
func (r *Request) HostsRequest(loginAsUser bool) (*hostsrules.Request, error) {
	h := new(hostsrules.Request)
	if err := r.hostsRequest(loginAsUser, h); err != nil {
		return nil, err
	}
	return h, nil
}

// hostsRequest is HostsRequest into h, which it overwrites.
func (r *Request) hostsRequest(loginAsUser bool, h *hostsrules.Request) error {
	if err := wrapopts.CheckPlainName(r.Protocol); err != nil {
		return fmt.Errorf("%w: protocol: %v", ErrMalformed, err)
	}
	client, err := endpoint("remote", r.Remote, r.RemotePort)
	if err != nil {
		return err
	}
	if r.Remote == "" {
		client = hostsrules.Endpoint{AddrText: hostsrules.Unknown, Name: hostsrules.Unknown}
	}
	server, err := endpoint("local", r.Local, r.LocalPort)
	if err != nil {
		return err
	}
	user := hostsrules.Unknown
	if loginAsUser && r.Login != "" {
		user = r.Login
	}
	*h = hostsrules.Request{Daemon: r.Protocol, Client: client, Server: server, User: user}
	return nil
}

// endpoint parses an address attribute and its optional port attribute.
func endpoint(name, addr, port string) (hostsrules.Endpoint, error) {
	if addr == "" {
		if port != "" {
			return hostsrules.Endpoint{}, fmt.Errorf("%w: %s_port %q without %s", ErrMalformed, name, port, name)
		}
		return hostsrules.Endpoint{}, nil
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return hostsrules.Endpoint{}, fmt.Errorf("%w: %s: not an IP address: %q", ErrMalformed, name, addr)
	}
	var p uint64
	if port != "" {
		if p, err = strconv.ParseUint(port, 10, 16); err != nil {
			return hostsrules.Endpoint{}, fmt.Errorf("%w: %s_port: not a port: %q", ErrMalformed, name, port)
		}
	}
	return hostsrules.Endpoint{Addr: netip.AddrPortFrom(a.Unmap(), uint16(p))}, nil
}
