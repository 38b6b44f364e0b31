package logind

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Pos is a position in a configuration file: the file name as given to
// the parser (or as found by !include) and the 1-based line number.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.File == "" {
		return fmt.Sprintf("line %d", p.Line)
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Error is one configuration error at a position, printed as
// "FILE:LINE: MESSAGE" like doveconf's.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrorList is every error found in one parse, in the order found (the
// parser does not stop at the first one, as go/scanner's ErrorList).
type ErrorList []*Error

func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Err returns l as an error, or nil if l is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// MaxIncludeDepth bounds nested !include (a file including itself fails
// with "include depth exceeded" instead of looping).
const MaxIncludeDepth = 16

// Parser reads dovecot.conf-syntax files. The zero value reads from the
// operating system's file system.
type Parser struct {
	// ReadFile reads an !include target or a "<file" value; nil means
	// os.ReadFile. A test or fuzzer can deny every read.
	ReadFile func(name string) ([]byte, error)
	// Glob expands !include patterns; nil means filepath.Glob.
	Glob func(pattern string) ([]string, error)
}

func (p *Parser) readFile(name string) ([]byte, error) {
	if p.ReadFile != nil {
		return p.ReadFile(name)
	}
	return readConfigFile(name)
}

// MaxConfigFile bounds a configuration file, an !include target or a
// "<file" value (bytes).
const MaxConfigFile = 4 << 20

// readConfigFile reads a regular file of at most MaxConfigFile bytes: a
// device, FIFO or directory named by mistake (</dev/zero, a socket) is an
// error, not a read that never ends.
func readConfigFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("not a regular file")}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxConfigFile {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("larger than %d bytes", MaxConfigFile)}
	}
	return b, nil
}

func (p *Parser) glob(pat string) ([]string, error) {
	if p.Glob != nil {
		return p.Glob(pat)
	}
	return filepath.Glob(pat)
}

// ParseFile reads and parses the configuration file path (with its
// !include files) into a Config with every default applied and every
// check of Config.Validate done. The error is an ErrorList with FILE:LINE
// positions, or the error of reading path itself.
func (p *Parser) ParseFile(path string) (*Config, error) {
	data, err := p.readFile(path)
	if err != nil {
		return nil, err
	}
	return p.Parse(path, data)
}

// Parse parses data as if read from the file name (used in positions and
// to resolve relative !include and "<file" paths).
func (p *Parser) Parse(name string, data []byte) (*Config, error) {
	st := &parseState{p: p, cfg: NewConfig()}
	st.cfg.file = name
	st.parse(name, data, 0)
	st.finish()
	if len(st.errs) > 0 {
		return nil, st.errs
	}
	if errs := st.cfg.validate(); len(errs) > 0 {
		return nil, errs
	}
	return st.cfg, nil
}

// ParseFile parses path with a zero Parser (the OS file system).
func ParseFile(path string) (*Config, error) { return (&Parser{}).ParseFile(path) }

// Parse parses data with a zero Parser; name is used in error positions.
func Parse(name string, data []byte) (*Config, error) { return (&Parser{}).Parse(name, data) }

// section kinds on the parser's stack.
type frame struct {
	kind     string // "service", "inet_listener", "protocol", "skip"
	pos      Pos
	svc      *Service
	listener *Listener
	proto    string
}

type parseState struct {
	p     *Parser
	cfg   *Config
	errs  ErrorList
	stack []frame
}

func (st *parseState) errorf(pos Pos, format string, args ...any) {
	st.errs = append(st.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (st *parseState) parse(name string, data []byte, depth int) {
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		pos := Pos{File: name, Line: i + 1}
		line := strings.TrimRight(lines[i], "\r")
		// Continuation lines: a trailing backslash joins the next line.
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = line[:len(line)-1] + strings.TrimLeft(strings.TrimRight(lines[i], "\r"), " \t")
		}
		line = strings.TrimLeft(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "!include") {
			st.include(pos, line, depth)
			continue
		}
		line = stripComment(line)
		line = strings.TrimRight(line, " \t")
		if line == "" {
			continue
		}
		if line == "}" {
			if len(st.stack) == 0 {
				st.errorf(pos, "unexpected '}'")
				continue
			}
			st.stack = st.stack[:len(st.stack)-1]
			continue
		}
		if strings.HasSuffix(line, "{") {
			st.open(pos, strings.TrimSpace(line[:len(line)-1]))
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			st.errorf(pos, "expecting '=' in %q", clip(line))
			continue
		}
		key = strings.TrimSpace(key)
		if key == "" || strings.ContainsAny(key, " \t") {
			st.errorf(pos, "invalid setting name %q", clip(key))
			continue
		}
		raw := strings.TrimSpace(value)
		v, err := st.value(pos, raw)
		if err != nil {
			st.errorf(pos, "%s: %v", key, err)
			continue
		}
		st.set(pos, key, v)
		if strings.HasPrefix(raw, "<") {
			switch top := st.top(); {
			case top == nil:
				st.cfg.disp[key] = raw
			case top.kind == "protocol":
				st.cfg.disp[top.proto+"/"+key] = raw
			}
		}
	}
	if depth == 0 && len(st.stack) > 0 {
		for _, f := range st.stack {
			st.errorf(f.pos, "missing '}' for %s section", f.kind)
		}
		st.stack = nil
	}
}

