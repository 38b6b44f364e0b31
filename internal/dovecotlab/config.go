package dovecotlab

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"
)

// DefaultAccessSocket is the login_access_sockets entry used when
// [Config.AccessSockets] is empty and OwnTcpwrap is off: a socket in a
// sub-directory of base_dir/login, as docs/dovecot-managed.md recommends for an external
// daemon.
const DefaultAccessSocket = "tcpwrapd/access"

// OwnTcpwrapSocket is the login_access_sockets entry of Dovecot's own
// tcpwrap service (base_dir/login/tcpwrap).
const OwnTcpwrapSocket = "tcpwrap"

// Config describes a lab Dovecot. The zero value is a Dovecot with imap and
// pop3 whose logins ask base_dir/login/tcpwrapd/access.
type Config struct {
	// AccessSockets is the login_access_sockets value, a space-separated
	// list of socket paths relative to base_dir/login. Empty means
	// DefaultAccessSocket, or OwnTcpwrapSocket when OwnTcpwrap is set.
	AccessSockets string
	// NoAccessCheck leaves login_access_sockets empty: no access check.
	NoAccessCheck bool
	// OwnTcpwrap adds the documented `service tcpwrap` block with a
	// login/tcpwrap listener (dovenull, 0600), so that Dovecot's own
	// /usr/lib/dovecot/tcpwrap answers. It implies PrivateHosts.
	OwnTcpwrap bool
	// TcpwrapExecutable, if set, is the `executable` of a `service
	// tcpwrap` block with the documented login/tcpwrap listener
	// (dovenull, 0600), so that the master runs this command (for
	// example "/path/tcpwrapd --dovecot --allow-file F") as its tcpwrap
	// service (docs/dovecot-managed.md) instead of /usr/lib/dovecot/tcpwrap. The
	// executable is split on spaces by Dovecot; paths must not contain
	// any. Unlike OwnTcpwrap it does not imply PrivateHosts. The default
	// login_access_sockets entry becomes OwnTcpwrapSocket.
	TcpwrapExecutable string
	// TcpwrapSettings are extra lines inside the `service tcpwrap` block
	// of OwnTcpwrap or TcpwrapExecutable, e.g. "client_limit = 4",
	// "vsz_limit = 1G", "idle_kill = 3 secs".
	TcpwrapSettings []string
	// PrivateHosts runs the master in a private mount namespace in which
	// the lab's hosts.allow and hosts.deny are bind-mounted over
	// /etc/hosts.allow and /etc/hosts.deny.
	PrivateHosts bool
	// HostsAllow and HostsDeny are the initial contents of the lab's
	// hosts.allow and hosts.deny. The files are always written (empty by
	// default); only the master's namespace sees them as /etc/hosts.* and
	// only with PrivateHosts.
	HostsAllow, HostsDeny string
	// Protocols lists the protocols to serve, each getting one
	// 127.0.0.1 listener on a free port. Supported: "imap", "pop3",
	// "submission" (Debian's dovecot-submissiond; set
	// submission_relay_host in Extra) and "sieve" (Pigeonhole's
	// ManageSieve, Debian's dovecot-managesieved).
	// Empty means both.
	Protocols []string
	// Users, if set, replaces the static passdb (any password) with a
	// passwd-file passdb (scheme PLAIN) holding these user names and
	// passwords, in Dir/users, so that a wrong password fails.
	Users map[string]string
	// AuthMechanisms is auth_mechanisms. Empty means "plain".
	AuthMechanisms string
	// NoLoginListeners gives the login services no listeners: the lab
	// is Dovecot's auth and post-login services behind loginsvc, whose
	// login processes use base_dir/login/login and base_dir/login/imap
	// (docs/dovecot-auth.md). Start then waits for those sockets.
	NoLoginListeners bool
	// Extra is appended verbatim to the generated configuration.
	Extra string
	// StartTimeout bounds how long Start waits for the listeners. Zero
	// means 30 s.
	StartTimeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before it kills.
	// Zero means DefaultStopGrace.
	StopGrace time.Duration
}

func (c Config) protocols() []string {
	if len(c.Protocols) == 0 {
		return []string{"imap", "pop3"}
	}
	return c.Protocols
}

func (c Config) accessSockets() string {
	switch {
	case c.NoAccessCheck:
		return ""
	case c.AccessSockets != "":
		return c.AccessSockets
	case c.OwnTcpwrap || c.TcpwrapExecutable != "":
		return OwnTcpwrapSocket
	}
	return DefaultAccessSocket
}

