package hostsrules

import (
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/hostsopts"
)

var errIsDir = errors.New("is a directory")

// readAll reads a whole file; a read error on a directory (EISDIR) is
// reported as errIsDir so the caller can treat it as an empty table.
func readAll(f *os.File, size int64) ([]byte, error) {
	buf := make([]byte, 0, size+1)
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			if strings.Contains(err.Error(), "is a directory") {
				return nil, errIsDir
			}
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

// Policy is a compiled pair of access tables, hosts.allow and hosts.deny,
// with the /file lists their rules name. It is immutable once built and
// safe for concurrent use by any number of goroutines; to pick up changed
// files, build a new Policy and swap it in.
type Policy struct {
	allow, deny *table
	diags       []Diagnostic
	lists       map[string]*fileList
	files       []FileInfo
}

// Compile compiles the two tables. It never fails: every problem has the
// meaning libwrap gives it and is listed by Diagnostics. /file lists named
// by rules (at any nesting depth) are read now with ReadSource semantics.
func Compile(allow, deny Source) *Policy {
	a, d1, l1 := parseTable(allow)
	d, d2, l2 := parseTable(deny)
	return newPolicy(a, d, append(d1, d2...), append(l1, l2...),
		FileInfo{Path: allow.Name, State: allow.State, ModTime: allow.ModTime, Size: int64(len(allow.Data)), Err: allow.Err},
		FileInfo{Path: deny.Name, State: deny.State, ModTime: deny.ModTime, Size: int64(len(deny.Data)), Err: deny.Err})
}

// newPolicy completes a policy from its compiled tables: it reads the
// /file lists the rules name (lists), recursively, and lists the files.
func newPolicy(allow, deny *table, diags []Diagnostic, lists []string, files ...FileInfo) *Policy {
	p := &Policy{allow: allow, deny: deny, diags: diags, lists: map[string]*fileList{}, files: files}
	for _, path := range lists {
		p.preloadList(path)
	}
	paths := make([]string, 0, len(p.lists))
	for path := range p.lists {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		p.files = append(p.files, p.lists[path].info)
	}
	return p
}

func (p *Policy) preloadList(path string) {
	if !strings.HasPrefix(path, "/") {
		return
	}
	if _, ok := p.lists[path]; ok {
		return
	}
	fl := loadFileList(path, os.ReadFile)
	p.lists[path] = fl
	for _, w := range fl.words {
		p.preloadList(w)
	}
}

// loadFileList reads a /file list as words separated by scanf's %s blanks.
func loadFileList(path string, read func(string) ([]byte, error)) *fileList {
	fl := &fileList{info: FileInfo{Path: path}}
	st, statErr := os.Stat(path)
	if statErr == nil {
		fl.info.ModTime = st.ModTime()
		fl.info.Size = st.Size()
	}
	data, err := read(path)
	switch {
	case err == nil:
		fl.words = strings.FieldsFunc(string(data), func(r rune) bool {
			return r < 128 && ctext.IsSpace(byte(r))
		})
	case errors.Is(err, os.ErrNotExist):
		fl.info.State = FileMissing
	case statErr == nil && st.IsDir():
		// fopen of a directory succeeds and reading it fails: no words.
		fl.info.State = FileDir
	default:
		fl.info.State = FileUnreadable
		fl.info.Err = err
		fl.err = err
	}
	return fl
}

// Diagnostics lists the problems found while reading the tables, in file
// order: unreadable tables, lines without a ":" separator, an unterminated
// or over-long line. Option errors are not listed: like libwrap, the policy
// only parses the options of a rule that matches (see Check).
func (p *Policy) Diagnostics() []Diagnostic { return p.diags }

// Files lists the files the policy was built from: hosts.allow,
// hosts.deny, then every /file list in path order, with their state,
// modification time and size at load time.
func (p *Policy) Files() []FileInfo { return p.files }

// Rules returns the number of rules in hosts.allow and hosts.deny.
func (p *Policy) Rules() (allow, deny int) { return p.allow.n, p.deny.n }

// scanResult is table_match's YES/NO/ERR.
type scanResult int

const (
	scanNoMatch scanResult = iota
	scanMatch
	scanError
)

// final ends a Check with a verdict from inside a table scan (libwrap's
// tcpd_jump): an option's allow, deny or error.
type final struct {
	d Decision
}

// Check decides req against the policy exactly as Debian's hosts_access()
// does: hosts.allow first, then hosts.deny, first match wins, no
// match grants. env supplies name, netgroup and ident lookups and option
// effects; a nil env is the zero Env. The Decision says which file and line
// decided and which options ran. Check is safe for concurrent use; ctx
// bounds lookups made through env.
func (p *Policy) Check(ctx context.Context, req *Request, env *Env) Decision {
	c := p.newCheck(ctx, req, env)
	d := c.run()
	c.release()
	return d
}

// zeroEnv is the Env of a Check given none (a check never changes its Env).
var zeroEnv Env

// checkPool recycles check states so that a check allocates nothing.
var checkPool = sync.Pool{New: func() any { return new(check) }}

func (c *check) release() {
	why := c.why[:0]
	clear(c.toks) // they point into the policy, which must not be kept alive
	*c = check{why: why, toks: c.toks[:0]}
	checkPool.Put(c)
}

func (p *Policy) newCheck(ctx context.Context, req *Request, env *Env) *check {
	if env == nil {
		env = &zeroEnv
	}
	c := checkPool.Get().(*check)
	c.ctx, c.p, c.env, c.req = ctx, p, env, req
	c.daemon, c.explain = truncate(req.Daemon), env.Explain
	c.client.ep = &req.Client
	c.server.ep = &req.Server
	return c
}

func (c *check) run() (d Decision) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(final)
			if !ok {
				panic(r)
			}
			f.d.Trace = c.trace
			d = f.d
		}
	}()
	res, dec := c.scan(c.p.allow)
	if res == scanMatch {
		dec.Verdict = Granted
		dec.Trace = c.trace
		return dec
	}
	res, dec = c.scan(c.p.deny)
	switch res {
	case scanNoMatch:
		return Decision{Verdict: Granted, Reason: "default", Trace: c.trace}
	case scanError:
		dec.Verdict = Denied
		dec.Trace = c.trace
		return dec
	}
	dec.Verdict = Denied
	dec.Trace = c.trace
	return dec
}

