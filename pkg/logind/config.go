package logind

import (
	"crypto/tls"
	"fmt"
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
	{"base_dir", "/run/loginsvc"},
	{"default_client_limit", "1000"},
	{"default_idle_kill", "1 mins"},
	{"default_login_user", "dovenull"},
	{"default_process_limit", "100"},
	{"default_vsz_limit", "256M"},
	{"haproxy_timeout", "3 secs"},
	{"haproxy_trusted_networks", ""},
	{"listen", "*, ::"},
	{"login_access_sockets", ""},
	{"login_greeting", "loginsvc ready."},
	{"login_prelogin_ip_limit", "1000"},
	{"login_prelogin_ipv6_prefix", "64"},
	{"login_prelogin_timeout", "3 mins"},
	{"login_trusted_networks", ""},
	{"protocols", "imap pop3"},
	{"shutdown_clients", "yes"},
	{"ssl", "no"},
	{"ssl_cert", ""},
	{"ssl_key", ""},
	{"ssl_min_protocol", "TLSv1.2"},
}

// protocolSettings may also be set inside "protocol NAME { }".
var protocolSettings = map[string]bool{
	"login_access_sockets":   true,
	"login_trusted_networks": true,
	"login_greeting":         true,
}

// secretSettings are never printed by -n / -a (doveconf hides ssl_key too).
var secretSettings = map[string]bool{"ssl_key": true}

// serviceDefaults lists every service setting with its default as text.
var serviceDefaults = []struct{ name, def string }{
	{"chroot", "login"},
	{"client_limit", "0"},
	{"idle_kill", "0"},
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
	pos      map[string]Pos
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
	// HAProxyTrustedNetworks are the networks (haproxy_trusted_networks,
	// separated by spaces or commas; default none) from which a
	// connection to a haproxy = yes listener may come: a peer outside
	// them is closed before anything is read or written.
	HAProxyTrustedNetworks []netip.Prefix
	// HAProxyTimeout bounds the wait for the PROXY header, from accept
	// (haproxy_timeout, default DefaultHAProxyTimeout).
	HAProxyTimeout time.Duration
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
	pos      map[string]Pos
	// Listeners in configuration order (defaults first).
	Listeners []*Listener

	// Effective values (after Parse), as Dovecot's master computes them
	// (spec §2.1): ClientLimit is clamped to ServiceCount when that is
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
}