// stripComment cuts a '#' comment that is outside quotes and preceded by
// white space (a '#' inside a word, as in "a#b", is kept).
func stripComment(s string) string {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0 && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case q == 0 && c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// value decodes a setting's right-hand side: "quoted" or 'quoted' strings
// with backslash escapes, <file (the file's contents, read now by the
// parser, i.e. by root before any privilege drop), or a bare value in
// which $name words expand to the current value of a global setting.
func (st *parseState) value(pos Pos, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	switch v[0] {
	case '"', '\'':
		q := v[0]
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			c := v[i]
			if c == '\\' && i+1 < len(v) {
				i++
				switch v[i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(v[i])
				}
				continue
			}
			if c == q {
				if rest := strings.TrimSpace(v[i+1:]); rest != "" {
					return "", fmt.Errorf("garbage after quoted value: %q", clip(rest))
				}
				return b.String(), nil
			}
			b.WriteByte(c)
		}
		return "", errors.New("missing closing quote")
	case '<':
		name := strings.TrimSpace(v[1:])
		if name == "" {
			return "", errors.New("empty <file name")
		}
		if !filepath.IsAbs(name) {
			name = filepath.Join(filepath.Dir(pos.File), name)
		}
		data, err := st.p.readFile(name)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				return "", fmt.Errorf("read %s: %v", name, pe.Err)
			}
			return "", fmt.Errorf("read %s: %v", name, err)
		}
		return string(data), nil
	}
	if !strings.Contains(v, "$") {
		return v, nil
	}
	words := strings.Fields(v)
	for i, w := range words {
		if len(w) > 1 && w[0] == '$' {
			val, ok := st.cfg.globalValue(w[1:])
			if !ok {
				return "", fmt.Errorf("unknown variable %s", w)
			}
			words[i] = val
		}
	}
	return strings.Join(words, " "), nil
}

func (st *parseState) include(pos Pos, line string, depth int) {
	directive, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(stripComment(arg))
	try := false
	switch directive {
	case "!include":
	case "!include_try":
		try = true
	default:
		st.errorf(pos, "unknown directive %s", directive)
		return
	}
	if arg == "" {
		st.errorf(pos, "%s: missing file name", directive)
		return
	}
	if depth+1 > MaxIncludeDepth {
		st.errorf(pos, "%s %s: include depth exceeded (%d)", directive, arg, MaxIncludeDepth)
		return
	}
	if !filepath.IsAbs(arg) {
		arg = filepath.Join(filepath.Dir(pos.File), arg)
	}
	names := []string{arg}
	if strings.ContainsAny(arg, "*?[") {
		m, err := st.p.glob(arg)
		if err != nil {
			st.errorf(pos, "%s %s: %v", directive, arg, err)
			return
		}
		sort.Strings(m)
		names = m
	}
	for _, n := range names {
		data, err := st.p.readFile(n)
		if err != nil {
			if try && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			st.errorf(pos, "%s %s: %v", directive, n, err)
			continue
		}
		st.parse(n, data, depth+1)
	}
}

func (st *parseState) top() *frame {
	if len(st.stack) == 0 {
		return nil
	}
	return &st.stack[len(st.stack)-1]
}

// open handles "TYPE [NAME] {".
func (st *parseState) open(pos Pos, head string) {
	kind, name, _ := strings.Cut(head, " ")
	name = strings.TrimSpace(name)
	if n, err := st.value(pos, name); err == nil {
		name = n
	}
	top := st.top()
	switch {
	case top == nil && kind == "service":
		svc := st.cfg.Service(name)
		if svc == nil {
			st.errorf(pos, "service %s: not a login service (known: %s)", name, strings.Join(LoginServiceNames(), ", "))
			st.stack = append(st.stack, frame{kind: "skip", pos: pos})
			return
		}
		st.stack = append(st.stack, frame{kind: "service", pos: pos, svc: svc})
	case top == nil && kind == "protocol":
		if protoService(name) == "" {
			st.errorf(pos, "protocol %s: unknown protocol", name)
			st.stack = append(st.stack, frame{kind: "skip", pos: pos})
			return
		}
		st.stack = append(st.stack, frame{kind: "protocol", pos: pos, proto: name})
	case top != nil && top.kind == "service" && kind == "inet_listener":
		if name == "" {
			st.errorf(pos, "inet_listener: missing name")
		}
		l := top.svc.listener(name)
		st.stack = append(st.stack, frame{kind: "inet_listener", pos: pos, svc: top.svc, listener: l})
	case top != nil && top.kind == "skip":
		st.stack = append(st.stack, frame{kind: "skip", pos: pos})
	default:
		where := "top level"
		if top != nil {
			where = top.kind + " section"
		}
		st.errorf(pos, "unknown section %q in %s", kind, where)
		st.stack = append(st.stack, frame{kind: "skip", pos: pos})
	}
}

func (st *parseState) set(pos Pos, key, value string) {
	top := st.top()
	var err error
	switch {
	case top == nil:
		err = st.cfg.setGlobal(pos, key, value)
	case top.kind == "skip":
		return
	case top.kind == "service":
		err = top.svc.setValue(pos, key, value)
	case top.kind == "inet_listener":
		err = top.listener.setValue(pos, key, value)
	case top.kind == "protocol":
		err = st.cfg.setProtocol(pos, top.proto, key, value)
	}
	if err != nil {
		st.errorf(pos, "%v", err)
	}
}

func (st *parseState) finish() {}
