package bans

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// StateVersion is the version of the state file format Save writes and
// Load reads:
//
//	{"version":1,"bans":[{"prefix":"192.0.2.7/32","since":"2025-06-01T11:00:00Z","until":"2025-06-01T12:00:00Z","count":6}]}
const StateVersion = 1

// ErrCorrupt is wrapped by the errors of Load for a state file that is
// not a valid state: not JSON, another version, a ban that does not parse.
var ErrCorrupt = errors.New("corrupt bans state file")

// state is the state file's content.
type state struct {
	Version int   `json:"version"`
	Bans    []Ban `json:"bans"`
}

// Save writes the bans in force to Config.StateFile atomically: a
// temporary file in the same directory, written, synced and renamed over
// the old one (mode 0600), then the directory synced. The failure
// counters are not saved (they never hold a password hash on disk). With
// no StateFile it does nothing.
func (b *Bans) Save() error {
	if b == nil || b.cfg.StateFile == "" {
		return nil
	}
	data, err := json.Marshal(state{Version: StateVersion, Bans: b.List()})
	if err != nil {
		return fmt.Errorf("bans: %w", err)
	}
	return writeAtomic(b.cfg.StateFile, append(data, '\n'))
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("bans: save: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bans: save %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // the rename's durability; not every file system supports it
		d.Close()
	}
	return nil
}

// Load reads Config.StateFile and adds its bans to the set: a ban that
// has ended is skipped, one longer than BanFor from now is shortened to
// that, one of a longer prefix than the current grouping (a /128 after
// IPv6Prefix became 64) is widened to its source, one of a shorter
// prefix is skipped, and when the file holds more than MaxSources bans
// those ending last are kept. A missing file (or no StateFile) adds
// nothing and is no error. A file that cannot be read, or that is over
// MaxSources×256 bytes, is an error; one that is not a valid state is an
// error wrapping ErrCorrupt. Either way the set is unchanged.
func (b *Bans) Load() error {
	if b == nil || b.cfg.StateFile == "" {
		return nil
	}
	f, err := os.Open(b.cfg.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bans: %w", err)
	}
	defer f.Close()
	limit := int64(b.cfg.MaxSources)*256 + 4096
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return fmt.Errorf("bans: %w", err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("bans: %s: over %d bytes", b.cfg.StateFile, limit)
	}
	return b.load(data)
}

// load adds the bans of a state file's content (see Load).
func (b *Bans) load(data []byte) error {
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if st.Version != StateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrCorrupt, st.Version, StateVersion)
	}
	now := b.cfg.Now()
	var keep []Ban
	for i, ban := range st.Bans {
		p := ban.Prefix
		if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() ||
			ban.Until.Before(ban.Since) || ban.Count < 0 {
			return fmt.Errorf("%w: ban %d: %+v", ErrCorrupt, i, ban)
		}
		src := b.Source(p.Addr())
		if p.Bits() < src.Bits() || !now.Before(ban.Until) {
			continue
		}
		ban.Prefix = src
		if max := now.Add(b.cfg.BanFor); ban.Until.After(max) {
			ban.Until = max
		}
		keep = append(keep, ban)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ban := range keep {
		if old, ok := b.bans[ban.Prefix]; !ok || old.Until.Before(ban.Until) {
			b.bans[ban.Prefix] = ban
		}
	}
	b.requeue()
	return nil
}

// requeue rebuilds the expiry queue from the set, keeping the
// MaxSources bans ending last. b.mu is held.
func (b *Bans) requeue() {
	q := make([]queued, 0, len(b.bans))
	for p, ban := range b.bans {
		q = append(q, queued{p, ban.Until})
	}
	sort.Slice(q, func(i, j int) bool { return q[i].until.Before(q[j].until) })
	for len(q) > b.cfg.MaxSources {
		delete(b.bans, q[0].p)
		q = q[1:]
	}
	b.queue, b.qstart = q, 0
}
