package conf

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

// MaxIncludeDepth bounds nested !include (a file including itself fails
// with "include depth exceeded" instead of looping).
const MaxIncludeDepth = 16

// Parser reads dovecot.conf-syntax files into trees of Nodes. The zero
// value reads from the operating system's file system and knows no
// variables.
type Parser struct {
	// ReadFile reads an !include target or a "<file" value; nil means
	// os.ReadFile. A test or fuzzer can deny every read.
	ReadFile func(name string) ([]byte, error)
	// Glob expands !include patterns; nil means filepath.Glob.
	Glob func(pattern string) ([]string, error)
	// Variables are the names a "$name" in a value may refer to, with
	// their default values: "$name" is the value of the top-level
	// setting name as last set above it, else its default. Any other
	// name is an error ("unknown variable").
	Variables map[string]string
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

// ParseFile reads the file path and parses it (with its !include
// files). The error is that of reading path itself, or an ErrorList of
// the syntax errors, each at its FILE:LINE; with an ErrorList, the
// nodes parsed around the errors are returned too.
func (p *Parser) ParseFile(path string) ([]*Node, error) {
	data, err := p.readFile(path)
	if err != nil {
		return nil, err
	}
	nodes, errs := p.Parse(path, data)
	return nodes, errs.Err()
}

// Parse parses data as if read from the file name (used in positions and
// to resolve relative !include and "<file" paths) into its top-level
// nodes. It does not stop at the first error: it returns every syntax
// error, in the order found, and the nodes around them.
func (p *Parser) Parse(name string, data []byte) ([]*Node, ErrorList) {
	st := &parseState{p: p, vars: map[string]string{}}
	for k, v := range p.Variables {
		st.vars[k] = v
	}
	st.parse(name, data, 0)
	return st.root, st.errs
}

type parseState struct {
	p     *Parser
	root  []*Node
	stack []*Node // open sections, innermost last
	vars  map[string]string
	seq   int
	errs  ErrorList
}

func (st *parseState) next() int {
	st.seq++
	return st.seq
}

func (st *parseState) errorf(pos Pos, format string, args ...any) {
	st.errs = append(st.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...), seq: st.next()})
}

// add puts n in the innermost open section, or at the top level.
func (st *parseState) add(n *Node) {
	n.seq = st.next()
	if len(st.stack) == 0 {
		st.root = append(st.root, n)
		return
	}
	top := st.stack[len(st.stack)-1]
	top.Children = append(top.Children, n)
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
			st.stack[len(st.stack)-1] = nil
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
		st.add(&Node{Pos: pos, Key: key, Value: v, Raw: raw})
		if len(st.stack) == 0 {
			if _, ok := st.vars[key]; ok {
				st.vars[key] = v
			}
		}
	}
	if depth == 0 && len(st.stack) > 0 {
		for _, n := range st.stack {
			st.errorf(n.Pos, "missing '}' for %s section", n.Key)
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
// which $name words expand to the current value of a top-level setting
// (Parser.Variables).
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
			val, ok := st.vars[w[1:]]
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

// open handles "TYPE [NAME] {": a section, whatever its type (the
// schema decides which exist).
func (st *parseState) open(pos Pos, head string) {
	kind, name, _ := strings.Cut(head, " ")
	name = strings.TrimSpace(name)
	if n, err := st.value(pos, name); err == nil {
		name = n
	}
	n := &Node{Pos: pos, Section: true, Key: kind, Name: name}
	st.add(n)
	st.stack = append(st.stack, n)
}