// loginServices maps a protocol to its login service and its plain and
// TLS listener names.
var loginServices = map[string][3]string{
	"imap":       {"imap-login", "imap", "imaps"},
	"pop3":       {"pop3-login", "pop3", "pop3s"},
	"submission": {"submission-login", "submission", "submissions"},
	"sieve":      {"managesieve-login", "sieve", "sieve_tls"},
}

type confData struct {
	Dir, BaseDir, StateDir, LogPath, Instance, AccessSockets, Extra string
	Protocols                                                       []string
	Listeners                                                       []confListener
	OwnTcpwrap                                                      bool
	TcpwrapExecutable                                               string
	TcpwrapSettings                                                 []string
	PasswdFile, AuthMechanisms                                      string
	NoLoginListeners                                                bool
}

type confListener struct {
	Service, Name, TLSName string
	Port                   int
}

var confTemplate = template.Must(template.New("dovecot.conf").Parse(`# generated by internal/dovecotlab - throwaway test instance
base_dir = {{.BaseDir}}
state_dir = {{.StateDir}}
instance_name = {{.Instance}}
protocols = {{range $i, $p := .Protocols}}{{if $i}} {{end}}{{$p}}{{end}}
listen = 127.0.0.1
log_path = {{.LogPath}}
log_timestamp = "%Y-%m-%d %H:%M:%S "
ssl = no
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
auth_mechanisms = {{.AuthMechanisms}}
disable_plaintext_auth = no
first_valid_uid = 1
{{- if .PasswdFile}}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {{.PasswdFile}}
}
{{- else}}
passdb {
  driver = static
  args = nopassword=y
}
{{- end}}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home={{.Dir}}/home/%u
}
mail_location = maildir:~/Maildir
login_access_sockets = {{.AccessSockets}}
{{range .Listeners}}
service {{.Service}} {
  inet_listener {{.Name}} {
    address = 127.0.0.1
    port = {{if $.NoLoginListeners}}0{{else}}{{.Port}}{{end}}
  }
  inet_listener {{.TLSName}} {
    port = 0
  }
}
{{end}}
{{- if or .OwnTcpwrap .TcpwrapExecutable}}
service tcpwrap {
{{- if .TcpwrapExecutable}}
  executable = {{.TcpwrapExecutable}}
{{- end}}
{{- range .TcpwrapSettings}}
  {{.}}
{{- end}}
  unix_listener login/tcpwrap {
    group = $default_login_user
    mode = 0600
    user = $default_login_user
  }
}
{{end}}
{{- .Extra}}
`))

// passwdFile returns the passwd-file text for Users, sorted by name.
func (c Config) passwdFile() string {
	names := make([]string, 0, len(c.Users))
	for n := range c.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s:{PLAIN}%s\n", n, c.Users[n])
	}
	return b.String()
}

// render returns the configuration text.
func (c Config) render(dir, baseDir, stateDir, logPath, instance string, ports map[string]int) (string, error) {
	d := confData{
		Dir: dir, BaseDir: baseDir, StateDir: stateDir, LogPath: logPath,
		Instance: instance, AccessSockets: c.accessSockets(), Extra: c.Extra,
		Protocols: c.protocols(), OwnTcpwrap: c.OwnTcpwrap,
		TcpwrapExecutable: c.TcpwrapExecutable, TcpwrapSettings: c.TcpwrapSettings,
		AuthMechanisms: c.AuthMechanisms, NoLoginListeners: c.NoLoginListeners,
	}
	if d.AuthMechanisms == "" {
		d.AuthMechanisms = "plain"
	}
	if len(c.Users) > 0 {
		d.PasswdFile = filepath.Join(dir, "users")
	}
	for _, p := range d.Protocols {
		ls, ok := loginServices[p]
		if !ok {
			known := make([]string, 0, len(loginServices))
			for k := range loginServices {
				known = append(known, k)
			}
			sort.Strings(known)
			return "", fmt.Errorf("unsupported protocol %q (supported: %s)", p, strings.Join(known, ", "))
		}
		d.Listeners = append(d.Listeners, confListener{Service: ls[0], Name: ls[1], TLSName: ls[2], Port: ports[p]})
	}
	var b strings.Builder
	if err := confTemplate.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}
