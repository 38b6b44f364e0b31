package authclient

import (
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Failure codes in FAIL's code= field (auth-client-interface.h).
const (
	CodeAuthzFailed   = "authz_fail"
	CodeTempFail      = "temp_fail"
	CodeUserDisabled  = "user_disabled"
	CodePassExpired   = "pass_expired"
	CodeInvalidBase64 = "invalid_base64"
)

// Field is one key=value field of a reply. A field without '=' has an
// empty Value.
type Field struct{ Key, Value string }

// Reply holds the fields of an OK or FAIL reply, interpreted as Dovecot's
// login processes interpret them (sasl-server.c, client-common-auth.c).
type Reply struct {
	// User is the user name auth settled on (user=).
	User string
	// OriginalUser is the name before auth changed it (original_user=).
	OriginalUser string
	// AuthUser is the master user of a master-user login (auth_user=).
	AuthUser string
	// Nologin: the user may not log in here (nologin); Reason says why.
	Nologin bool
	// Reason is the text to show the client (reason=).
	Reason string
	// Code is the failure code (code=): one of the Code* constants, or
	// another value auth sent.
	Code string
	// Temp: a temporary failure (the "temp" field, which Dovecot's 2.3
	// client adds itself when the connection to auth is lost). Set too
	// when Code is CodeTempFail.
	Temp bool
	// Anonymous: an anonymous login (anonymous).
	Anonymous bool
	// PostloginSocket overrides the post-login service's socket
	// (postlogin_socket=).
	PostloginSocket string
	// FinalResponse is the final SASL server response, base64 (resp=).
	FinalResponse string

	// Proxy: log the user in on another server (proxy); the login
	// process then does not hand the client to a post-login service.
	Proxy bool
	// Host, HostIP, Port and SourceIP are the proxy destination (host=,
	// hostip=, port=, source_ip=). Port 0 means the protocol's default.
	Host, HostIP, SourceIP string
	Port                   uint16
	// Destuser is the user name to log in with on the destination
	// (destuser=); Pass the password (pass=); Master the master user
	// (master=).
	Destuser string
	Pass     Secret
	Master   string
	// SSL, StartTLS and SSLAnyCert: how to connect to the destination
	// (ssl=yes|any-cert, starttls=yes|any-cert).
	SSL, StartTLS, SSLAnyCert bool
	// ProxyTimeout (proxy_timeout=: a bare number is seconds, or a
	// Dovecot time such as "500 ms") and ProxyHostImmediateFailureAfter
	// (proxy_host_immediate_failure_after=, a Dovecot time) are kept as
	// sent, for the proxy code to parse with the configuration's time
	// parser; empty when absent (Dovecot's default for the latter is
	// 30 s).
	ProxyTimeout, ProxyHostImmediateFailureAfter string
	// ProxyRefresh is proxy_refresh= (seconds).
	ProxyRefresh time.Duration
	// ProxyMech is the SASL mechanism for the destination (proxy_mech=).
	ProxyMech string
	// ProxyNoAuth, ProxyNoPipelining, ProxyNotTrusted are the flags of
	// the same names.
	ProxyNoAuth, ProxyNoPipelining, ProxyNotTrusted bool

	// AltUsernames are the user_* fields (alternative names, for
	// kicking), in order.
	AltUsernames []Field
	// Forward are the forward_* fields, passed on to a proxy destination.
	Forward []Field
	// Fields are all fields as received, in order.
	Fields []Field
	// Invalid lists fields whose value could not be interpreted (Dovecot
	// logs these as errors and carries on).
	Invalid []string
}

// parseFields interprets OK (success) or FAIL fields.
func parseFields(args []string, success bool) *Reply {
	r := &Reply{}
	for _, a := range args {
		key, value, _ := strings.Cut(a, "=")
		r.Fields = append(r.Fields, Field{key, value})
		switch key {
		case "user":
			r.User = value
		case "original_user":
			r.OriginalUser = value
		case "auth_user":
			r.AuthUser = value
		case "nologin":
			r.Nologin = true
		case "reason":
			r.Reason = value
		case "code":
			if r.Code == "" {
				r.Code = value
			}
			if value == CodeTempFail {
				r.Temp = true
			}
		case "temp":
			r.Temp = true
		case "anonymous":
			r.Anonymous = true
		case "postlogin_socket":
			r.PostloginSocket = value
		case "resp":
			r.FinalResponse = value
		case "proxy":
			r.Proxy = true
		case "host":
			r.Host = value
		case "hostip":
			r.HostIP = value
		case "source_ip":
			r.SourceIP = value
		case "port":
			n, err := strconv.ParseUint(value, 10, 16)
			if err != nil || n == 0 {
				r.Invalid = append(r.Invalid, a)
			} else {
				r.Port = uint16(n)
			}
		case "destuser":
			r.Destuser = value
		case "pass":
			r.Pass = Secret(value)
		case "master":
			r.Master = value
		case "ssl":
			r.SSL = true
			r.SSLAnyCert = r.SSLAnyCert || value == "any-cert"
		case "starttls":
			r.SSL, r.StartTLS = true, true
			r.SSLAnyCert = r.SSLAnyCert || value == "any-cert"
		case "proxy_timeout":
			r.ProxyTimeout = value
		case "proxy_refresh":
			if n, err := parseUint(value); err == nil {
				r.ProxyRefresh = time.Duration(n) * time.Second
			} else {
				r.Invalid = append(r.Invalid, a)
			}
		case "proxy_host_immediate_failure_after":
			r.ProxyHostImmediateFailureAfter = value
		case "proxy_mech":
			r.ProxyMech = value
		case "proxy_noauth":
			r.ProxyNoAuth = true
		case "proxy_nopipelining":
			r.ProxyNoPipelining = true
		case "proxy_not_trusted":
			r.ProxyNotTrusted = true
		default:
			switch {
			case strings.HasPrefix(key, "user_"):
				if success {
					r.AltUsernames = append(r.AltUsernames, Field{key, value})
				}
			case strings.HasPrefix(key, "forward_"):
				r.Forward = append(r.Forward, Field{key, value})
			}
		}
	}
	return r
}

// LogValue implements slog.LogValuer: the fields in order, with pass=
// and resp= shown as REDACTED.
func (r *Reply) LogValue() slog.Value {
	if r == nil {
		return slog.StringValue("<nil>")
	}
	attrs := make([]slog.Attr, 0, len(r.Fields))
	for _, f := range r.Fields {
		v := f.Value
		if f.Key == "pass" || f.Key == "resp" {
			v = redacted
		}
		attrs = append(attrs, slog.String(f.Key, v))
	}
	return slog.GroupValue(attrs...)
}
