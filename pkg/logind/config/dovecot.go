package config

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// DovecotBaseDir is Dovecot's default base_dir (Debian 12 and 13): in
// front of Dovecot, loginsvc's base_dir is Dovecot's, so that its login
// processes' chroot, base_dir/login, holds Dovecot's auth and post-login
// sockets.
const DovecotBaseDir = "/run/dovecot"

// DovecotConfFile is where PrintDovecot's output goes: a conf.d file that
// sorts after every file of Debian's configuration.
const DovecotConfFile = "/etc/dovecot/conf.d/99-loginsvc.conf"

// dovecotLogin describes, per protocol, Dovecot's login service, the
// inet_listener names it has (its defaults in 2.3 and 2.4 and those
// Debian's configuration adds: 2.4's submissions, 20-managesieve.conf's
// sieve_deprecated; a listener Dovecot does not have is created with
// port 0, which is no listener), and the post-login service whose
// unix_listener login/<protocol> loginsvc hands clients to.
var dovecotLogin = map[string]struct {
	service   string
	listeners []string
	postlogin string
}{
	"imap":       {"imap-login", []string{"imap", "imaps"}, "imap"},
	"pop3":       {"pop3-login", []string{"pop3", "pop3s"}, "pop3"},
	"submission": {"submission-login", []string{"submission", "submissions"}, "submission"},
	"sieve":      {"managesieve-login", []string{"sieve", "sieve_deprecated"}, "managesieve"},
}

// dovecotPackages names the Debian package that makes Dovecot serve a
// protocol (its post-login service).
var dovecotPackages = map[string]string{
	"imap": "dovecot-imapd", "pop3": "dovecot-pop3d", "submission": "dovecot-submissiond", "sieve": "dovecot-managesieved",
}

// DovecotRelease returns the Dovecot release, "2.3" or "2.4", that v
// names: "2.3" and "2.4" themselves, or a version as `dovecot --version`
// prints it ("2.3.19.1 (9b53102964)", "2.4.1-4 (7d8c0e5759)").
func DovecotRelease(v string) (string, error) {
	v = strings.TrimSpace(v)
	for _, r := range []string{"2.3", "2.4"} {
		if rest, ok := strings.CutPrefix(v, r); ok && (rest == "" || strings.ContainsRune(".- ", rune(rest[0]))) {
			return r, nil
		}
	}
	return "", fmt.Errorf("Dovecot version %q: want 2.3 or 2.4", v)
}

// PrintDovecot writes the Dovecot side of c for Dovecot release (see
// DovecotRelease), in that release's syntax, to go into DovecotConfFile
// (docs/loginsvc.md, "In front of Dovecot"): a comment naming the
// Dovecot sockets loginsvc uses, base_dir and default_login_user as
// loginsvc has them (both sides must agree: the login processes chroot to
// base_dir/login, root-owned with the login user's group, mode 0750),
// and, for each protocol loginsvc serves, every inet_listener of
// Dovecot's login service (and each of loginsvc's listener names) with
// port = 0, which switches Dovecot's own login listeners off.
func (c *Config) PrintDovecot(w io.Writer, release string) error {
	rel, err := DovecotRelease(release)
	if err != nil {
		return err
	}
	served := c.dovecotServed()
	var b strings.Builder
	comment := func(text string) { b.WriteString(commentLines(text, 76)) }
	comment(fmt.Sprintf("Dovecot %s's side of loginsvc, for %s (loginsvc --dovecot-conf %s prints it from loginsvc's configuration; docs/loginsvc.md, \"In front of Dovecot\").", rel, DovecotConfFile, rel))
	b.WriteString("#\n")
	var protos, pkgs []string
	for _, s := range served {
		protos = append(protos, s.Protocol)
		pkgs = append(pkgs, dovecotPackages[s.Protocol])
	}
	if len(served) == 0 {
		comment("loginsvc's configuration serves no protocol: Dovecot keeps its own login listeners.")
	} else {
		comment(fmt.Sprintf("loginsvc serves the logins (%s); Dovecot's own login processes get no listeners. loginsvc's login processes chroot to base_dir/login (%s), run as default_login_user and use these sockets of Dovecot's there:",
			strings.Join(protos, " "), filepath.Join(c.BaseDir, "login")))
		socket := func(name, what, service, def string) {
			note := ""
			if name != def {
				note = " (not a default of Dovecot's: add it)"
			}
			fmt.Fprintf(&b, "#   %-11s %s (service %s { unix_listener login/%s })%s\n", name, what, service, name, note)
		}
		socket(c.AuthSocket, "auth", "auth", "login")
		for _, s := range served {
			d := dovecotLogin[s.Protocol]
			socket(s.PostloginSocket, "post-login", d.postlogin, s.Protocol)
		}
		plain := "disable_plaintext_auth"
		if rel == "2.4" {
			plain = "auth_allow_cleartext"
		}
		comment(fmt.Sprintf("Dovecot must still serve these protocols (doveconf protocols; Debian packages: %s). TLS, %s and login_trusted_networks of the logins are loginsvc's settings now: Dovecot's apply to its own login processes.",
			strings.Join(pkgs, ", "), plain))
	}
	b.WriteString("\n# loginsvc's values: both sides must agree.\n")
	if c.BaseDir != DovecotBaseDir {
		fmt.Fprintf(&b, "# (Dovecot's default base_dir is %s: this moves Dovecot's sockets.)\n", DovecotBaseDir)
	}
	fmt.Fprintf(&b, "base_dir = %s\n", quote(c.BaseDir))
	fmt.Fprintf(&b, "default_login_user = %s\n", quote(c.DefaultLoginUser))
	for _, s := range served {
		d := dovecotLogin[s.Protocol]
		names := slices.Clone(d.listeners)
		for _, l := range s.Listeners {
			if !slices.Contains(names, l.Name) {
				names = append(names, l.Name)
			}
		}
		fmt.Fprintf(&b, "\nservice %s {\n", d.service)
		for _, n := range names {
			fmt.Fprintf(&b, "  inet_listener %s {\n    port = 0\n  }\n", quote(n))
		}
		b.WriteString("}\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// dovecotServed returns the enabled services whose logins loginsvc
// takes over from Dovecot.
func (c *Config) dovecotServed() []*Service {
	var served []*Service
	for _, s := range c.Enabled() {
		if _, ok := dovecotLogin[s.Protocol]; ok {
			served = append(served, s)
		}
	}
	return served
}

// PrintDovecotSockets writes, as comment lines (the head of loginsvc -n
// and -a), the Dovecot sockets c's login processes use, auth's and the
// post-login services', and how to print Dovecot's side of c.
func (c *Config) PrintDovecotSockets(w io.Writer) error {
	served := c.dovecotServed()
	text := "Dovecot's sockets: none (no protocol served)."
	if len(served) > 0 {
		var post []string
		for _, s := range served {
			post = append(post, s.PostloginSocket)
		}
		text = fmt.Sprintf("Dovecot's sockets it uses, in %s: %s (auth), %s (post-login).",
			filepath.Join(c.BaseDir, "login"), c.AuthSocket, strings.Join(post, " "))
	}
	_, err := io.WriteString(w, commentLines(text, 76)+"# Dovecot's side of it: loginsvc --dovecot-conf 2.3|2.4\n")
	return err
}

// commentLines returns text as "# " comment lines of at most width
// columns (a longer word gets a line of its own).
func commentLines(text string, width int) string {
	var b strings.Builder
	line := "#"
	for _, w := range strings.Fields(text) {
		if len(line) > 1 && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = "#"
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
	return b.String()
}