// scan is table_match: the first matching rule's options run, and its
// result is MATCH (or NOMATCH when an aclexec failed).
func (c *check) scan(t *table) (scanResult, Decision) {
	if t.state == FileUnreadable {
		return scanError, Decision{File: t.name, Reason: "table error", Err: t.endErr}
	}
	var r rule
	if !t.first(c, &r) {
		if t.endErr != nil {
			return scanError, Decision{File: t.name, Line: t.endErr.Line, Reason: "table error", Err: t.endErr}
		}
		return scanNoMatch, Decision{}
	}
	dec := Decision{File: t.name, Line: int(r.line), Rule: r.fullText(), Reason: "matched"}
	if r.hasOpts {
		dec = c.runOptions(t, &r, dec)
		if c.aclexecFailed {
			c.logf("aclexec returned 1")
			return scanNoMatch, Decision{}
		}
	}
	return scanMatch, dec
}

// ruleMatch evaluates one rule: daemon list, then client list.
func (c *check) ruleMatch(t *table, r *rule) bool {
	c.why = c.why[:0]
	if c.explain {
		c.note("daemon list:")
	}
	n := len(c.why)
	m := c.listMatch(r.daemons, false)
	if c.explain && !m && len(c.why) == n {
		c.note("nothing matched daemon %q", c.daemon)
	}
	if m {
		if c.explain {
			c.note("; client list:")
		}
		n = len(c.why)
		m = c.listMatch(r.clients, true)
		if c.explain && !m && len(c.why) == n {
			c.note("nothing matched client %s", c.describeClient())
		}
	}
	if c.explain {
		c.step(t, r, m)
	}
	return m
}

