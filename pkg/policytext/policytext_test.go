package policytext

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

func TestClean(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"  plain  ", "plain"},
		{"a\tb\r\nc\x00\x7f\u0085d", "a b  c   d"},
		{"bad \xff utf8 é", "bad   utf8 é"},
	} {
		if got := Clean(tt.in); got != tt.want {
			t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := Clean(strings.Repeat("x", 600)); len(got) != MaxLen {
		t.Errorf("Clean of 600 bytes kept %d, want %d", len(got), MaxLen)
	}
	if got := Clean(strings.Repeat("é", 300)); len(got) != MaxLen || !strings.HasSuffix(got, "é") {
		t.Errorf("Clean of 300 é kept %d bytes (%q...), want %d at a rune boundary", len(got), got[len(got)-4:], MaxLen)
	}
}

// TestBanner: the first line of the first banners file that has one,
// %-expanded; missing files are skipped silently, a missing directory or
// a non-regular file is reported beside the text.
func TestBanner(t *testing.T) {
	dir := t.TempDir()
	empty := t.TempDir()
	fifoDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "smtpd"), []byte("\x00\x00No mail from %a\tplease\nsecond line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(empty, "smtpd"), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(fifoDir, "smtpd"), 0o755); err != nil {
		t.Fatal(err)
	}
	req := &hostsrules.Request{Daemon: "smtpd", Client: hostsrules.Endpoint{AddrText: "192.0.2.7", Name: hostsrules.Unknown}}
	banners := func(dirs ...string) hostsrules.Decision {
		var d hostsrules.Decision
		for _, dir := range dirs {
			d.Options = append(d.Options, hostsrules.Option{Name: "banners", Value: dir})
		}
		return d
	}
	for _, tt := range []struct {
		name    string
		d       hostsrules.Decision
		want    string
		wantErr bool
	}{
		{"none", hostsrules.Decision{}, "", false},
		{"first line expanded", banners(dir), "No mail from 192.0.2.7 please", false},
		{"empty line then next option", banners(empty, dir), "No mail from 192.0.2.7 please", false},
		{"missing file", banners(t.TempDir()), "", false},
		{"missing directory", banners(filepath.Join(dir, "nope"), dir), "No mail from 192.0.2.7 please", true},
		{"not a regular file", banners(fifoDir), "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Banner(context.Background(), tt.d, req)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("text (-want +got):\n%s", diff)
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error %v", err, tt.wantErr)
			}
		})
	}
	bad := *req
	bad.Daemon = "../etc"
	if got, err := Banner(context.Background(), banners(dir), &bad); got != "" || err == nil {
		t.Errorf("daemon %q: got %q, %v; want \"\" and an error", bad.Daemon, got, err)
	}
}
