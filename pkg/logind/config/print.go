package config

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/conf"
)

// PrintMode selects what Config.Print writes.
type PrintMode int

const (
	// PrintNonDefault writes only settings that differ from the defaults,
	// like doveconf -n (loginsvc -n).
	PrintNonDefault PrintMode = iota
	// PrintAll writes every setting, like doveconf -a (loginsvc -a).
	PrintAll
)

// Print writes the configuration in dovecot.conf syntax: global settings
// alphabetically, then protocol sections, then service sections with
// their inet_listener sections. ssl_key is never printed (written as
// "# hidden"); "<file" values print as written. -a prints
// disable_plaintext_auth and auth_allow_cleartext (one setting under
// Dovecot 2.3's and 2.4's names) with the same global effective value;
// -n prints a service's postlogin_socket only when it is not the
// protocol's name. The output parses back to an equal configuration.
// Print does not modify c.
func (c *Config) Print(w io.Writer, mode PrintMode) error {
	var b strings.Builder
	all := mode == PrintAll
	// disable_plaintext_auth (2.3's name) and auth_allow_cleartext (2.4's)
	// are one setting: -a prints both with the global effective value,
	// so that they agree (two that contradict do not parse).
	allow := c.allowCleartext("", func(conf.Pos, string, ...any) {})
	for _, d := range globalDefaults {
		v := c.values[d.name]
		if all {
			switch d.name {
			case "auth_allow_cleartext":
				v = yesNo(allow)
			case "disable_plaintext_auth":
				v = yesNo(!allow)
			}
		}
		if !all && (!c.set[d.name] || v == d.def) {
			continue
		}
		switch {
		case secretSettings[d.name] && v != "":
			fmt.Fprintf(&b, "%s = # hidden, use the file itself to see it\n", d.name)
		case c.disp[d.name] != "":
			fmt.Fprintf(&b, "%s = %s\n", d.name, c.disp[d.name])
		default:
			fmt.Fprintf(&b, "%s = %s\n", d.name, quote(v))
		}
	}
	var protos []string
	for p := range c.protoSet {
		protos = append(protos, p)
	}
	sort.Strings(protos)
	for _, p := range protos {
		fmt.Fprintf(&b, "protocol %s {\n", p)
		var keys []string
		for k := range c.protoSet[p] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if raw := c.disp[p+"/"+k]; raw != "" {
				fmt.Fprintf(&b, "  %s = %s\n", k, raw) // "<file" as written
				continue
			}
			fmt.Fprintf(&b, "  %s = %s\n", k, quote(c.protoSet[p][k]))
		}
		b.WriteString("}\n")
	}
	for _, s := range c.Services {
		var body strings.Builder
		for _, l := range s.Listeners {
			var lb strings.Builder
			for _, d := range listenerDefaults {
				v := l.values[d.name]
				if !all && (!l.set[d.name] || v == l.defs[d.name]) {
					continue
				}
				fmt.Fprintf(&lb, "    %s = %s\n", d.name, quote(v))
			}
			if lb.Len() > 0 || (all && l.Name != "") {
				fmt.Fprintf(&body, "  inet_listener %s {\n%s  }\n", l.Name, lb.String())
			}
		}
		for _, d := range serviceDefaults {
			v, def := s.values[d.name], d.def
			if d.name == "postlogin_socket" {
				def = s.Protocol // imap, pop3, submission, sieve
			}
			if !all && (!s.set[d.name] || v == def) {
				continue
			}
			fmt.Fprintf(&body, "  %s = %s\n", d.name, quote(v))
		}
		if body.Len() > 0 {
			fmt.Fprintf(&b, "service %s {\n%s}\n", s.Name, body.String())
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// quote returns v as a config value: bare when that reads back the same,
// else double-quoted with backslash escapes.
func quote(v string) string {
	if v == "" {
		return ""
	}
	if !strings.ContainsAny(v, "\"'#\\\n\t<{}$=") && strings.TrimSpace(v) == v && v[0] != '"' {
		return v
	}
	r := strings.NewReplacer("\\", "\\\\", "\"", "\\\"", "\n", "\\n", "\t", "\\t")
	return "\"" + r.Replace(v) + "\""
}
