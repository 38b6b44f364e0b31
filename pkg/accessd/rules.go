package accessd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/filestamp"
	"github.com/tcpwrapd/tcpwrapd/internal/sdnotify"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Rules holds the compiled policy of one hosts.allow/hosts.deny pair:
// the read side of a Reloader, which replaces the policy when the files
// change. Checks call Policy and keep the *hostsrules.Policy they got, so
// an in-flight check finishes with the policy it started with while a
// reload swaps in the next one atomically.
//
// All methods are safe for concurrent use. Create Rules with NewRules or
// NewReloader.
type Rules struct {
	allow, deny string
	cur         atomic.Pointer[generation]
}

// generation is one loaded policy and the stat stamps of its files.
type generation struct {
	policy *hostsrules.Policy
	stamps filestamp.Set
	n      uint64
	at     time.Time // when it was loaded
	reason string    // why ("initial", "SIGHUP", "changed", "admin")
}

// NewRules loads the policy from allowPath and denyPath (usually
// /etc/hosts.allow and /etc/hosts.deny) with hostsrules.Load and logs the
// result to logger (nil discards). It never fails: missing, unreadable and
// malformed files have libwrap's meaning and are only logged. The Rules
// it returns are never reloaded; use NewReloader for rules that follow
// the files.
//
// If a file is being written, NewRules waits until it is quiet (see
// SettleTime), however long that takes.
func NewRules(allowPath, denyPath string, logger *slog.Logger) *Rules {
	r, _ := NewReloader(context.Background(), ReloaderConfig{AllowFile: allowPath, DenyFile: denyPath, Logger: logger})
	return r.Rules()
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
// with 1 after the first load.
func (r *Rules) Generation() uint64 { return r.cur.Load().n }

// status is the sd_notify STATUS= line describing the current policy.
func (r *Rules) status() string {
	return fmt.Sprintf("STATUS=serving, rules generation %d, %d diagnostics", r.Generation(), len(r.Policy().Diagnostics()))
}

// ReloaderConfig configures NewReloader.
type ReloaderConfig struct {
	// AllowFile and DenyFile are the tables, e.g. /etc/hosts.allow and
	// /etc/hosts.deny.
	AllowFile, DenyFile string
	// Logger receives each load and its diagnostics; nil discards.
	Logger *slog.Logger
	// Loaded, if set, is called after each load (Config.RulesLoaded).
	Loaded func(generation uint64, p *hostsrules.Policy)
	// Notifier receives RELOADING=1 before and READY=1 with a STATUS=
	// line after each reload (not the first load); nil sends none.
	Notifier *sdnotify.Notifier
}

// Reloader loads the rules and reloads them, one load at a time, for
// every reason there is: a SIGHUP and a change seen by polling (Watch),
// the admin socket's "reload" (Reload). hostsrules.Load reads each file
// in one piece, and a reload only adopts files that have been left alone
// for SettleTime and did not change while they were read, so no check
// sees a half-written file (docs/reloading.md).
//
// All methods are safe for concurrent use; loads are serialized. Create
// a Reloader with NewReloader.
type Reloader struct {
	rules    *Rules
	log      *slog.Logger
	loaded   func(uint64, *hostsrules.Policy)
	notifier *sdnotify.Notifier

	mu sync.Mutex // serializes loads
}

// NewReloader makes the first load of the rules (reason "initial"),
// waiting for quiet files (see SettleTime) until ctx ends; then it
// returns ctx's error and no Reloader.
func NewReloader(ctx context.Context, cfg ReloaderConfig) (*Reloader, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{rules: &Rules{allow: cfg.AllowFile, deny: cfg.DenyFile}, log: log, loaded: cfg.Loaded, notifier: cfg.Notifier}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(ctx, "initial", nil); err != nil {
		return nil, err
	}
	return r, nil
}

// Rules returns the rules the Reloader loads.
func (r *Reloader) Rules() *Rules { return r.rules }

// paths returns the files to watch, each once: both tables and every
// file the policy g was built from (which include the tables).
func (r *Reloader) paths(g *generation) []string {
	p := []string{r.rules.allow, r.rules.deny}
	if g != nil {
		for _, f := range g.policy.Files() {
			if !slices.Contains(p, f.Path) {
				p = append(p, f.Path)
			}
		}
	}
	return p
}

// statFiles stats the files of a generation; a variable so that tests
// can count the stats.
var statFiles = filestamp.OfAll

// Changed reports whether any file the current policy was built from (both
// tables and every /file list) looks different on disk from when it was
// loaded: created, removed, replaced, modified or changed permissions. It
// only stats the files.
func (r *Reloader) Changed() bool {
	g := r.rules.cur.Load()
	return !g.stamps.Equal(statFiles(slices.Collect(maps.Keys(g.stamps))))
}

// Reload reads and compiles both tables once they are quiet (see
// SettleTime), swaps the new policy in and logs it with reason (e.g.
// "SIGHUP", "admin"), whether or not the files changed. Load cannot
// fail, so the new policy always replaces the old one: like libwrap,
// which reads the tables for every check, a broken file takes effect with
// the meaning libwrap gives it, and its diagnostics are logged. While a
// file keeps changing, Reload keeps the current policy and waits; if ctx
// ends first, it returns ctx's error and the policy stays.
func (r *Reloader) Reload(ctx context.Context, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reload(ctx, reason, nil)
}

// ReloadIfChanged reloads, as Reload does, only when a file looks
// changed (see Changed), and reports whether it did. It stats each file
// once to tell, and the reload starts from those stamps.
func (r *Reloader) ReloadIfChanged(ctx context.Context, reason string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.rules.cur.Load()
	stamps := statFiles(slices.Collect(maps.Keys(g.stamps)))
	if g.stamps.Equal(stamps) {
		return false, nil
	}
	if err := r.reload(ctx, reason, stamps); err != nil {
		return false, err
	}
	return true, nil
}

// Watch reloads the rules on each value from hangup (SIGHUP; nil: none)
// and, every interval (not at all when interval <= 0), when a file
// changed, until ctx ends. ctx also bounds each reload's wait for quiet
// files.
func (r *Reloader) Watch(ctx context.Context, hangup <-chan os.Signal, interval time.Duration) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hangup:
			r.log.Info("reloading rules on SIGHUP")
			r.Reload(ctx, "SIGHUP") // an error: stopping, logged
		case <-tick:
			r.ReloadIfChanged(ctx, "changed")
		}
	}
}

