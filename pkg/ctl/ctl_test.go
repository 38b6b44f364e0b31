package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestMain(m *testing.M) {
	// Name checks in lint must not depend on this machine's DNS.
	lintResolver = hostsrules.ParseHosts([]byte("127.0.0.1 localhost\n192.0.2.7 mail.example.com\n"))
	checkHostResolver = func() hostsrules.Resolver { return lintResolver }
	os.Exit(m.Run())
}

// run runs loginctl with args and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(append([]string{"loginctl"}, args...), &out, &errOut, "test")
	return out.String(), errOut.String(), code
}

// tables writes hosts.allow and hosts.deny to a new directory.
func tables(t *testing.T, allow, deny string) (dir, allowPath, denyPath string) {
	t.Helper()
	dir = t.TempDir()
	allowPath, denyPath = filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	if err := os.WriteFile(allowPath, []byte(allow), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(denyPath, []byte(deny), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, allowPath, denyPath
}

// golden compares got with testdata/NAME.golden after replacing dir with
// "$DIR" (-update rewrites it).
func golden(t *testing.T, name, got, dir string) {
	t.Helper()
	if dir != "" {
		got = strings.ReplaceAll(got, dir, "$DIR")
	}
	path := filepath.Join("testdata", name+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

const (
	allowRules = "imap: 10.0.0.0/8: deny\nimap pop3: 192.0.2.0/24 EXCEPT 192.0.2.66\nsubmission: 192.0.2.1: spawn /bin/echo %a: allow\n"
	denyRules  = "ALL: ALL\n"
)

func TestCheckHost(t *testing.T) {
	dir, allow, deny := tables(t, allowRules, denyRules)
	files := []string{"--allow-file", allow, "--deny-file", deny}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"checkhost-granted", []string{"imap", "192.0.2.10"}, 0, ""},
		{"checkhost-denied-option", []string{"imap", "10.1.2.3"}, 0, ""},
		{"checkhost-except", []string{"--explain", "pop3", "192.0.2.66"}, 0, ""},
		{"checkhost-user-server", []string{"submission@127.0.0.1", "alice@192.0.2.1"}, 0, ""},
		{"checkhost-unknown", []string{"imap", "unknown"}, 0, ""},
		{"checkhost-json", []string{"--json", "--explain", "imap", "192.0.2.10"}, 0, ""},
		{"checkhost-usage", []string{"imap"}, 2, "loginctl: check-host: need exactly two arguments, DAEMON[@SERVER] and [USER@]CLIENT (got 1)\n"},
		{"checkhost-bad-flag", []string{"--nosuch", "imap", "1.2.3.4"}, 2, "loginctl: flag provided but not defined: -nosuch\n"},
		{"checkhost-inetd", []string{"-i", filepath.Join(dir, "nonexistent"), "imap", "1.2.3.4"}, 1, "loginctl: open $DIR/nonexistent: No such file or directory\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check-host"}, files...)
			out, errOut, code := run(t, append(args, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if got := strings.ReplaceAll(errOut, dir, "$DIR"); !strings.HasPrefix(got, tt.stderr) || (tt.stderr == "" && got != "") {
				t.Errorf("stderr %q, want %q", got, tt.stderr)
			}
			if tt.code == 0 {
				golden(t, tt.name, out, dir)
			} else if out != "" && tt.code == 2 {
				t.Errorf("usage error wrote to stdout: %q", out)
			}
		})
	}
	t.Run("json-schema", func(t *testing.T) {
		out, _, _ := run(t, append(append([]string{"check-host"}, files...), "--json", "imap", "10.1.2.3")...)
		var rep CheckHostReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Schema != CheckHostSchema || len(rep.Results) != 1 || rep.Results[0].Access != "denied" || rep.Results[0].Decision.Line != 1 {
			t.Errorf("report %+v", rep)
		}
	})
}

func TestRulesLint(t *testing.T) {
	dir, allow, deny := tables(t,
		"imap: 10.1.2.3/8 ::1\nimaps: ALL\nsshd: 10.0.0.2 # ALL\n  # pop3: ALL\nimap: mail.example.com nosuch.example\n",
		"imap: 192.0.2.0/24\nimap: 192.0.2.5\n")
	_, cleanAllow, cleanDeny := tables(t, "imap: 192.0.2.0/24\n", "ALL: ALL\n")
	_, warnAllow, _ := tables(t, "imap-login: 192.0.2.0/24\n", "")
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"lint-errors", []string{"--allow-file", allow, "--deny-file", deny}, 1},
		{"lint-errors-json", []string{"--json", "--allow-file", allow, "--deny-file", deny}, 1},
		{"lint-no-resolve", []string{"--no-resolve", "--allow-file", allow, "--deny-file", deny}, 1},
		{"lint-clean", []string{"--allow-file", cleanAllow, "--deny-file", cleanDeny}, 0},
		{"lint-warnings-only", []string{warnAllow}, 0},
		{"lint-files", []string{allow, deny}, 1},
		{"lint-missing-file", []string{filepath.Join(dir, "nonexistent")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"rules", "lint", "--netgroup-file", "/nonexistent"}, tt.args...)
			out, errOut, code := run(t, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if errOut != "" {
				t.Errorf("stderr %q", errOut)
			}
			for _, p := range []string{allow, deny, cleanAllow, cleanDeny, warnAllow} {
				out = strings.ReplaceAll(out, filepath.Dir(p), "$DIR")
			}
			golden(t, tt.name, out, "")
		})
	}
	t.Run("usage", func(t *testing.T) {
		out, errOut, code := run(t, "rules", "lint", "-d", allow)
		if code != 2 || out != "" || !strings.Contains(errOut, "cannot be combined") {
			t.Errorf("code %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
}

// startDaemon runs an access Server and an AdminServer on sockets in a
// short temporary directory.
func startDaemon(t *testing.T, allow, deny string, opts ...func(*accessd.AdminServer)) (access, admin, rulesDir string) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rulesDir, allowPath, denyPath := tables(t, allow, deny)
	rl, err := accessd.NewReloader(context.Background(), accessd.ReloaderConfig{AllowFile: allowPath, DenyFile: denyPath})
	if err != nil {
		t.Fatal(err)
	}
	rules := rl.Rules()
	stats := accessd.NewStats()
	env := &hostsrules.Env{Resolver: hostsrules.ParseHosts([]byte("192.0.2.7 mail.example.com\n"))}
	srv := &dovecotsock.Server{Checker: &accessd.Checker{Rules: rules, Stats: stats, Env: env}}
	access, admin = filepath.Join(dir, "access"), filepath.Join(dir, "admin")
	ln, err := accessd.Listen(access, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	aln, owner, err := accessd.ListenAdmin(admin)
	if err != nil {
		t.Fatal(err)
	}
	a := &accessd.AdminServer{Reloader: rl, Stats: stats, Env: env, OwnerUID: owner}
	for _, o := range opts {
		o(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { srv.Serve(ctx, ln); done <- struct{}{} }()
	go func() { a.Run(ctx, aln); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return access, admin, rulesDir
}

func TestQuery(t *testing.T) {
	access, admin, rulesDir := startDaemon(t, "imap: 127.0.0.1 10.0.0.0/8\n", "ALL: ALL\n")
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"query-allowed", []string{"--socket", access, "imap", "127.0.0.1"}, 0},
		{"query-refused", []string{"--socket", access, "pop3", "127.0.0.1"}, 1},
		{"query-json", []string{"--json", "--socket", access, "imap", "127.0.0.1"}, 0},
		{"query-admin-fallback", []string{"--socket", access, "--admin-socket", admin, "imap", "10.9.8.7"}, 0},
		{"query-admin-name", []string{"--admin-socket", admin, "pop3", "mail.example.com"}, 1},
		{"query-admin-json", []string{"--json", "--socket", access, "--admin-socket", admin, "imap", "10.9.8.7"}, 0},
		// A socket that does not exist is no refusal: the error is the result.
		{"query-unbindable-client", []string{"--socket", access, "imap", "10.9.8.7"}, 3},
		{"query-missing-socket", []string{"--socket", filepath.Join(filepath.Dir(access), "nosuch"), "imap", "127.0.0.1"}, 3},
		{"query-missing-socket-json", []string{"--json", "--socket", filepath.Join(filepath.Dir(access), "nosuch"), "imap", "127.0.0.1"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, append([]string{"query"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if errOut != "" {
				t.Errorf("stderr %q", errOut)
			}
			out = strings.ReplaceAll(out, filepath.Dir(access), "$DIR")
			out = strings.ReplaceAll(out, rulesDir, "$RULES")
			out = stripPorts(out)
			golden(t, tt.name, out, "")
		})
	}
	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no socket", []string{"imap", "127.0.0.1"}, 2, "loginctl: query: need --socket PATH"},
		{"name without admin", []string{"--socket", access, "imap", "mail.example.com"}, 2, "loginctl: query: CLIENT must be an IP address"},
		{"admin down", []string{"--admin-socket", "/nonexistent/admin", "imap", "10.9.8.7"}, 3, "loginctl: admin socket /nonexistent/admin: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, append([]string{"query"}, tt.args...)...)
			if code != tt.code || out != "" || !strings.HasPrefix(errOut, tt.stderr) {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q (want prefix %q)", code, tt.code, out, errOut, tt.stderr)
			}
		})
	}
}

// stripPorts replaces the ephemeral port of loopback addresses.
func stripPorts(s string) string {
	for _, host := range []string{"127.0.0.1:"} {
		for {
			i := strings.Index(s, host)
			if i < 0 {
				break
			}
			j := i + len(host)
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j == i+len(host) {
				s = s[:i] + "127.0.0.1\x00" + s[i+len(host):] // not a port: keep the colon
				continue
			}
			s = s[:i] + "127.0.0.1#PORT" + s[j:]
		}
	}
	return strings.ReplaceAll(s, "127.0.0.1\x00", "127.0.0.1:")
}

func TestStatus(t *testing.T) {
	access, admin, _ := startDaemon(t, "imap: 127.0.0.1\n", "ALL: ALL\n")
	run(t, "query", "--socket", access, "imap", "127.0.0.1")
	run(t, "query", "--socket", access, "pop3", "127.0.0.1")
	c, err := net.Dial("unix", access)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("bad"))
	c.Close()

	var rep StatusReport
	for deadline := time.Now().Add(5 * time.Second); ; {
		out, errOut, code := run(t, "status", "--json", "--admin-socket", admin)
		if code != 0 || errOut != "" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Stats.Errors[dovecotsock.ErrKindInvalidRequest] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := rep.Stats
	got := []any{rep.Schema, st.Checks, st.Granted, st.Refused, st.Errors, st.Latency.Samples, st.Rules.AllowRules, st.Rules.DenyRules, len(st.Rules.Files)}
	want := []any{StatusSchema, uint64(2), uint64(1), uint64(1), map[string]uint64{"invalid_request": 1}, 2, 1, 1, 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	out, errOut, code := run(t, "status", "--reload", "--admin-socket", admin)
	if code != 0 || errOut != "" || !strings.Contains(out, "generation 2") || !strings.Contains(out, "(admin)") || !strings.Contains(out, "checks:      2 (granted 1, refused 1, delegated 0)") {
		t.Errorf("status --reload: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	if _, errOut, code := run(t, "status", "--admin-socket", "/nonexistent/admin"); code != 1 || !strings.Contains(errOut, "is tcpwrapd running with --admin-socket /nonexistent/admin?") {
		t.Errorf("down: exit %d, stderr %q", code, errOut)
	}
	if _, _, code := run(t, "status", "extra"); code != 2 {
		t.Errorf("extra argument: exit %d, want 2", code)
	}
}

func TestStatusText(t *testing.T) {
	at := time.Date(2025, 3, 4, 10, 11, 12, 0, time.UTC)
	rep := &StatusReport{Schema: StatusSchema, Socket: "/run/tcpwrapd/admin", Stats: accessd.AdminStats{
		StatsSnapshot: accessd.StatsSnapshot{Started: at, Checks: 10, Granted: 7, Refused: 2, Delegated: 1,
			Errors:  map[string]uint64{"reply_gone": 2, "invalid_request": 1},
			Latency: accessd.Latency{Samples: 10, P50us: 120, P99us: 2100, MaxUs: 5000},
			FrontEnds: map[string]accessd.FrontEndSnapshot{
				"access":     {Checks: 6, Granted: 4, Refused: 1, Delegated: 1, Errors: map[string]uint64{"reply_gone": 2, "invalid_request": 1}},
				"authpolicy": {Checks: 4, Granted: 3, Refused: 1, Errors: map[string]uint64{}},
			}},
		UptimeSeconds: 3723,
		Rules: accessd.RulesStatus{Generation: 3, LoadedAt: at, Reason: "SIGHUP", AllowRules: 12, DenyRules: 1,
			Files:       []hostsrules.FileInfo{{Path: "/etc/hosts.allow", ModTime: at, Size: 300}, {Path: "/etc/hosts.deny", State: hostsrules.FileMissing}},
			Diagnostics: []hostsrules.Diagnostic{{File: "/etc/hosts.allow", Line: 4, Code: "missing-separator", Msg: `missing ":" separator`}}},
	}}
	var b bytes.Buffer
	WriteStatusText(&b, rep, at)
	golden(t, "status-text", b.String(), "")
}

func TestHelpAndGenerate(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"help", []string{"--help"}},
		{"help-rules-lint", []string{"rules", "lint", "--help"}},
		{"help-status", []string{"status", "--help"}},
		{"help-query", []string{"query", "--help"}},
		{"help-check-host", []string{"check-host", "--help"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, tt.args...)
			if code != 0 || errOut != "" {
				t.Errorf("exit %d, stderr %q", code, errOut)
			}
			golden(t, tt.name, out, "")
		})
	}
	out, _, code := run(t, "generate", "man")
	if code != 0 || !strings.Contains(out, ".TH loginctl 8") || !strings.Contains(out, "rules") || strings.Contains(out, "generate") {
		t.Errorf("man: exit %d:\n%s", code, out)
	}
	out, _, code = run(t, "generate", "bash")
	if code != 0 || !strings.Contains(out, `"rules lint") words=`) || !strings.Contains(out, "complete -o default -F _loginctl loginctl") {
		t.Errorf("bash: exit %d:\n%s", code, out)
	}
	dir := t.TempDir()
	out, _, code = run(t, "generate", "docs", dir)
	want := []string{"completions/bash/loginctl", "completions/fish/loginctl.fish", "completions/zsh/_loginctl", "man/man8/loginctl.8"}
	var got []string
	for _, l := range strings.Fields(out) {
		got = append(got, strings.TrimPrefix(l, dir+"/"))
	}
	if code != 0 || !cmp.Equal(want, got) {
		t.Errorf("docs: exit %d, files %v", code, got)
	}
	if _, errOut, code := run(t, "generate", "pdf"); code != 2 || !strings.Contains(errOut, `unknown kind "pdf"`) {
		t.Errorf("generate pdf: exit %d, stderr %q", code, errOut)
	}
	if out, _, _ := run(t, "--help"); strings.Contains(out, "generate") {
		t.Errorf("generate is not hidden:\n%s", out)
	}
}

// TestCheckHostResolve: tcpdmatch treats a client given as an address as
// having no name; --resolve looks it up as a live tcpwrapd does.
func TestCheckHostResolve(t *testing.T) {
	_, allow, deny := tables(t, "imap: .example.com\n", "ALL: UNKNOWN\n")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"imap", "192.0.2.7"}, "access:   denied\n"},               // name unknown: UNKNOWN matches
		{[]string{"--resolve", "imap", "192.0.2.7"}, "access:   granted\n"}, // mail.example.com
		{[]string{"--resolve", "imap", "192.0.2.8"}, "access:   denied\n"},  // no PTR: unknown
	} {
		out, errOut, code := run(t, append([]string{"check-host", "--allow-file", allow, "--deny-file", deny}, tt.args...)...)
		if code != 0 || !strings.HasSuffix(out, tt.want) {
			t.Errorf("%v: exit %d, stderr %q, stdout:\n%s\nwant it to end in %q", tt.args, code, errOut, out, tt.want)
		}
	}
}

// TestCheckHostJSONError: an option error reaches the JSON report.
func TestCheckHostJSONError(t *testing.T) {
	_, allow, deny := tables(t, "imap: 192.0.2.0/255.255.255.0 : allow : spawn /bin/true\n", "")
	out, _, code := run(t, "check-host", "--json", "--allow-file", allow, "--deny-file", deny, "imap", "192.0.2.7")
	var rep CheckHostReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	var raw struct {
		Results []struct {
			Decision map[string]any `json:"decision"`
		} `json:"results"`
	}
	json.Unmarshal([]byte(out), &raw)
	got := []any{rep.Results[0].Access, raw.Results[0].Decision["reason"], raw.Results[0].Decision["error"]}
	want := []any{"denied", "option error", allow + `:1: option "allow" must be at end`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
