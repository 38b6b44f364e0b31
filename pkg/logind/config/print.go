package config

import (
	"fmt"
	"io"
	"sort"
	"strings"
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
// "# hidden"); "<file" values print as written. The output parses back
// to an equal configuration. Print does not modify c.
func (c *Config) Print(w io.Writer, mode PrintMode) error {
	var b strings.Builder
	all := mode == PrintAll
	for _, d := range globalDefaults {
		v := c.values[d.name]
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
			v := s.values[d.name]
			if !all && (!s.set[d.name] || v == d.def) {
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
