package accessd

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
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
	loaded      func(uint64, *hostsrules.Policy) // Config.RulesLoaded

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
//
// If a file is being written, NewRules waits until it is quiet (see
// SettleTime), however long that takes.
func NewRules(allowPath, denyPath string, logger *slog.Logger) *Rules {
	r, _ := newRules(context.Background(), allowPath, denyPath, logger, nil)
	return r
}

// newRules is NewRules with a bound on the wait for quiet files (it
// returns ctx's error and no Rules if ctx ends first) and a function called
// after each load (Config.RulesLoaded).
func newRules(ctx context.Context, allowPath, denyPath string, logger *slog.Logger, loaded func(uint64, *hostsrules.Policy)) (*Rules, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Rules{allow: allowPath, deny: denyPath, log: logger, loaded: loaded}
	if _, err := r.reload(ctx, "initial", false); err != nil {
		return nil, err
	}
	return r, nil
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

// Reload reads and compiles both tables once they are quiet (see
// SettleTime), swaps the new policy in, logs it with reason (e.g. "SIGHUP",
// "changed") and returns it. Load cannot fail, so the new policy always
// replaces the old one: like libwrap, which reads the tables for every
// check, a broken file takes effect with the meaning libwrap gives it, and
// its diagnostics are logged. While a file keeps changing, Reload keeps
// the current policy and waits, however long that takes; ReloadContext
// bounds the wait.
func (r *Rules) Reload(reason string) *hostsrules.Policy {
	p, _ := r.ReloadContext(context.Background(), reason)
	return p
}

// ReloadContext is Reload with a bound on the wait for quiet files: if ctx
// ends first, it returns the current policy, unchanged, and ctx's error.
func (r *Rules) ReloadContext(ctx context.Context, reason string) (*hostsrules.Policy, error) {
	_, err := r.reload(ctx, reason, false)
	return r.Policy(), err
}

// ReloadIfChanged reloads, as Reload does (waiting for quiet files), only
// when Changed reports a change, and reports whether it did.
func (r *Rules) ReloadIfChanged(reason string) bool {
	ok, _ := r.reload(context.Background(), reason, true)
	return ok
}

// reload reloads, if ifChanged only when Changed reports a change, and
// reports whether it did. It gives up, keeping the current policy, when
// ctx ends while the files are still being written.
func (r *Rules) reload(ctx context.Context, reason string, ifChanged bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if ifChanged && !r.Changed() {
		return false, nil
	}
	if _, err := r.reloadLocked(ctx, reason); err != nil {
		return false, err
	}
	return true, nil
}

// SettleTime is how long the rule files must have been left alone before a
// reload adopts them. The files are quiet when, for every file the policy
// is built from (both tables and every /file list), the inode, size, mode,
// mtime and ctime (for a symlink also the link's own inode and ctime; for a
// missing file the mtime and ctime of its directory) have not changed for
// SettleTime: the newest of these times is at least SettleTime old, or the
// reload has seen the same values for SettleTime. A time in the future
// (the clock set back, touch -d) counts as now. A reload then reads the
// files and adopts them only if they did not change while they were read.
// A file whose content does not end in a newline (a torn last line, which
// in hosts.deny denies every client no rule before it matched) must be
// quiet for TornSettleTime instead.
//
// While a file keeps changing the current policy stays, for as long as
// the writing goes on: there is no limit after which a file still being
// written is adopted anyway. A reload that has waited SettleWarnInterval
// logs a warning naming the files, and another one every
// SettleWarnInterval. Together with reading each file in one piece, this
// keeps a half-written file from ever reaching a check, unless its writer
// pauses longer than SettleTime (TornSettleTime in the middle of a line)
// while writing it.
const SettleTime = 200 * time.Millisecond

// TornSettleTime is how long a rule file whose content does not end in a
// newline must have been quiet before a reload adopts it, with the meaning
// libwrap gives an unterminated last line. See SettleTime.
const TornSettleTime = 2 * time.Second

// SettleWarnInterval is how often a reload waiting for files that keep
// changing logs that it is still waiting. See SettleTime.
const SettleWarnInterval = 5 * time.Second

// settlePoll bounds one sleep of a reload waiting for quiet files, so a
// change in the middle of the wait is seen.
const settlePoll = 50 * time.Millisecond

func (r *Rules) reloadLocked(ctx context.Context, reason string) (*hostsrules.Policy, error) {
	prev := r.cur.Load()
	start := time.Now()
	pol, stamps, err := r.settle(ctx, prev, start)
	if err != nil {
		return nil, err
	}
	g := &generation{policy: pol, stamps: stamps, n: 1, at: start, reason: reason}
	if prev != nil {
		g.n = prev.n + 1
	}
	r.cur.Store(g)
	r.logLoad(g, reason, time.Since(start))
	if r.loaded != nil {
		r.loaded(g.n, pol)
	}
	releaseMemory()
	return pol, nil
}

// releaseMemory returns the memory of a load to the operating system at
// once: the previous policy (once in-flight checks finish with it) and the
// garbage of compiling. Reloads are rare and a collection of a compiled
// policy takes milliseconds, while waiting for the next one would leave
// the heap large, and under Dovecot's vsz_limit every new heap arena
// counts (docs/dovecot-managed.md).
func releaseMemory() { debug.FreeOSMemory() }

// settle waits until the rule files are quiet (see SettleTime), reads and
// compiles them and returns the policy with the stamps of every file it
// was built from. It returns ctx's error if ctx ends first.
func (r *Rules) settle(ctx context.Context, prev *generation, start time.Time) (*hostsrules.Policy, map[string]stamp, error) {
	paths := r.paths(prev)
	var (
		seen    map[string]stamp   // the stamps last observed
		seenAt  time.Time          // since when they have been observed unchanged
		need    = SettleTime       // how long the files must be quiet
		pending *hostsrules.Policy // read from files with the stamps seen
		torn    []string           // files of pending without a final newline
		changed []string           // files whose stamps changed last
		warned  = start
	)
	for {
		stamps := statAll(paths)
		now := time.Now()
		if !equalStamps(stamps, seen) {
			changed = changedPaths(seen, stamps)
			seen, seenAt, need, pending, torn = stamps, now, SettleTime, nil, nil
		}
		quiet := quietFor(stamps, seenAt, now)
		if quiet >= need && pending == nil {
			pol := hostsrules.Load(r.allow, r.deny)
			t := tornFiles(pol)
			for _, f := range pol.Files() {
				if _, ok := stamps[f.Path]; !ok {
					paths = append(paths, f.Path) // a new /file list
				}
			}
			if after := statAll(paths); !equalStamps(stamps, after) {
				r.log.Debug("rule files changed while being read, reading again")
				continue
			}
			pending, torn = pol, t
			if len(torn) > 0 {
				need = TornSettleTime
			}
		}
		if quiet >= need {
			if len(torn) > 0 {
				r.log.Info("rule file does not end in a newline; quiet for TornSettleTime, adopting it",
					"files", torn, "quiet", quiet.Round(time.Millisecond))
			}
			return pending, stamps, nil
		}
		if now.Sub(warned) >= SettleWarnInterval {
			warned = now
			what := "rule files still being written, keeping the previous rules"
			if pending != nil {
				what = "rule file ends in the middle of a line, keeping the previous rules until it is quiet"
			}
			r.log.Warn(what, "changing", changed, "torn", torn, "waited", now.Sub(start).Round(time.Millisecond),
				"quiet", quiet.Round(time.Millisecond), "need_quiet", need)
		}
		t := time.NewTimer(min(need-quiet, settlePoll))
		select {
		case <-ctx.Done():
			t.Stop()
			r.log.Warn("reload abandoned while the rule files were still being written, keeping the previous rules",
				"changing", changed, "torn", torn, "waited", time.Since(start).Round(time.Millisecond))
			return nil, nil, ctx.Err()
		case <-t.C:
		}
	}
}

// quietFor returns how long the files with stamps have been left alone, as
// far as the reload can tell at now: since their newest mtime or ctime, or
// since seenAt, when it first saw them as they are, whichever is earlier.
// A time stamp after now does not count.
func quietFor(stamps map[string]stamp, seenAt, now time.Time) time.Duration {
	since := seenAt
	if n := newest(stamps); !n.After(now) && n.Before(since) {
		since = n
	}
	return now.Sub(since)
}

// tornFiles returns the files of p that were read and whose content does
// not end in a newline.
func tornFiles(p *hostsrules.Policy) []string {
	var torn []string
	for _, f := range p.Files() {
		if f.State == hostsrules.FileOK && !endsInNewline(f.Path) {
			torn = append(torn, f.Path)
		}
	}
	return torn
}

// endsInNewline reports whether the file at path is empty or ends in a
// newline. A file it cannot read counts as ending in one: its stamps tell
// whether it changes.
func endsInNewline(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return true
	}
	b := make([]byte, 1)
	if n, _ := f.ReadAt(b, st.Size()-1); n != 1 {
		return true
	}
	return b[0] == '\n'
}

