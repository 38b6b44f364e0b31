package config

import (
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/conf"
)

// Parser reads loginsvc configuration files: dovecot.conf syntax
// (pkg/dovecot/conf) bound to loginsvc's schema. The zero value reads
// from the operating system's file system.
type Parser struct {
	// ReadFile reads an !include target or a "<file" value; nil means
	// the file system (conf.Parser.ReadFile). A test or fuzzer can deny
	// every read.
	ReadFile func(name string) ([]byte, error)
	// Glob expands !include patterns; nil means filepath.Glob.
	Glob func(pattern string) ([]string, error)
}

func (p *Parser) syntax() *conf.Parser {
	vars := map[string]string{}
	for _, d := range globalDefaults {
		vars[d.name] = d.def
	}
	return &conf.Parser{ReadFile: p.ReadFile, Glob: p.Glob, Variables: vars}
}

// ParseFile reads and parses the configuration file path (with its
// !include files) into a Config with every default applied and every
// value checked (see Parse). The error is a conf.ErrorList with
// FILE:LINE positions, or the error of reading path itself.
func (p *Parser) ParseFile(path string) (*Config, error) {
	nodes, err := p.syntax().ParseFile(path)
	if _, syntax := err.(conf.ErrorList); err != nil && !syntax {
		return nil, err
	}
	errs, _ := err.(conf.ErrorList)
	return build(path, nodes, errs)
}

// Parse parses data as if read from the file name (used in positions and
// to resolve relative !include and "<file" paths). The errors are a
// conf.ErrorList: the syntax errors and unknown names in the order found,
// or, when there are none, every invalid value at the line that set it
// (in file order).
func (p *Parser) Parse(name string, data []byte) (*Config, error) {
	nodes, errs := p.syntax().Parse(name, data)
	return build(name, nodes, errs)
}

func build(name string, nodes []*conf.Node, errs conf.ErrorList) (*Config, error) {
	c := NewConfig()
	c.file = name
	b := binder{cfg: c, errs: errs}
	b.nodes(nodes, frame{})
	if len(b.errs) > 0 {
		b.errs.Sort()
		return nil, b.errs
	}
	if errs := c.validate(); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// ParseFile parses path with a zero Parser (the OS file system).
func ParseFile(path string) (*Config, error) { return (&Parser{}).ParseFile(path) }

// Parse parses data with a zero Parser; name is used in error positions.
func Parse(name string, data []byte) (*Config, error) { return (&Parser{}).Parse(name, data) }

// binder binds a conf tree to a Config: it knows which sections and
// settings exist, and where.
type binder struct {
	cfg  *Config
	errs conf.ErrorList
}

// frame is the section being bound: its kind ("" at the top level;
// "skip" for a section that is not loginsvc's, whose contents are
// ignored) and what it configures.
type frame struct {
	kind     string
	svc      *Service
	listener *Listener
	proto    string
}

func (b *binder) errorf(n *conf.Node, format string, args ...any) {
	b.errs = append(b.errs, n.Errorf(format, args...))
}

func (b *binder) nodes(nodes []*conf.Node, f frame) {
	for _, n := range nodes {
		if n.Section {
			b.nodes(n.Children, b.open(n, f))
			continue
		}
		b.set(n, f)
	}
}

// open binds the section n inside f and returns its frame.
func (b *binder) open(n *conf.Node, f frame) frame {
	switch {
	case f.kind == "" && n.Key == "service":
		svc := b.cfg.Service(n.Name)
		if svc == nil {
			b.errorf(n, "service %s: not a login service (known: %s)", n.Name, strings.Join(LoginServiceNames(), ", "))
			return frame{kind: "skip"}
		}
		return frame{kind: "service", svc: svc}
	case f.kind == "" && n.Key == "protocol":
		if protoService(n.Name) == "" {
			b.errorf(n, "protocol %s: unknown protocol", n.Name)
			return frame{kind: "skip"}
		}
		return frame{kind: "protocol", proto: n.Name}
	case f.kind == "service" && n.Key == "inet_listener":
		if n.Name == "" {
			b.errorf(n, "inet_listener: missing name")
		}
		return frame{kind: "inet_listener", svc: f.svc, listener: f.svc.listener(n.Name)}
	case f.kind == "skip":
		return f
	}
	where := "top level"
	if f.kind != "" {
		where = f.kind + " section"
	}
	b.errorf(n, "unknown section %q in %s", n.Key, where)
	return frame{kind: "skip"}
}

// set binds the setting n inside f.
func (b *binder) set(n *conf.Node, f frame) {
	c := b.cfg
	var err error
	switch f.kind {
	case "":
		err = c.setGlobal(n.Pos, n.Key, n.Value)
		if strings.HasPrefix(n.Raw, "<") {
			c.disp[n.Key] = n.Raw
		}
	case "skip":
		return
	case "service":
		err = f.svc.setValue(n.Pos, n.Key, n.Value)
	case "inet_listener":
		err = f.listener.setValue(n.Pos, n.Key, n.Value)
	case "protocol":
		err = c.setProtocol(n.Pos, f.proto, n.Key, n.Value)
		if strings.HasPrefix(n.Raw, "<") {
			c.disp[f.proto+"/"+n.Key] = n.Raw
		}
	}
	if err != nil {
		b.errorf(n, "%v", err)
	}
}