// Listener is one "inet_listener NAME { }".
type Listener struct {
	Name   string
	values map[string]string
	defs   map[string]string
	set    map[string]bool
	pos    map[string]Pos

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
	c := &Config{values: map[string]string{}, set: map[string]bool{}, pos: map[string]Pos{}, disp: map[string]string{}, protoSet: map[string]map[string]string{}}
	for _, d := range globalDefaults {
		c.values[d.name] = d.def
	}
	for _, s := range loginServices {
		svc := &Service{Name: s.name, Protocol: s.proto, values: map[string]string{}, set: map[string]bool{}, pos: map[string]Pos{}}
		for _, d := range serviceDefaults {
			svc.values[d.name] = d.def
		}
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
		if !contains(c.Protocols, s.Protocol) {
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

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (c *Config) globalValue(name string) (string, bool) {
	v, ok := c.values[name]
	return v, ok
}

func (c *Config) setGlobal(pos Pos, key, value string) error {
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

func (c *Config) setProtocol(pos Pos, proto, key, value string) error {
	if !protocolSettings[key] {
		return fmt.Errorf("%s: not valid inside a protocol section (allowed: login_access_sockets, login_greeting, login_trusted_networks)", key)
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
	l := &Listener{Name: name, values: map[string]string{}, set: map[string]bool{}, defs: map[string]string{}, pos: map[string]Pos{}}
	for _, d := range listenerDefaults {
		l.values[d.name] = d.def
		l.defs[d.name] = d.def
	}
	s.Listeners = append(s.Listeners, l)
	return l
}

func (s *Service) setValue(pos Pos, key, value string) error {
	if _, ok := s.values[key]; !ok {
		return fmt.Errorf("unknown setting in service %s: %s", s.Name, key)
	}
	s.values[key] = value
	s.set[key] = true
	s.pos[key] = pos
	return nil
}

func (l *Listener) setValue(pos Pos, key, value string) error {
	if _, ok := l.values[key]; !ok {
		return fmt.Errorf("unknown setting in inet_listener %s: %s", l.Name, key)
	}
	l.values[key] = value
	l.set[key] = true
	l.pos[key] = pos
	return nil
}

// validate fills in the typed fields and checks every value. Each error
// carries the FILE:LINE where the offending setting was set (the main
// file for a bad default-derived value).
func (c *Config) validate() ErrorList {
	var errs ErrorList
	at := Pos{File: c.file}
	bad := func(format string, args ...any) {
		errs = append(errs, &Error{Pos: at, Msg: fmt.Sprintf(format, args...)})
	}
	posOf := func(m map[string]Pos, k string) Pos {
		if p, ok := m[k]; ok {
			return p
		}
		return Pos{File: c.file}
	}
	g := func(k string) string {
		at = posOf(c.pos, k)
		return c.values[k]
	}
	var err error
	if _, errs := parseListenAddresses(g("listen")); len(errs) > 0 {
		for _, e := range errs {
			bad("listen: %s", e)
		}
	}
	if c.BaseDir = g("base_dir"); !filepath.IsAbs(c.BaseDir) {
		bad("base_dir: must be an absolute path: %q", c.BaseDir)
	}
	c.DefaultLoginUser = g("default_login_user")
	c.Protocols = strings.Fields(g("protocols"))
	for _, p := range c.Protocols {
		if protoService(p) == "" && p != "lmtp" && p != "none" {
			bad("protocols: unknown protocol %q", p)
		}
	}
	if c.ShutdownClients, err = parseBool(g("shutdown_clients")); err != nil {
		bad("shutdown_clients: %v", err)
	}
	if c.PreloginTimeout, err = ParseDuration(g("login_prelogin_timeout")); err != nil || c.PreloginTimeout <= 0 {
		bad("login_prelogin_timeout: invalid time %q", c.values["login_prelogin_timeout"])
	}
	if c.PreloginIPLimit, err = strconv.Atoi(g("login_prelogin_ip_limit")); err != nil || c.PreloginIPLimit < 0 {
		bad("login_prelogin_ip_limit: invalid number %q", c.values["login_prelogin_ip_limit"])
	}
	if c.PreloginIPv6Prefix, err = strconv.Atoi(strings.TrimPrefix(g("login_prelogin_ipv6_prefix"), "/")); err != nil || c.PreloginIPv6Prefix < 1 || c.PreloginIPv6Prefix > 128 {
		bad("login_prelogin_ipv6_prefix: invalid prefix length %q (1 to 128)", c.values["login_prelogin_ipv6_prefix"])
		c.PreloginIPv6Prefix = 64
	}
	c.SSLCert, c.SSLKey = c.values["ssl_cert"], c.values["ssl_key"]
	switch c.SSL = strings.ToLower(g("ssl")); c.SSL {
	case "required", "no":
	default:
		if v, err := parseBool(c.SSL); err != nil {
			bad("ssl: invalid value %q (use yes, no or required)", c.values["ssl"])
			c.SSL = "no"
		} else if v {
			c.SSL = "yes"
		} else {
			c.SSL = "no"
		}
	}
	if c.SSLMinProtocol, err = parseTLSVersion(g("ssl_min_protocol")); err != nil {
		bad("ssl_min_protocol: %v", err)
	}
	if c.SSL != "no" {
		// Dovecot's messages; the key is never quoted in an error.
		switch {
		case c.SSLCert == "":
			at = posOf(c.pos, "ssl")
			bad("ssl enabled, but ssl_cert not set")
		case c.SSLKey == "":
			at = posOf(c.pos, "ssl")
			bad("ssl enabled, but ssl_key not set")
		case !strings.Contains(c.SSLCert, "-----BEGIN"):
			at = posOf(c.pos, "ssl_cert")
			bad("ssl_cert: not PEM data (to read a file, write ssl_cert = <%s)", clip(strings.TrimSpace(c.SSLCert)))
		case !strings.Contains(c.SSLKey, "-----BEGIN"):
			at = posOf(c.pos, "ssl_key")
			bad("ssl_key: not PEM data (to read a file, write ssl_key = <FILE)")
		default:
			if _, err := tls.X509KeyPair([]byte(c.SSLCert), []byte(c.SSLKey)); err != nil {
				at = posOf(c.pos, "ssl_key")
				bad("ssl_cert, ssl_key: cannot load the key pair: %v", err)
			}
		}
	}
	defProc, err := strconv.Atoi(g("default_process_limit"))
	if err != nil || defProc < 1 {
		bad("default_process_limit: invalid number %q", c.values["default_process_limit"])
	}
	defClient, err := strconv.Atoi(g("default_client_limit"))
	if err != nil || defClient < 1 {
		bad("default_client_limit: invalid number %q", c.values["default_client_limit"])
	}
	defIdle, err := ParseDuration(g("default_idle_kill"))
	if err != nil {
		bad("default_idle_kill: %v", err)
	}
	if _, err := ParseSize(g("default_vsz_limit")); err != nil {
		bad("default_vsz_limit: %v", err)
	}
	for proto, m := range c.protoSet {
		for k := range m {
			if k == "login_trusted_networks" {
				at = posOf(c.pos, proto+"/"+k)
				for _, err := range parseNetworks(m[k], nil) {
					bad("protocol %s: login_trusted_networks: %v", proto, err)
				}
			}
		}
	}
	for _, err := range parseNetworks(g("login_trusted_networks"), nil) {
		bad("login_trusted_networks: %v", err)
	}
	c.HAProxyTrustedNetworks = nil
	for _, err := range parseNetworks(g("haproxy_trusted_networks"), &c.HAProxyTrustedNetworks) {
		bad("haproxy_trusted_networks: %v", err)
	}
	if c.HAProxyTimeout, err = ParseDuration(g("haproxy_timeout")); err != nil || c.HAProxyTimeout <= 0 {
		bad("haproxy_timeout: invalid time %q", c.values["haproxy_timeout"])
	}
	for _, s := range c.Services {
		sv := func(k string) string {
			at = posOf(s.pos, k)
			return s.values[k]
		}
		num := func(k string) int {
			v, err := strconv.Atoi(sv(k))
			if err != nil || v < 0 {
				bad("service %s: %s: invalid number %q", s.Name, k, s.values[k])
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
			at = posOf(s.pos, "process_min_avail")
			bad("service %s: process_min_avail (%d) > process_limit (%d)", s.Name, s.ProcessMinAvail, s.ProcessLimit)
		}
		vsz := expandVar(sv("vsz_limit"), c.values)
		if s.VszLimit, err = ParseSize(vsz); err != nil {
			bad("service %s: vsz_limit: %v", s.Name, err)
		} else if s.VszLimit != 0 && s.VszLimit < MinVszLimit {
			bad("service %s: vsz_limit: %s is below %dM, the least a Go login process can work with (see vsz_limit in the package doc)", s.Name, strings.TrimSpace(vsz), MinVszLimit>>20)
		}
		if d, err := ParseDuration(sv("idle_kill")); err != nil {
			bad("service %s: idle_kill: %v", s.Name, err)
		} else {
			if d == 0 {
				d = defIdle
			}
			if d >= 4294967295*time.Second {
				d = 0
			}
			s.IdleKill = d
		}
		s.User = expandVar(sv("user"), c.values)
		s.Chroot = expandVar(sv("chroot"), c.values)
		if s.Chroot != "" && !filepath.IsAbs(s.Chroot) {
			s.Chroot = filepath.Join(c.BaseDir, s.Chroot)
		}
		pv := func(k string) string {
			if m := c.protoSet[s.Protocol]; m != nil {
				if v, ok := m[k]; ok {
					at = posOf(c.pos, s.Protocol+"/"+k)
					return v
				}
			}
			at = posOf(c.pos, k)
			return c.values[k]
		}
		s.AccessSockets = strings.Fields(pv("login_access_sockets"))
		// A "<file" value keeps the file's final newline (as in
		// Dovecot); a greeting is one protocol line, so that newline goes
		// and any other line break is an error.
		s.Greeting = strings.TrimRight(pv("login_greeting"), "\r\n")
		if strings.ContainsAny(s.Greeting, "\r\n\x00") {
			bad("login_greeting: must be one line (it contains a line break or NUL)")
		}
		s.TrustedNetworks = nil
		parseNetworks(pv("login_trusted_networks"), &s.TrustedNetworks)
		for _, l := range s.Listeners {
			lv := func(k string) string {
				at = posOf(l.pos, k)
				return l.values[k]
			}
			var errs []string
			if addr := lv("address"); addr != "" {
				l.Addresses, errs = parseListenAddresses(addr)
				for _, e := range errs {
					bad("service %s: inet_listener %s: address: %s", s.Name, l.Name, e)
				}
			} else {
				l.Addresses, _ = parseListenAddresses(c.values["listen"]) // errors: reported once, for listen
			}
			if l.Port, err = strconv.Atoi(lv("port")); err != nil || l.Port < 0 || l.Port > 65535 {
				bad("service %s: inet_listener %s: port: invalid port %q", s.Name, l.Name, l.values["port"])
			}
			for _, k := range []string{"ssl", "haproxy", "reuse_port"} {
				v, err := parseBool(lv(k))
				if err != nil {
					bad("service %s: inet_listener %s: %s: %v", s.Name, l.Name, k, err)
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
		pos     Pos
	}
	seen := map[Endpoint]owner{}
	for _, s := range c.Enabled() {
		for _, l := range s.Listeners {
			for _, e := range l.Endpoints() {
				at = posOf(l.pos, "port")
				if o, dup := seen[e]; dup {
					bad("service %s: inet_listener %s: duplicate listener %s (also service %s, inet_listener %s at %s)", s.Name, l.Name, e.Addr, o.svc, o.ln, o.pos)
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
	return slices.CompactFunc(errs, func(a, b *Error) bool { return a.Pos == b.Pos && a.Msg == b.Msg })
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

func expandVar(v string, values map[string]string) string {
	if strings.HasPrefix(v, "$") {
		if x, ok := values[v[1:]]; ok {
			return x
		}
	}
	return v
}

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
// 16 MiB of memory beyond a login process's start-up footprint (see the
// package doc, Sandbox).
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
