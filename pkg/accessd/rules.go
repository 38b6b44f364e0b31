package accessd

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Rules holds the compiled policy of one hosts.allow/hosts.deny pair and
// replaces it when the files change. Checks call Policy and keep the
// *hostsrules.Policy they got, so an in-flight check finishes with the
// policy it started with while a reload swaps in the next one atomically.
// hostsrules.Load reads each file in one piece, and a reload only adopts
// files that have been left alone for SettleTime and did not change while
// they were read, so no check sees a half-written file.
//
// All methods are safe for concurrent use. Create Rules with NewRules.
type Rules struct {
	allow, deny string
	log         *slog.Logger

	mu  sync.Mutex // serializes loads
	cur atomic.Pointer[generation]
}

// generation is one loaded policy and the stat stamps of its files.
type generation struct {
	policy *hostsrules.Policy
	stamps map[string]stamp
	n      uint64
	at     time.Time // when it was loaded
	reason string    // why ("initial", "SIGHUP", "changed", "admin")
}

// stamp identifies the state of a path cheaply, without reading it: an
// atomic rename changes the inode, an edit the size or times, a chmod the
// ctime, a removal the error.
type stamp struct {
	errno     syscall.Errno // 0, ENOENT, EACCES, ...
	mode      uint32
	dev, ino  uint64
	size      int64
	mtime     int64
	ctime     int64
	linkIno   uint64 // of the path itself (Lstat), catches retargeted symlinks
	linkCtime int64
}

func statPath(path string) stamp {
	var s stamp
	var st, lst syscall.Stat_t
	if err := syscall.Lstat(path, &lst); err == nil {
		s.linkIno, s.linkCtime = lst.Ino, lst.Ctim.Nano()
	}
	if err := syscall.Stat(path, &st); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			s.errno = errno
		} else {
			s.errno = syscall.EIO
		}
		return s
	}
	s.mode, s.dev, s.ino, s.size = st.Mode, st.Dev, st.Ino, st.Size
	s.mtime, s.ctime = st.Mtim.Nano(), st.Ctim.Nano()
	return s
}

// NewRules loads the policy from allowPath and denyPath (usually
// /etc/hosts.allow and /etc/hosts.deny) with hostsrules.Load and logs the
// result to logger (nil discards). It never fails: missing, unreadable and
// malformed files have libwrap's meaning and are only logged.
func NewRules(allowPath, denyPath string, logger *slog.Logger) *Rules {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Rules{allow: allowPath, deny: denyPath, log: logger}
	r.Reload("initial")
	return r
}

// Policy returns the current policy. It is never nil.
func (r *Rules) Policy() *hostsrules.Policy { return r.cur.Load().policy }

// Loaded returns when the current policy was loaded and the reason given
// to the load ("initial", "SIGHUP", "changed", ...).
func (r *Rules) Loaded() (at time.Time, reason string) {
	g := r.cur.Load()
	return g.at, g.reason
}

// Generation returns how many times the rules have been loaded, starting
// with 1 after NewRules.
func (r *Rules) Generation() uint64 { return r.cur.Load().n }

// paths returns the files to watch: both tables and every file the policy
// g was built from.
func (r *Rules) paths(g *generation) []string {
	p := []string{r.allow, r.deny}
	if g != nil {
		for _, f := range g.policy.Files() {
			p = append(p, f.Path)
		}
	}
	return p
}

// Changed reports whether any file the current policy was built from (both
// tables and every /file list) looks different on disk from when it was
// loaded: created, removed, replaced, modified or changed permissions. It
// only stats the files.
func (r *Rules) Changed() bool {
	g := r.cur.Load()
	for path, old := range g.stamps {
		if statPath(path) != old {
			return true
		}
	}
	return false
}

// Reload reads and compiles both tables now, swaps the new policy in, logs
// it with reason (e.g. "SIGHUP", "changed") and returns it. Load cannot
// fail, so the new policy always replaces the old one: like libwrap, which
// reads the tables for every check, a broken file takes effect with the
// meaning libwrap gives it, and its diagnostics are logged.
func (r *Rules) Reload(reason string) *hostsrules.Policy {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked(reason)
}