// changedPaths returns the paths whose stamps differ between a and b.
func changedPaths(a, b map[string]stamp) []string {
	var c []string
	for p, s := range b {
		if old, ok := a[p]; !ok || old != s {
			c = append(c, p)
		}
	}
	slices.Sort(c)
	return c
}

// statAll stats every path.
func statAll(paths []string) map[string]stamp {
	stamps := make(map[string]stamp, len(paths))
	for _, p := range paths {
		stamps[p] = statPath(p)
	}
	return stamps
}

// newest returns the latest modification or change time among stamps. For
// a file that does not exist it is the time of its directory, which
// changed when the file was removed or renamed away.
func newest(stamps map[string]stamp) time.Time {
	var n int64
	for p, s := range stamps {
		n = max(n, s.mtime, s.ctime, s.linkCtime)
		if s.errno == syscall.ENOENT {
			var st syscall.Stat_t
			if syscall.Stat(filepath.Dir(p), &st) == nil {
				n = max(n, st.Mtim.Nano(), st.Ctim.Nano())
			}
		}
	}
	return time.Unix(0, n)
}

// equalStamps reports whether a and b hold the same paths with the same
// stamps.
func equalStamps(a, b map[string]stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for p, s := range a {
		if o, ok := b[p]; !ok || o != s {
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