// reload is a load after the first, framed by RELOADING=1 and READY=1.
// seen, if not nil, are the stamps of the files just taken, which differ
// from the current policy's.
func (r *Reloader) reload(ctx context.Context, reason string, seen filestamp.Set) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.notify(sdnotify.Reloading())
	err := r.load(ctx, reason, seen)
	r.notify(sdnotify.Ready + "\n" + r.rules.status())
	return err
}

// notify sends state to the Notifier, logging a failure.
func (r *Reloader) notify(state string) {
	if _, err := r.notifier.Notify(state); err != nil {
		r.log.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// SettleTime is how long the rule files must have been left alone before a
// reload adopts them. The files are quiet when, for every file the policy
// is built from (both tables and every /file list), the inode, size, mode,
// mtime and ctime (for a symlink also the link's own inode and ctime; for a
// missing file the mtime and ctime of its directory) have not changed for
// SettleTime: the newest of these times is at least SettleTime old, or the
// reload has seen the same values for SettleTime. A time in the future
// (the clock set back, touch -d) counts as now. But a change the reload,
// or the poll that started it, saw made (the values differ from those of
// an earlier look) counts from when it was seen, whatever the times say:
// times set back (touch -d, cp -p) or stamped by a kernel whose coarse
// clock lags (a virtual CPU stalled by its host) cannot make a file
// being written look old. While it waits, the reload also watches
// the files with inotify (writeWatch): a write that leaves the stamps as
// they were (the same size, a coarse clock standing still) is a change
// too. A reload then reads the
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

// load waits for quiet files, reads them, and swaps the new policy in.
// seen is settle's first. The caller holds r.mu.
func (r *Reloader) load(ctx context.Context, reason string, seen filestamp.Set) error {
	prev := r.rules.cur.Load()
	start := time.Now()
	pol, stamps, err := r.settle(ctx, prev, start, seen)
	if err != nil {
		return err
	}
	g := &generation{policy: pol, stamps: stamps, n: 1, at: start, reason: reason}
	if prev != nil {
		g.n = prev.n + 1
	}
	r.rules.cur.Store(g)
	r.logLoad(g, reason, time.Since(start))
	if r.loaded != nil {
		r.loaded(g.n, pol)
	}
	releaseMemory()
	return nil
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
// was built from. first, if not nil, are the stamps of the files just
// taken, which it starts from; they differ from prev's, so the change
// was seen made. It returns ctx's error if ctx ends first.
func (r *Reloader) settle(ctx context.Context, prev *generation, start time.Time, first filestamp.Set) (*hostsrules.Policy, filestamp.Set, error) {
	paths := r.paths(prev)
	var (
		seen    filestamp.Set      // the stamps last observed
		seenAt  time.Time          // since when they have been observed unchanged
		made    = first != nil     // a change was seen made, not only found
		need    = SettleTime       // how long the files must be quiet
		pending *hostsrules.Policy // read from files with the stamps seen
		torn    []string           // files of pending without a final newline
		changed []string           // files whose stamps changed last
		warned  = start
	)
	// Writes the stamps do not show (writeWatch) count as changes too.
	ww := watchWrites(paths)
	defer ww.close()
	written := false // a write seen since the last look
	for {
		stamps := first
		if first == nil {
			stamps = statFiles(paths)
		}
		first = nil
		now := time.Now()
		written = ww.changed() || written
		if written || !stamps.Equal(seen) {
			changed = seen.Changed(stamps)
			if len(changed) == 0 {
				changed = slices.Clone(paths)
				r.log.Debug("rule files written, their stamps unchanged", "files", changed)
			}
			made = made || seen != nil || written
			seen, seenAt, need, pending, torn = stamps, now, SettleTime, nil, nil
			written = false
		}
		quiet := quietFor(stamps, seenAt, made, now)
		if quiet >= need && pending == nil {
			pol := hostsrules.Load(r.rules.allow, r.rules.deny)
			t := tornFiles(pol)
			for _, f := range pol.Files() {
				if _, ok := stamps[f.Path]; !ok {
					paths = append(paths, f.Path) // a new /file list
					ww.add([]string{f.Path})
				}
			}
			if after := statFiles(paths); !stamps.Equal(after) || ww.changed() {
				written = true
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
// far as the reload can tell at now: since seenAt, when it first saw them
// as they are, or, if they were not seen made (made: the stamps differ
// from those of an earlier look, by this reload or by the poll that
// started it), since their newest mtime or ctime if that is earlier. A
// time stamp after now does not count.
func quietFor(stamps filestamp.Set, seenAt time.Time, made bool, now time.Time) time.Duration {
	since := seenAt
	if n := stamps.Newest(); !made && !n.After(now) && n.Before(since) {
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

// logLoad logs one load: a summary line with counts, one line per file that
// was not read normally, and one line per diagnostic.
func (r *Reloader) logLoad(g *generation, reason string, took time.Duration) {
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
			if f.Path == r.rules.deny {
				level, what = slog.LevelError, "rule file unreadable, every check is denied"
			}
			r.log.Log(ctx, level, what, "file", f.Path, "err", errString(f.Err))
		}
	}
	allowRules, denyRules := g.policy.Rules()
	r.log.Info("rules loaded", "reason", reason, "generation", g.n,
		"allow_file", r.rules.allow, "deny_file", r.rules.deny,
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
