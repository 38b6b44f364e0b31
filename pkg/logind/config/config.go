package config

import (
	"crypto/tls"
	"fmt"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/conf"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultConfigFile is where loginsvc reads its configuration when -c is
// not given.
const DefaultConfigFile = "/etc/loginsvc/loginsvc.conf"

// globalDefaults lists every global setting in print order with its
// default value as text (doveconf -a order is alphabetical; so is ours).
var globalDefaults = []struct{ name, def string }{
	{"auth_allow_cleartext", "no"},
	{"base_dir", "/run/loginsvc"},
	{"default_client_limit", "1000"},
	{"default_idle_kill", "1 mins"},
	{"default_login_user", "dovenull"},
	{"default_process_limit", "100"},
	{"default_vsz_limit", "256M"},
	{"disable_plaintext_auth", "yes"},
	{"haproxy_timeout", "3 secs"},
	{"haproxy_trusted_networks", ""},
	{"instance_name", "dovecot"},
	{"listen", "*, ::"},
	{"login_access_sockets", ""},
	{"login_greeting", "loginsvc ready."},
	{"login_log_path", ""},
	{"login_prelogin_ip_limit", "1000"},
	{"login_prelogin_ipv6_prefix", "64"},
	{"login_prelogin_timeout", "3 mins"},
	{"login_socket_path", "login"},
	{"login_trusted_networks", ""},
	{"protocols", "imap pop3"},
	{"shutdown_clients", "yes"},
	{"ssl", "no"},
	{"ssl_cert", ""},
	{"ssl_curve_list", ""},
	{"ssl_key", ""},
	{"ssl_min_protocol", "TLSv1.2"},
	{"syslog_facility", "mail"},
}

// protocolSettings may also be set inside "protocol NAME { }".
var protocolSettings = map[string]bool{
	"login_access_sockets":   true,
	"login_trusted_networks": true,
	"login_greeting":         true,
	"disable_plaintext_auth": true,
	"auth_allow_cleartext":   true,
}

// secretSettings are never printed by -n / -a (doveconf hides ssl_key too).
var secretSettings = map[string]bool{"ssl_key": true}

// serviceDefaults lists every service setting with its default as text.
var serviceDefaults = []struct{ name, def string }{
	{"chroot", "login"},
	{"client_limit", "0"},
	{"idle_kill", "0"},
	{"postlogin_socket", ""},
	{"process_limit", "0"},
	{"process_min_avail", "0"},
	{"service_count", "1"},
	{"user", "$default_login_user"},
	{"vsz_limit", "$default_vsz_limit"},
}

var listenerDefaults = []struct{ name, def string }{
	{"address", ""},
	{"haproxy", "no"},
	{"port", "0"},
	{"reuse_port", "no"},
	{"ssl", "no"},
}

// loginServices are the services loginsvc runs, in order, with their
// login protocol name (what access sockets receive) and default listener.
var loginServices = []struct {
	name, proto, listener string
	port                  int
}{
	{"imap-login", "imap", "imap", 143},
	{"pop3-login", "pop3", "pop3", 110},
	{"submission-login", "submission", "submission", 587},
	{"managesieve-login", "sieve", "sieve", 4190},
}

// LoginServiceNames returns the service names loginsvc knows, in order:
// imap-login, pop3-login, submission-login, managesieve-login.
func LoginServiceNames() []string {
	var n []string
	for _, s := range loginServices {
		n = append(n, s.name)
	}
	return n
}

func protoService(proto string) string {
	for _, s := range loginServices {
		if s.proto == proto {
			return s.name
		}
	}
	return ""
}

// Config is a parsed loginsvc configuration (dovecot.conf syntax). The
// raw text values are kept for printing (-n, -a); the typed fields are
// filled in by the parser's validation and are what the supervisor uses.
// A Config is not modified after Parse returns and may be shared.
type Config struct {
	values   map[string]string
	set      map[string]bool
	pos      map[string]conf.Pos
	disp     map[string]string // "<file" values as written, for printing
	file     string
	protoSet map[string]map[string]string // protocol -> setting -> value
	// Services holds the four login services in the fixed order of
	// LoginServiceNames, enabled or not.
	Services []*Service

	// Typed global values (valid after Parse).

	BaseDir          string
	DefaultLoginUser string
	Protocols        []string
	ShutdownClients  bool
	// PreloginTimeout is the absolute pre-login deadline from accept
	// (Dovecot's fixed 180 s; login_prelogin_timeout, a loginsvc extension).
	PreloginTimeout time.Duration
	// PreloginIPLimit caps the places one source (an IPv4 address, or an
	// IPv6 prefix of PreloginIPv6Prefix bits) holds in a service: its
	// pre-login clients (being checked or logging in) plus its
	// connections waiting for a place (login_prelogin_ip_limit, default
	// DefaultPreloginIPLimit; 0: no cap). A new connection over the cap
	// evicts the source's oldest logging-in client (see evict.go).
	PreloginIPLimit int
	// PreloginIPv6Prefix is the prefix length that makes IPv6 clients one
	// source (login_prelogin_ipv6_prefix, 1 to 128, default 64).
	PreloginIPv6Prefix int
	// SSLCert and SSLKey are the PEM texts of ssl_cert / ssl_key (read with
	// "<file" by the parser, as root). When SSL is not "no" they were
	// checked to form a valid key pair (tls.X509KeyPair).
	SSLCert, SSLKey string
	// SSL is "no", "yes" or "required" (ssl). With "no", ssl = yes
	// listeners are not opened (Listener.Disabled) and STARTTLS is not
	// offered.
	SSL string
	// SSLMinProtocol is the lowest TLS version accepted (ssl_min_protocol:
	// TLSv1, TLSv1.1, TLSv1.2 (default), TLSv1.3), a crypto/tls constant.
	SSLMinProtocol uint16
	// SSLCurves are the key exchanges a TLS handshake may use
	// (ssl_curve_list: OpenSSL's group names separated by colons, e.g.
	// "X25519:prime256v1"; empty, the default: nil, Go's defaults, which
	// begin with the X25519MLKEM768 hybrid). See parseCurveList.
	SSLCurves []tls.CurveID
	// HAProxyTrustedNetworks are the networks (haproxy_trusted_networks,
	// separated by spaces or commas; default none) from which a
	// connection to a haproxy = yes listener may come: a peer outside
	// them is closed before anything is read or written.
	HAProxyTrustedNetworks []netip.Prefix
	// HAProxyTimeout bounds the wait for the PROXY header, from accept
	// (haproxy_timeout, default DefaultHAProxyTimeout).
	HAProxyTimeout time.Duration
	// AuthSocket is Dovecot's auth socket for login processes
	// (login_socket_path, default "login"): relative to the login
	// processes' chroot, base_dir/login, where Dovecot's auth listens
	// when base_dir is Dovecot's (docs/dovecot-auth.md). Empty: no
	// authentication (greetings at once, every login a temporary
	// failure), for loginsvc as an access-check front alone.
	AuthSocket string
	// LoginLogPath is where the login processes' lines go in Dovecot's
	// own syslog format (login_log_path; docs/loginsvc.md, "Log lines
	// for ban tools"): "" (the default) logs them with loginsvc's own
	// lines; "syslog" sends them to the system logger (/dev/log), an
	// absolute path to that unix datagram socket, each as a syslog
	// message from InstanceName at SyslogFacility.
	LoginLogPath string
	// InstanceName is the syslog ident of those lines (instance_name,
	// default "dovecot", as Dovecot's log uses it).
	InstanceName string
	// SyslogFacility is their syslog facility (syslog_facility, default
	// mail), as a priority's facility bits (LOG_MAIL is 2<<3).
	SyslogFacility int
}

// syslogFacilities are syslog_facility's names (Dovecot's list) and
// their codes (<< 3 in a priority).
var syslogFacilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// DefaultPreloginIPLimit is the default login_prelogin_ip_limit.
const DefaultPreloginIPLimit = 1000

// DefaultHAProxyTimeout is the default haproxy_timeout, Dovecot's 3 s.
const DefaultHAProxyTimeout = 3 * time.Second

// Service is one login service ("service imap-login { }").
type Service struct {
	Name     string
	Protocol string // imap, pop3, submission, sieve
	values   map[string]string
	set      map[string]bool
	pos      map[string]conf.Pos
	// Listeners in configuration order (defaults first).
	Listeners []*Listener

	// Effective values (after Parse), as Dovecot's master computes them
	// (docs/loginsvc.md, "Configuration"): ClientLimit is clamped to ServiceCount when that is
	// non-zero, so it is 1 in high-security mode.

	ServiceCount    int
	ProcessMinAvail int
	ProcessLimit    int
	ClientLimit     int
	VszLimit        uint64        // bytes; 0 = unlimited
	IdleKill        time.Duration // 0 = never
	User            string
	Chroot          string // absolute, or "" for no chroot
	// AccessSockets is login_access_sockets for this protocol, split on
	// spaces.
	AccessSockets   []string
	TrustedNetworks []netip.Prefix
	Greeting        string
	// AuthAllowCleartext: plaintext authentication (IMAP LOGIN, POP3
	// USER/PASS, the PLAIN and LOGIN mechanisms) is allowed on a
	// connection that is not secured. Dovecot 2.3's
	// disable_plaintext_auth (default yes) and 2.4's
	// auth_allow_cleartext (default no, its inverse) both set it, in
	// the protocol section or globally.
	AuthAllowCleartext bool
	// PostloginSocket is the post-login service's socket a logged-in
	// client is handed to (postlogin_socket, default the protocol's
	// name: imap, pop3, submission, sieve), relative to the chroot.
	PostloginSocket string
}

// Listener is one "inet_listener NAME { }".
type Listener struct {
	Name   string
	values map[string]string
	defs   map[string]string
	set    map[string]bool
	pos    map[string]conf.Pos

	// Typed values (after Parse).

	Addresses []string // "*" = all IPv4, "::" = all IPv6
	Port      int
	SSL       bool
	HAProxy   bool
	ReusePort bool
	// Disabled is set for an ssl = yes listener while the global ssl is
	// "no": as in Dovecot's master, it is not opened.
	Disabled bool
}

// NewConfig returns the default configuration (what an empty file gives),
// before validation.
func NewConfig() *Config {
	c := &Config{values: map[string]string{}, set: map[string]bool{}, pos: map[string]conf.Pos{}, disp: map[string]string{}, protoSet: map[string]map[string]string{}}
	for _, d := range globalDefaults {
		c.values[d.name] = d.def
	}
	for _, s := range loginServices {
		svc := &Service{Name: s.name, Protocol: s.proto, values: map[string]string{}, set: map[string]bool{}, pos: map[string]conf.Pos{}}
		for _, d := range serviceDefaults {
			svc.values[d.name] = d.def
		}
		svc.values["postlogin_socket"] = s.proto
		l := svc.listener(s.listener)
		l.values["port"] = strconv.Itoa(s.port)
		l.defs["port"] = l.values["port"]
		c.Services = append(c.Services, svc)
	}
	return c
}

// Service returns the login service called name, or nil.
func (c *Config) Service(name string) *Service {
	for _, s := range c.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Enabled returns the services whose protocol is in protocols and that
// have at least one listener with a port, in order.
func (c *Config) Enabled() []*Service {
	var out []*Service
	for _, s := range c.Services {
		if !slices.Contains(c.Protocols, s.Protocol) {
			continue
		}
		for _, l := range s.Listeners {
			if l.Port != 0 && !l.Disabled {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// ControlSocket is the path of the loginctl control socket:
// base_dir/loginsvc.ctl.
func (c *Config) ControlSocket() string { return filepath.Join(c.BaseDir, "loginsvc.ctl") }

// PIDFile is base_dir/loginsvc.pid: the running supervisor's pid, locked
// (flock) while it runs so that a second one with the same base_dir
// refuses to start.
func (c *Config) PIDFile() string { return filepath.Join(c.BaseDir, "loginsvc.pid") }

func (c *Config) setGlobal(pos conf.Pos, key, value string) error {
	if _, ok := c.values[key]; !ok {
		if isServiceSetting(key) {
			return fmt.Errorf("%s: only valid inside a service section", key)
		}
		return fmt.Errorf("unknown setting: %s", key)
	}
	c.values[key] = value
	c.set[key] = true
	c.pos[key] = pos
	return nil
}

func (c *Config) setProtocol(pos conf.Pos, proto, key, value string) error {
	if !protocolSettings[key] {
		return fmt.Errorf("%s: not valid inside a protocol section (allowed: auth_allow_cleartext, disable_plaintext_auth, login_access_sockets, login_greeting, login_trusted_networks)", key)
	}
	m := c.protoSet[proto]
	if m == nil {
		m = map[string]string{}
		c.protoSet[proto] = m
	}
	m[key] = value
	c.pos[proto+"/"+key] = pos
	return nil
}

// isServiceSetting reports whether key is a setting of service sections.
func isServiceSetting(key string) bool {
	for _, d := range serviceDefaults {
		if d.name == key {
			return true
		}
	}
	return false
}

func (s *Service) listener(name string) *Listener {
	for _, l := range s.Listeners {
		if l.Name == name {
			return l
		}
	}
	l := &Listener{Name: name, values: map[string]string{}, set: map[string]bool{}, defs: map[string]string{}, pos: map[string]conf.Pos{}}
	for _, d := range listenerDefaults {
		l.values[d.name] = d.def
		l.defs[d.name] = d.def
	}
	s.Listeners = append(s.Listeners, l)
	return l
}

func (s *Service) setValue(pos conf.Pos, key, value string) error {
	if _, ok := s.values[key]; !ok {
		return fmt.Errorf("unknown setting in service %s: %s", s.Name, key)
	}
	s.values[key] = value
	s.set[key] = true
	s.pos[key] = pos
	return nil
}

func (l *Listener) setValue(pos conf.Pos, key, value string) error {
	if _, ok := l.values[key]; !ok {
		return fmt.Errorf("unknown setting in inet_listener %s: %s", l.Name, key)
	}
	l.values[key] = value
	l.set[key] = true
	l.pos[key] = pos
	return nil
}

// setting is one value with the position that set it (the main file,
// line 0, for a default).
type setting struct {
	v   string
	pos conf.Pos
}

// global is the global setting k.
func (c *Config) global(k string) setting { return setting{c.values[k], c.posOf(c.pos, k)} }

// posOf is where key was set in m, else the main file.
func (c *Config) posOf(m map[string]conf.Pos, key string) conf.Pos {
	if p, ok := m[key]; ok {
		return p
	}
	return conf.Pos{File: c.file}
}

// protocolValue is setting k for protocol proto: its protocol section's
// value if it has one, else the global one.
func (c *Config) protocolValue(proto, k string) setting {
	if m := c.protoSet[proto]; m != nil {
		if v, ok := m[k]; ok {
			return setting{v, c.posOf(c.pos, proto+"/"+k)}
		}
	}
	return c.global(k)
}

// validate fills in the typed fields and checks every value. Each error
// is at the FILE:LINE where the offending value was set (the main file
// for a bad default-derived value).
func (c *Config) validate() conf.ErrorList {
	var errs conf.ErrorList
	bad := func(at conf.Pos, format string, args ...any) {
		errs = append(errs, &conf.Error{Pos: at, Msg: fmt.Sprintf(format, args...)})
	}
	var err error
	listen := c.global("listen")
	_, lerrs := parseListenAddresses(listen.v)
	for _, e := range lerrs {
		bad(listen.pos, "listen: %s", e)
	}
	if g := c.global("base_dir"); !filepath.IsAbs(g.v) {
		bad(g.pos, "base_dir: must be an absolute path: %q", g.v)
	}
	c.BaseDir = c.values["base_dir"]
	c.DefaultLoginUser = c.values["default_login_user"]
	protocols := c.global("protocols")
	c.Protocols = strings.Fields(protocols.v)
	for _, p := range c.Protocols {
		if protoService(p) == "" && p != "lmtp" && p != "none" {
			bad(protocols.pos, "protocols: unknown protocol %q", p)
		}
	}
	g := c.global("shutdown_clients")
	if c.ShutdownClients, err = parseBool(g.v); err != nil {
		bad(g.pos, "shutdown_clients: %v", err)
	}
	g = c.global("login_prelogin_timeout")
	if c.PreloginTimeout, err = ParseDuration(g.v); err != nil || c.PreloginTimeout <= 0 {
		bad(g.pos, "login_prelogin_timeout: invalid time %q", g.v)
	}
	g = c.global("login_prelogin_ip_limit")
	if c.PreloginIPLimit, err = strconv.Atoi(g.v); err != nil || c.PreloginIPLimit < 0 {
		bad(g.pos, "login_prelogin_ip_limit: invalid number %q", g.v)
	}
	g = c.global("login_prelogin_ipv6_prefix")
	if c.PreloginIPv6Prefix, err = strconv.Atoi(strings.TrimPrefix(g.v, "/")); err != nil || c.PreloginIPv6Prefix < 1 || c.PreloginIPv6Prefix > 128 {
		bad(g.pos, "login_prelogin_ipv6_prefix: invalid prefix length %q (1 to 128)", g.v)
		c.PreloginIPv6Prefix = 64
	}
	c.SSLCert, c.SSLKey = c.values["ssl_cert"], c.values["ssl_key"]
	ssl := c.global("ssl")
	switch c.SSL = strings.ToLower(ssl.v); c.SSL {
	case "required", "no":
	default:
		if v, err := parseBool(c.SSL); err != nil {
			bad(ssl.pos, "ssl: invalid value %q (use yes, no or required)", ssl.v)
			c.SSL = "no"
		} else if v {
			c.SSL = "yes"
		} else {
			c.SSL = "no"
		}
	}
	g = c.global("ssl_min_protocol")
	if c.SSLMinProtocol, err = parseTLSVersion(g.v); err != nil {
		bad(g.pos, "ssl_min_protocol: %v", err)
	}
	g = c.global("ssl_curve_list")
	if c.SSLCurves, err = parseCurveList(g.v); err != nil {
		bad(g.pos, "ssl_curve_list: %v", err)
	}
	if c.SSL != "no" {
		// Dovecot's messages; the key is never quoted in an error.
		switch {
		case c.SSLCert == "":
			bad(ssl.pos, "ssl enabled, but ssl_cert not set")
		case c.SSLKey == "":
			bad(ssl.pos, "ssl enabled, but ssl_key not set")
		case !strings.Contains(c.SSLCert, "-----BEGIN"):
			bad(c.global("ssl_cert").pos, "ssl_cert: not PEM data (to read a file, write ssl_cert = <%s)", clip(strings.TrimSpace(c.SSLCert)))
		case !strings.Contains(c.SSLKey, "-----BEGIN"):
			bad(c.global("ssl_key").pos, "ssl_key: not PEM data (to read a file, write ssl_key = <FILE)")
		default:
			if _, err := tls.X509KeyPair([]byte(c.SSLCert), []byte(c.SSLKey)); err != nil {
				bad(c.global("ssl_key").pos, "ssl_cert, ssl_key: cannot load the key pair: %v", err)
			}
		}
	}
	g = c.global("default_process_limit")
	defProc, err := atoiUint32(g.v)
	if err != nil || defProc < 1 {
		bad(g.pos, "default_process_limit: invalid number %q", g.v)
	}
	g = c.global("default_client_limit")
	defClient, err := atoiUint32(g.v)
	if err != nil || defClient < 1 {
		bad(g.pos, "default_client_limit: invalid number %q", g.v)
	}
	g = c.global("default_idle_kill")
	defIdle, err := ParseDuration(g.v)
	if err != nil {
		bad(g.pos, "default_idle_kill: %v", err)
	}
	g = c.global("default_vsz_limit")
	if v, err := ParseSize(g.v); err != nil {
		bad(g.pos, "default_vsz_limit: %v", err)
	} else if v != 0 && v < MinVszLimit {
		bad(g.pos, "default_vsz_limit: %s is below %dM, the least a Go login process can work with (see vsz_limit in docs/loginsvc.md)", strings.TrimSpace(g.v), MinVszLimit>>20)
	}
	for proto, m := range c.protoSet {
		if v, ok := m["login_trusted_networks"]; ok {
			for _, err := range parseNetworks(v, nil) {
				bad(c.posOf(c.pos, proto+"/login_trusted_networks"), "protocol %s: login_trusted_networks: %v", proto, err)
			}
		}
	}
	g = c.global("login_trusted_networks")
	for _, err := range parseNetworks(g.v, nil) {
		bad(g.pos, "login_trusted_networks: %v", err)
	}
	c.HAProxyTrustedNetworks = nil
	g = c.global("haproxy_trusted_networks")
	for _, err := range parseNetworks(g.v, &c.HAProxyTrustedNetworks) {
		bad(g.pos, "haproxy_trusted_networks: %v", err)
	}
	c.AuthSocket = strings.TrimSpace(c.values["login_socket_path"])
	g = c.global("haproxy_timeout")
	if c.HAProxyTimeout, err = ParseDuration(g.v); err != nil || c.HAProxyTimeout <= 0 {
		bad(g.pos, "haproxy_timeout: invalid time %q", g.v)
	}
	g = c.global("login_log_path")
	if c.LoginLogPath = strings.TrimSpace(g.v); c.LoginLogPath != "" && c.LoginLogPath != "syslog" && !filepath.IsAbs(c.LoginLogPath) {
		bad(g.pos, "login_log_path: %q is neither syslog nor an absolute path", g.v)
	}
	g = c.global("instance_name")
	if c.InstanceName = strings.TrimSpace(g.v); c.InstanceName == "" || strings.ContainsAny(c.InstanceName, " \t:[") {
		bad(g.pos, "instance_name: %q is not a syslog ident (empty, or a space, ':' or '[' in it)", g.v)
	}
	g = c.global("syslog_facility")
	if f, ok := syslogFacilities[strings.TrimSpace(g.v)]; ok {
		c.SyslogFacility = f << 3
	} else {
		bad(g.pos, "syslog_facility: unknown facility %q", g.v)
	}
	for _, s := range c.Services {
		sv := func(k string) setting { return setting{s.values[k], c.posOf(s.pos, k)} }
		num := func(k string) int {
			x := sv(k)
			v, err := atoiUint32(x.v)
			if err != nil || v < 0 {
				bad(x.pos, "service %s: %s: invalid number %q", s.Name, k, x.v)
				return 0
			}
			return v
		}
		s.ServiceCount = num("service_count")
		s.ProcessMinAvail = num("process_min_avail")
		if s.ProcessLimit = num("process_limit"); s.ProcessLimit == 0 {
			s.ProcessLimit = defProc
		}
		if s.ClientLimit = num("client_limit"); s.ClientLimit == 0 {
			s.ClientLimit = defClient
		}
		if s.ServiceCount > 0 && s.ClientLimit > s.ServiceCount {
			s.ClientLimit = s.ServiceCount
		}
		if s.ProcessMinAvail > s.ProcessLimit {
			bad(sv("process_min_avail").pos, "service %s: process_min_avail (%d) > process_limit (%d)", s.Name, s.ProcessMinAvail, s.ProcessLimit)
		}
		vszSet := sv("vsz_limit")
		vsz := expandVar(vszSet.v, c.values)
		if s.VszLimit, err = ParseSize(vsz); strings.HasPrefix(vszSet.v, "$") {
			// $default_vsz_limit: checked once, at its own line, above.
		} else if err != nil {
			bad(vszSet.pos, "service %s: vsz_limit: %v", s.Name, err)
		} else if s.VszLimit != 0 && s.VszLimit < MinVszLimit {
			bad(vszSet.pos, "service %s: vsz_limit: %s is below %dM, the least a Go login process can work with (see vsz_limit in docs/loginsvc.md)", s.Name, strings.TrimSpace(vsz), MinVszLimit>>20)
		}
		ik := sv("idle_kill")
		if d, err := ParseDuration(ik.v); err != nil {
			bad(ik.pos, "service %s: idle_kill: %v", s.Name, err)
		} else {
			if d == 0 {
				d = defIdle
			}
			if d >= 4294967295*time.Second {
				d = 0
			}
			s.IdleKill = d
		}
		s.User = expandVar(s.values["user"], c.values)
		s.Chroot = expandVar(s.values["chroot"], c.values)
		if s.Chroot != "" && !filepath.IsAbs(s.Chroot) {
			s.Chroot = filepath.Join(c.BaseDir, s.Chroot)
		}
		s.AccessSockets = strings.Fields(c.protocolValue(s.Protocol, "login_access_sockets").v)
		// A "<file" value keeps the file's final newline (as in
		// Dovecot); a greeting is one protocol line, so that newline goes
		// and any other line break is an error.
		greeting := c.protocolValue(s.Protocol, "login_greeting")
		s.Greeting = strings.TrimRight(greeting.v, "\r\n")
		if strings.ContainsAny(s.Greeting, "\r\n\x00") {
			bad(greeting.pos, "login_greeting: must be one line (it contains a line break or NUL)")
		}
		s.AuthAllowCleartext = c.allowCleartext(s.Protocol, bad)
		if s.PostloginSocket = s.values["postlogin_socket"]; strings.TrimSpace(s.PostloginSocket) == "" {
			bad(sv("postlogin_socket").pos, "service %s: postlogin_socket: must not be empty", s.Name)
		}
		s.TrustedNetworks = nil
		parseNetworks(c.protocolValue(s.Protocol, "login_trusted_networks").v, &s.TrustedNetworks)
		for _, l := range s.Listeners {
			lv := func(k string) setting { return setting{l.values[k], c.posOf(l.pos, k)} }
			var aerrs []string
			if addr := lv("address"); addr.v != "" {
				l.Addresses, aerrs = parseListenAddresses(addr.v)
				for _, e := range aerrs {
					bad(addr.pos, "service %s: inet_listener %s: address: %s", s.Name, l.Name, e)
				}
			} else {
				l.Addresses, _ = parseListenAddresses(c.values["listen"]) // errors: reported once, for listen
			}
			port := lv("port")
			if l.Port, err = strconv.Atoi(port.v); err != nil || l.Port < 0 || l.Port > 65535 {
				bad(port.pos, "service %s: inet_listener %s: port: invalid port %q", s.Name, l.Name, port.v)
			}
			for _, k := range []string{"ssl", "haproxy", "reuse_port"} {
				x := lv(k)
				v, err := parseBool(x.v)
				if err != nil {
					bad(x.pos, "service %s: inet_listener %s: %s: %v", s.Name, l.Name, k, err)
				}
				switch k {
				case "ssl":
					l.SSL = v
					l.Disabled = v && c.SSL == "no"
				case "haproxy":
					l.HAProxy = v
				case "reuse_port":
					l.ReusePort = v
				}
			}
		}
	}
	// Two listeners on one address and port (in one service or two) would
	// share one socket; Dovecot refuses them too ("duplicate listener").
	type owner struct {
		svc, ln string
		pos     conf.Pos
	}
	seen := map[Endpoint]owner{}
	for _, s := range c.Enabled() {
		for _, l := range s.Listeners {
			at := c.posOf(l.pos, "port")
			for _, e := range l.Endpoints() {
				if o, dup := seen[e]; dup {
					bad(at, "service %s: inet_listener %s: duplicate listener %s (also service %s, inet_listener %s at %s)", s.Name, l.Name, e.Addr, o.svc, o.ln, o.pos)
					continue
				}
				seen[e] = owner{s.Name, l.Name, at}
			}
		}
	}
	// In file order, each message once (a global value checked for each
	// service would otherwise repeat).
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].Pos, errs[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return slices.CompactFunc(errs, func(a, b *conf.Error) bool { return a.Pos == b.Pos && a.Msg == b.Msg })
}

// parseListenAddresses splits a listen or address value (space or comma
// separated) into "*", "::" and canonical IP addresses ([IPv6] accepted,
// IPv4-mapped IPv6 made IPv4), with a message for each bad word.
func parseListenAddresses(v string) (addrs, errs []string) {
	for _, a := range strings.Fields(strings.ReplaceAll(v, ",", " ")) {
		if a == "*" || a == "::" {
			addrs = append(addrs, a)
			continue
		}
		ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"))
		if err != nil || ip.Zone() != "" {
			errs = append(errs, fmt.Sprintf("invalid IP %q (an IPv4 or IPv6 address, [IPv6], * or ::)", a))
			continue
		}
		addrs = append(addrs, ip.Unmap().String())
	}
	return addrs, errs
}

// Endpoint is one listening socket: Network "tcp4" or "tcp6", Addr
// "host:port" with a numeric host (0.0.0.0 for *, :: for ::).
type Endpoint struct{ Network, Addr string }

// Endpoints returns the sockets l binds, one per address, or none if its
// port is 0 or it is Disabled.
func (l *Listener) Endpoints() []Endpoint {
	if l.Port == 0 || l.Disabled {
		return nil
	}
	var out []Endpoint
	for _, a := range l.Addresses {
		network, host := "tcp4", "0.0.0.0"
		switch a {
		case "*":
		case "::":
			network, host = "tcp6", "::"
		default:
			ip, err := netip.ParseAddr(a)
			if err != nil {
				continue // reported by validate
			}
			host = ip.String()
			if ip.Is6() {
				network = "tcp6"
			}
		}
		out = append(out, Endpoint{network, net.JoinHostPort(host, strconv.Itoa(l.Port))})
	}
	return out
}

// atoiUint32 parses a count as Dovecot's unsigned int settings hold it:
// decimal, 0 to 4294967295 (on 64-bit Linux an int holds it).
func atoiUint32(s string) (int, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	return int(v), err
}

// expandVar is v, or if v is "$name" the global setting name's value (a
// service default such as "$default_login_user").
func expandVar(v string, values map[string]string) string {
	if strings.HasPrefix(v, "$") {
		if x, ok := values[v[1:]]; ok {
			return x
		}
	}
	return v
}

// parseNetwork parses one network of login_trusted_networks or
// haproxy_trusted_networks: an address (a network of one) or a CIDR
// prefix, masked; IPv4-mapped IPv6 addresses are made IPv4.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid network %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid network %q", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// parseNetworks parses a list of networks separated by spaces or commas
// (login_trusted_networks, haproxy_trusted_networks), each as
// parseNetwork does. It appends the valid ones to *out if out is not
// nil and returns an error for each invalid one.
func parseNetworks(s string, out *[]netip.Prefix) []error {
	var errs []error
	for _, n := range strings.Fields(strings.ReplaceAll(s, ",", " ")) {
		p, err := parseNetwork(n)
		switch {
		case err != nil:
			errs = append(errs, err)
		case out != nil:
			*out = append(*out, p)
		}
	}
	return errs
}

// parseBool parses a Dovecot boolean: yes/no, y/n, true/false, 1/0 in
// any case; "" is no.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "y", "true", "1":
		return true, nil
	case "no", "n", "false", "0", "":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q (use yes or no)", s)
}

// MinVszLimit is the smallest non-zero vsz_limit loginsvc accepts:
// 16 MiB of memory beyond a login process's start-up footprint (see
// vsz_limit in docs/loginsvc.md).
const MinVszLimit = 16 << 20

// ParseSize parses a Dovecot size: a number with an optional unit B, k,
// M, G or T (optionally followed by B, e.g. "64M", "1 GB", "512k"); a
// bare number is bytes. It returns bytes.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	unit := strings.ToUpper(strings.TrimSpace(t[i:]))
	unit = strings.TrimSuffix(unit, "B")
	mult := map[string]uint64{"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
	if mult == 0 && unit != "" {
		return 0, fmt.Errorf("invalid size unit in %q", s)
	}
	if unit == "" && strings.ToUpper(strings.TrimSpace(t[i:])) == "" {
		mult = 1
	} else if unit == "" {
		mult = 1
	}
	if n > (1<<63)/mult {
		return 0, fmt.Errorf("size too large: %q", s)
	}
	return n * mult, nil
}

// ParseDuration parses a Dovecot time: a number with an optional unit
// (ms/msecs, s/secs/seconds, m/mins/minutes, h/hours, d/days, w/weeks);
// a bare number is seconds.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid time %q", s)
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid time %q", s)
	}
	var unit time.Duration
	switch strings.ToLower(strings.TrimSpace(t[i:])) {
	case "ms", "msec", "msecs", "millisecond", "milliseconds":
		unit = time.Millisecond
	case "", "s", "sec", "secs", "second", "seconds":
		unit = time.Second
	case "m", "min", "mins", "minute", "minutes":
		unit = time.Minute
	case "h", "hour", "hours":
		unit = time.Hour
	case "d", "day", "days":
		unit = 24 * time.Hour
	case "w", "week", "weeks":
		unit = 7 * 24 * time.Hour
	default:
		return 0, fmt.Errorf("invalid time unit in %q", s)
	}
	if n > uint64(1<<62)/uint64(unit) {
		return 0, fmt.Errorf("time too large: %q", s)
	}
	return time.Duration(n) * unit, nil
}

// parseTLSVersion parses ssl_min_protocol: TLSv1, TLSv1.1, TLSv1.2,
// TLSv1.3 (Dovecot's names; SSLv3 and ANY are not supported by
// crypto/tls and are errors).
func parseTLSVersion(s string) (uint16, error) {
	switch s {
	case "TLSv1", "TLSv1.0":
		return tls.VersionTLS10, nil
	case "TLSv1.1":
		return tls.VersionTLS11, nil
	case "TLSv1.2":
		return tls.VersionTLS12, nil
	case "TLSv1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unsupported protocol %q (use TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)", s)
}

// curveNames are the OpenSSL group names (lower case) of the key
// exchanges crypto/tls implements.
var curveNames = map[string]tls.CurveID{
	"x25519":             tls.X25519,
	"p-256":              tls.CurveP256,
	"prime256v1":         tls.CurveP256,
	"secp256r1":          tls.CurveP256,
	"p-384":              tls.CurveP384,
	"secp384r1":          tls.CurveP384,
	"p-521":              tls.CurveP521,
	"secp521r1":          tls.CurveP521,
	"x25519mlkem768":     tls.X25519MLKEM768,
	"secp256r1mlkem768":  tls.SecP256r1MLKEM768,
	"secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
}

// parseCurveList parses ssl_curve_list as OpenSSL's
// SSL_CTX_set1_curves_list reads it: group names separated by colons
// (or by OpenSSL 3.5's "/" between tuples), in any case. A name
// prefixed with "?" is skipped when unknown (OpenSSL 3.5's syntax; its
// "*" key-share prefix, before or after the "?", is accepted and has
// no effect); any other unknown name (OpenSSL 3.5's DEFAULT and
// "-" removals included), or a group crypto/tls does not implement
// (X448, the ffdhe groups, brainpool), is an error, as the list does
// not mean what the administrator wrote. Empty means nil: Go's defaults. The
// order does not matter: crypto/tls keeps its own order of preference
// among the groups allowed.
func parseCurveList(s string) ([]tls.CurveID, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []tls.CurveID
	for _, name := range strings.Split(strings.ReplaceAll(s, "/", ":"), ":") {
		name = strings.TrimSpace(name)
		// The prefixes come in either order (?*name, *?name).
		bare := strings.TrimLeft(name, "?*")
		optional := strings.Contains(name[:len(name)-len(bare)], "?")
		name = bare
		id, ok := curveNames[strings.ToLower(name)]
		switch {
		case ok && !slices.Contains(out, id):
			out = append(out, id)
		case ok, optional:
		case name == "":
			return nil, fmt.Errorf("empty group name in %q", s)
		default:
			return nil, fmt.Errorf("unsupported group %q (supported: X25519, prime256v1, secp384r1, secp521r1, X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024)", name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no supported group in %q", s)
	}
	return out, nil
}

// listenAddrs returns the local addresses ("IP:port"; 0.0.0.0 and :: for
// wildcards) of svc's opened listeners for which want is true.
func listenAddrs(svc *Service, want func(*Listener) bool) []string {
	var out []string
	for _, l := range svc.Listeners {
		if !want(l) || l.Disabled || l.Port == 0 {
			continue
		}
		for _, a := range l.Addresses {
			var ip netip.Addr
			switch a {
			case "*":
				ip = netip.IPv4Unspecified()
			case "::":
				ip = netip.IPv6Unspecified()
			default:
				var err error
				if ip, err = netip.ParseAddr(strings.Trim(a, "[]")); err != nil {
					continue // reported by Parse
				}
				ip = ip.Unmap()
			}
			out = append(out, netip.AddrPortFrom(ip, uint16(l.Port)).String())
		}
	}
	return out
}

// SSLListenAddrs returns the local addresses ("IP:port"; 0.0.0.0 and ::
// for wildcards) of s's opened ssl = yes listeners.
func (s *Service) SSLListenAddrs() []string {
	return listenAddrs(s, func(l *Listener) bool { return l.SSL })
}

// HAProxyListenAddrs returns the local addresses of s's opened haproxy =
// yes listeners.
func (s *Service) HAProxyListenAddrs() []string {
	return listenAddrs(s, func(l *Listener) bool { return l.HAProxy })
}

// Mode names a service's process mode from its service_count.
func (s *Service) Mode() string {
	switch s.ServiceCount {
	case 0:
		return "high-performance"
	case 1:
		return "high-security"
	}
	return "service_count=" + strconv.Itoa(s.ServiceCount)
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// allowCleartext is whether plaintext authentication is allowed without a
// secured connection for protocol proto: auth_allow_cleartext (2.4's
// name) or the inverse of disable_plaintext_auth (2.3's), whichever is
// set in the protocol's section, else globally; both set there to
// contradicting values is an error.
func (c *Config) allowCleartext(proto string, bad func(conf.Pos, string, ...any)) bool {
	// scope: 2 set in the protocol's section, 1 globally, 0 default.
	explicit := func(k string) (setting, int) {
		if m := c.protoSet[proto]; m != nil {
			if _, ok := m[k]; ok {
				return c.protocolValue(proto, k), 2
			}
		}
		if c.set[k] {
			return c.global(k), 1
		}
		return c.global(k), 0
	}
	allow, aScope := explicit("auth_allow_cleartext")
	disable, dScope := explicit("disable_plaintext_auth")
	a, aerr := parseBool(allow.v)
	if aerr != nil {
		bad(allow.pos, "auth_allow_cleartext: %v", aerr)
	}
	d, derr := parseBool(disable.v)
	if derr != nil {
		bad(disable.pos, "disable_plaintext_auth: %v", derr)
	}
	switch {
	case aScope > 0 && aScope == dScope && aerr == nil && derr == nil && a == d:
		bad(allow.pos, "auth_allow_cleartext = %s contradicts disable_plaintext_auth = %s (set one of them)", allow.v, disable.v)
		return false
	case aScope > dScope:
		return a && aerr == nil
	}
	return !d && derr == nil
}