// ReloadIfChanged reloads, as Reload does, only when Changed reports a
// change, and reports whether it did.
func (r *Rules) ReloadIfChanged(reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.Changed() {
		return false
	}
	r.reloadLocked(reason)
	return true
}

// SettleTime is how long the rule files must have been left alone before a
// reload adopts them. An editor that rewrites a file in place in several
// writes leaves it half-written for a moment; a reload that finds a file
// modified less than SettleTime ago waits until it has been quiet that
// long, and then adopts the files only if they did not change while they
// were read. Together with reading each file in one piece, this keeps a
// half-written file from ever reaching a check, unless its writer pauses
// longer than SettleTime in the middle of writing it.
const SettleTime = 200 * time.Millisecond

// maxSettle bounds the wait for files that never stop changing; after it
// the last complete read is adopted.
const maxSettle = 3 * time.Second

func (r *Rules) reloadLocked(reason string) *hostsrules.Policy {
	prev := r.cur.Load()
	start := time.Now()
	var pol *hostsrules.Policy
	var stamps map[string]stamp
	for {
		stamps = r.statAll(prev, nil)
		if wait := SettleTime - time.Since(newest(stamps)); wait > 0 && time.Since(start) < maxSettle {
			time.Sleep(wait)
			continue
		}
		pol = hostsrules.Load(r.allow, r.deny)
		after := r.statAll(prev, pol)
		if sameStamps(stamps, after) || time.Since(start) >= maxSettle {
			stamps = after
			break
		}
		r.log.Debug("rule files changed while being read, reading again")
	}
	g := &generation{policy: pol, stamps: stamps, n: 1, at: start, reason: reason}
	if prev != nil {
		g.n = prev.n + 1
	}
	r.cur.Store(g)
	r.logLoad(g, reason, time.Since(start))
	return pol
}

// statAll stats both tables, every file of the previous policy and every
// file of pol (if not nil).
func (r *Rules) statAll(prev *generation, pol *hostsrules.Policy) map[string]stamp {
	stamps := make(map[string]stamp)
	for _, p := range r.paths(prev) {
		stamps[p] = statPath(p)
	}
	if pol != nil {
		for _, f := range pol.Files() {
			if _, ok := stamps[f.Path]; !ok {
				stamps[f.Path] = statPath(f.Path)
			}
		}
	}
	return stamps
}

// newest returns the latest modification or change time among stamps.
func newest(stamps map[string]stamp) time.Time {
	var n int64
	for _, s := range stamps {
		n = max(n, s.mtime, s.ctime, s.linkCtime)
	}
	return time.Unix(0, n)
}

// sameStamps reports whether every path in a has the same stamp in b.
func sameStamps(a, b map[string]stamp) bool {
	for p, s := range a {
		if b[p] != s {
			return false
		}
	}
	return true
}

// logLoad logs one load: a summary line with counts, one line per file that
// was not read normally, and one line per diagnostic.
func (r *Rules) logLoad(g *generation, reason string, took time.Duration) {
	ctx := context.Background()
	var warnings, errs int
	for _, d := range g.policy.Diagnostics() {
		level := slog.LevelWarn
		if d.Severity == hostsrules.Error {
			level = slog.LevelError
			errs++
		} else {
			warnings++
		}
		r.log.Log(ctx, level, d.Error(),
			"file", d.File, "line", d.Line, "code", d.Code, "severity", d.Severity.String())
	}
	for _, f := range g.policy.Files() {
		switch f.State {
		case hostsrules.FileOK:
		case hostsrules.FileMissing:
			r.log.Info("rule file missing, counts as empty", "file", f.Path)
		case hostsrules.FileDir:
			r.log.Warn("rule file is a directory, counts as empty", "file", f.Path)
		default:
			level, what := slog.LevelWarn, "rule file unreadable, skipped"
			if f.Path == r.deny {
				level, what = slog.LevelError, "rule file unreadable, every check is denied"
			}
			r.log.Log(ctx, level, what, "file", f.Path, "err", errString(f.Err))
		}
	}
	allowRules, denyRules := g.policy.Rules()
	r.log.Info("rules loaded", "reason", reason, "generation", g.n,
		"allow_file", r.allow, "deny_file", r.deny,
		"allow_rules", allowRules, "deny_rules", denyRules, "files", len(g.policy.Files()),
		"warnings", warnings, "errors", errs, "took", took)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
