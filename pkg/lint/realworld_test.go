package lint

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// testHosts is the static resolver of the golden tests: the /etc/hosts of
// the machine where tcpdchk produced testdata/tcpdchk.
const testHosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"

// testFS holds the files the realworld rules name.
func testFS(t *testing.T) fstest.MapFS {
	trusted, err := os.ReadFile("testdata/realworld/dovecot-trusted.hosts")
	if err != nil {
		t.Fatal(err)
	}
	return fstest.MapFS{
		"etc/dovecot/trusted.hosts": {Data: trusted},
		"etc/issue":                 {Data: []byte("Debian GNU/Linux 12\n")},
	}
}

func testOptions(t *testing.T) Options {
	fsys := testFS(t)
	strip := func(name string) string { return strings.TrimPrefix(name, "/") }
	return Options{
		Resolver:  hostsrules.ParseHosts([]byte(testHosts)),
		Netgroups: NetgroupNames{"trusted": true},
		ReadFile:  func(name string) ([]byte, error) { return fs.ReadFile(fsys, strip(name)) },
		Stat:      func(name string) (fs.FileInfo, error) { return fs.Stat(fsys, strip(name)) },
	}
}

// realworldSets groups testdata/realworld into what is linted together: a
// name.hosts.allow and name.hosts.deny pair, or a single table.
func realworldSets(t *testing.T) map[string][]Table {
	paths, err := filepath.Glob("testdata/realworld/*.hosts.*")
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string][]Table{}
	for _, p := range paths {
		base := filepath.Base(p)
		name, _, _ := strings.Cut(base, ".hosts.")
		sets[name] = append(sets[name], Table{Path: p, Role: GuessRole(p), Explicit: true})
	}
	for _, ts := range sets {
		slices.SortFunc(ts, func(a, b Table) int { return roleOrder(a.Role) - roleOrder(b.Role) })
	}
	if len(sets) < 15 {
		t.Fatalf("only %d realworld sets", len(sets))
	}
	return sets
}

// TestRealworldGolden lints every realworld file (pairs together) and
// compares the text report with testdata/realworld-golden/NAME.golden.
func TestRealworldGolden(t *testing.T) {
	for name, tables := range realworldSets(t) {
		t.Run(name, func(t *testing.T) {
			rep := Lint(context.Background(), tables, testOptions(t))
			var buf bytes.Buffer
			if err := rep.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "realworld-golden", name+".golden")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("lint output differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

// tcpdchkCodes maps each tcpdchk message (testdata/tcpdchk, captured from
// the real `tcpdchk -d -v -a` with logshim.c) to the codes that report the
// same problem.
var tcpdchkCodes = []struct {
	re    *regexp.Regexp
	codes []string
}{
	{regexp.MustCompile(`missing newline or line too long`), []string{"missing-newline", "line-too-long"}},
	{regexp.MustCompile(`missing ":" separator`), []string{"missing-separator", "indented-comment", "line-too-long", "broken-continuation"}},
	{regexp.MustCompile(`->name lookup failed`), []string{"no-reverse-name", "bare-ipv6", "incomplete-address"}},
	{regexp.MustCompile(`^#: host not found|^\S+: host not found`), []string{"host-not-found", "comment-in-rule", "broken-continuation", "incomplete-address"}},
	{regexp.MustCompile(`bad option name|requires no value|requires value|must be at end|missing option name|bad syslog|bad umask|bad nice|bad linger|bad rfc931`), []string{"bad-option", "bare-ipv6"}},
	{regexp.MustCompile(`unknown or empty netgroup`), []string{"unknown-netgroup"}},
	{regexp.MustCompile(`bad net/mask pattern`), []string{"bad-netmask", "netmask-host-bits", "netmask-all-ones", "netmask-zero"}},
	{regexp.MustCompile(`: No such file or directory$`), []string{"banners-missing"}},
	{regexp.MustCompile(`list is empty or ends in EXCEPT`), []string{"empty-list", "trailing-except", "leading-except"}},
	{regexp.MustCompile(`FAIL is no longer recognized|\(use EXCEPT or DENY instead\)`), []string{"fail-keyword"}},
	{regexp.MustCompile(`ends in dot|begins with`), []string{"name-ends-in-dot", "daemon-name", "user-name", "numeric-begins-with-dot"}},
	{regexp.MustCompile(`may be reserved word`), []string{"reserved-word"}},
	{regexp.MustCompile(`hostname alias|official name`), []string{"host-alias"}},
}

var tcpdchkLine = regexp.MustCompile(`^syslog\[\d\]: (?:warning|error): hosts\.(?:allow|deny), line (\d+): (.*)$`)

// TestCoversTcpdchk checks that lint reports, on the same line, at least
// every warning and error the real tcpdchk logged for each realworld file.
// Wildcard patterns are exempt from DNS checks on purpose (see the package
// documentation).
func TestCoversTcpdchk(t *testing.T) {
	logs, err := filepath.Glob("testdata/tcpdchk/*.syslog")
	if err != nil || len(logs) < 10 {
		t.Fatalf("tcpdchk logs: %v, %d", err, len(logs))
	}
	for _, log := range logs {
		file := strings.TrimSuffix(filepath.Base(log), ".syslog")
		t.Run(file, func(t *testing.T) {
			path := filepath.Join("testdata", "realworld", file)
			opts := testOptions(t)
			opts.ReverseLookups = true
			opts.Netgroups = NetgroupNames{}
			rep := Lint(context.Background(), []Table{{Path: path, Role: GuessRole(path)}}, opts)
			data, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if rec == "" || strings.Contains(rec, "no such process name") {
					continue
				}
				m := tcpdchkLine.FindStringSubmatch(rec)
				if m == nil {
					t.Errorf("unparsed tcpdchk record %q", rec)
					continue
				}
				line, _ := strconv.Atoi(m[1])
				msg := m[2]
				if strings.HasSuffix(msg, ": host not found") && hasWildcard(strings.TrimSuffix(msg, ": host not found")) {
					continue
				}
				var codes []string
				for _, c := range tcpdchkCodes {
					if c.re.MatchString(msg) {
						codes = c.codes
						break
					}
				}
				if codes == nil {
					t.Errorf("line %d: no code known for tcpdchk's %q", line, msg)
					continue
				}
				if !slices.ContainsFunc(rep.Diagnostics, func(d Diagnostic) bool {
					if !slices.Contains(codes, d.Code) {
						return false
					}
					if d.Code == "line-too-long" || d.Code == "missing-newline" {
						return d.Line <= line+1
					}
					return d.Line == line
				}) {
					t.Errorf("line %d: tcpdchk says %q; lint has none of %v there:\n%s", line, msg, codes, dump(rep, line))
				}
			}
		})
	}
}

func dump(rep *Report, line int) string {
	var b strings.Builder
	for _, d := range rep.Diagnostics {
		if d.Line >= line-1 && d.Line <= line+1 {
			fmt.Fprintln(&b, d.String())
		}
	}
	return b.String()
}
