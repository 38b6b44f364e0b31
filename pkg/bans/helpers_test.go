package bans

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// prefixes compares netip.Prefix values (unexported fields) by ==.
var prefixes = cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })

func logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// FuzzLoad: no state file content crashes the loader, and whatever it
// accepts leaves a set within the caps: masked sources of the current
// grouping, at most MaxSources bans, none longer than BanFor from now.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"bans":[{"prefix":"192.0.2.1/32","since":"2025-06-01T12:00:00Z","until":"2025-06-01T13:00:00Z","count":6}]}`,
		`{"version":1,"bans":[{"prefix":"2001:db8::1/128","since":"2025-06-01T12:00:00Z","until":"2099-06-01T13:00:00Z","count":6},{"prefix":"2001:db8::/32","since":"2025-06-01T12:00:00Z","until":"2025-06-01T13:00:00Z"}]}`,
		`{"version":1,"bans":[{"prefix":"::ffff:192.0.2.1/128","since":"2025-06-01T12:00:00Z","until":"2025-06-01T13:00:00Z"}]}`,
		`{"version":1,"bans":null}`, `{"version":1}`, `{}`, `[]`, `null`, `{"version":1,"bans":[{}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &clock{t: t0.Add(10 * time.Minute)}
		b, err := New(Config{MaxSources: 2, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.load(data); err != nil {
			if l := b.List(); len(l) != 0 {
				t.Fatalf("a failed load left bans: %v", l)
			}
			return
		}
		l := b.List()
		if len(l) > 2 {
			t.Fatalf("%d bans over the cap", len(l))
		}
		for _, ban := range l {
			if ban.Prefix != b.Source(ban.Prefix.Addr()) || ban.Until.After(c.Now().Add(DefaultBanFor)) || !c.Now().Before(ban.Until) {
				t.Fatalf("ban %+v", ban)
			}
			if _, ok := b.Banned(ban.Prefix.Addr()); !ok {
				t.Fatalf("listed ban %+v not in force", ban)
			}
		}
		// Expiry still works from the rebuilt queue.
		c.Add(DefaultBanFor)
		if l := b.List(); len(l) != 0 {
			t.Fatalf("bans outlived BanFor: %v", l)
		}
	})
}