// runOptions parses and executes a matched rule's options left to right.
// allow, deny and errors end the check through a final panic.
func (c *check) runOptions(t *table, r *rule, dec Decision) Decision {
	opts, perr := ParseOptions(r.opts)
	x := &Expander{c: c}
	for _, o := range opts {
		switch o.Name {
		case "allow", "deny":
			dec.Options = append(dec.Options, o)
			dec.Reason = "option " + o.Name
			dec.Verdict = Denied
			if o.Name == "allow" {
				dec.Verdict = Granted
			}
			panic(final{dec})
		}
		o.Expanded = o.Value
		if hostsopts.Expands(o.Name) {
			v, err := x.Expand(o.Value)
			if err != nil {
				dec.Reason = "option error"
				dec.Verdict = Denied
				dec.Err = err
				panic(final{dec})
			}
			o.Expanded = ctext.Chop(v)
		}
		if o.Name == "rfc931" {
			if o.Value != "" {
				c.identSecs, _ = ctext.ScanInt(o.Value)
			}
			c.userName()
		}
		if o.Name == "setenv" {
			if _, _, err := hostsopts.ValidSetenv(o.Expanded); err != nil {
				c.optionError(t, r, dec, err.Error())
			}
		}
		dec.Options = append(dec.Options, o)
		if c.env.Effects != nil {
			keep, err := c.env.Effects.Apply(c.ctx, o, x)
			if err != nil {
				c.optionError(t, r, dec, err.Error())
			}
			if o.Name == "aclexec" {
				c.aclexecFailed = !keep
			}
		}
		if o.Name == "twist" {
			dec.Delegated = true
			dec.Reason = "twist"
			dec.Verdict = Denied
			panic(final{dec})
		}
	}
	if perr != nil {
		c.optionError(t, r, dec, perr.Error())
	}
	return dec
}

func (c *check) optionError(t *table, r *rule, dec Decision, msg string) {
	err := &OptionError{File: t.name, Line: int(r.line), Msg: msg}
	c.logf("error: %s, line %d: %s", t.name, r.line, msg)
	dec.Reason = "option error"
	dec.Verdict = Denied
	dec.Err = err
	panic(final{dec})
}

// step records one considered rule for Env.Explain.
func (c *check) step(t *table, r *rule, matched bool) {
	why := strings.Join(c.why, " ")
	for _, r := range [][2]string{{" ;", ";"}, {"[ ", "["}, {" ]", "]"}} {
		why = strings.ReplaceAll(why, r[0], r[1])
	}
	c.trace = append(c.trace, Step{File: t.name, Line: int(r.line), Rule: r.fullText(), Matched: matched, Why: why})
}

// CheckExpand is Check followed by the %-expansion of each of texts with
// the same request state, as tcpdmatch(8) reports "%n", "%a", "%u" ... for
// the request it evaluated. An expansion that fails yields "".
func (p *Policy) CheckExpand(ctx context.Context, req *Request, env *Env, texts ...string) (Decision, []string) {
	c := p.newCheck(ctx, req, env)
	d := c.run()
	x := &Expander{c: c}
	out := make([]string, len(texts))
	for i, s := range texts {
		out[i], _ = x.Expand(s)
	}
	return d, out
}

// describeClient names the client for explanations without starting any
// lookup: the address, plus the user and name if already known.
func (c *check) describeClient() string {
	s := c.hostAddr(&c.client)
	if c.client.nameDone {
		s += " (name " + c.client.name + ")"
	}
	if c.userDone && c.user != Unknown {
		s = c.user + "@" + s
	}
	return s
}
