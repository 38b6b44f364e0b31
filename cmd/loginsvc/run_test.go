package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/internal/testcert"
	"github.com/tcpwrapd/tcpwrapd/pkg/version"
)

func TestMainVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		t.Run(arg, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run([]string{"loginsvc", arg}, &out, &errb); code != exitOK {
				t.Fatalf("exit %d, stderr %q", code, errb.String())
			}
			if want := "loginsvc version " + version.Version + "\n"; out.String() != want {
				t.Errorf("stdout %q, want %q", out.String(), want)
			}
			if errb.Len() != 0 {
				t.Errorf("stderr %q", errb.String())
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the golden files of the examples")

// exampleCopy copies examples/name into a temporary directory with the
// Debian certificate paths (</etc/dovecot/private/dovecot.{pem,key})
// pointing at a test certificate there, and returns the copy's path and
// a function that maps the copy's paths in an output back to the
// example's, so that golden outputs do not depend on the machine.
func exampleCopy(t *testing.T, name string) (string, func(string) string) {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key, _ := testcert.Write(t, dir)
	r := strings.NewReplacer("</etc/dovecot/private/dovecot.pem", "<"+cert, "</etc/dovecot/private/dovecot.key", "<"+key)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(r.Replace(string(text))), 0o644); err != nil {
		t.Fatal(err)
	}
	back := strings.NewReplacer(cert, "/etc/dovecot/private/dovecot.pem", key, "/etc/dovecot/private/dovecot.key", path, "examples/"+name)
	return path, back.Replace
}

// runOK runs loginsvc with args and returns its stdout; a non-zero exit
// status or anything on stderr fails the test.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"loginsvc"}, args...), &out, &errb); code != exitOK || errb.Len() != 0 {
		t.Fatalf("loginsvc %q: exit %d, stderr %q", args, code, errb.String())
	}
	return out.String()
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s (-want +got)\n%s", path, d)
	}
}

// TestExamplesPrint: the shipped example configurations parse, and
// loginsvc -n (and -a for the Dovecot fronts) prints what
// testdata/<example>.{n,a} holds, with the Dovecot sockets they use in
// the head.
func TestExamplesPrint(t *testing.T) {
	for _, tt := range []struct {
		example string
		modes   []string
	}{
		{"loginsvc.conf", []string{"-n"}},
		{"dovecot23-front.conf", []string{"-n", "-a"}},
		{"dovecot24-front.conf", []string{"-n", "-a"}},
	} {
		for _, mode := range tt.modes {
			t.Run(tt.example+mode, func(t *testing.T) {
				path, back := exampleCopy(t, tt.example)
				golden(t, tt.example+"."+mode[1:], back(runOK(t, mode, "-c", path)))
			})
		}
	}
}

// TestDovecotConf: loginsvc --dovecot-conf prints, for each Dovecot
// front example, exactly the Dovecot snippet shipped beside it
// (examples/dovecot2N-99-loginsvc.conf), whether given the release or
// `dovecot --version`'s output; for other settings it follows them.
func TestDovecotConf(t *testing.T) {
	for _, tt := range []struct{ example, version, snippet string }{
		{"dovecot23-front.conf", "2.3", "dovecot23-99-loginsvc.conf"},
		{"dovecot23-front.conf", "2.3.19.1 (9b53102964)", "dovecot23-99-loginsvc.conf"},
		{"dovecot24-front.conf", "2.4", "dovecot24-99-loginsvc.conf"},
		{"dovecot24-front.conf", "2.4.1-4 (7d8c0e5759)", "dovecot24-99-loginsvc.conf"},
	} {
		t.Run(tt.example+" "+tt.version, func(t *testing.T) {
			path, back := exampleCopy(t, tt.example)
			got := back(runOK(t, "--dovecot-conf", tt.version, "-c", path))
			shipped := filepath.Join("..", "..", "examples", tt.snippet)
			if *update && tt.version == "2.3" || *update && tt.version == "2.4" {
				if err := os.WriteFile(shipped, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(shipped)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("examples/%s (-want +got)\n%s", tt.snippet, d)
			}
		})
	}
	// The example for tests (examples/loginsvc.conf): its own base_dir,
	// imap and pop3 only.
	path, back := exampleCopy(t, "loginsvc.conf")
	golden(t, "loginsvc.conf.dovecot-conf-2.4", back(runOK(t, "--dovecot-conf", "2.4", "-c", path)))
	// Settings that differ from Dovecot's defaults show.
	dir := t.TempDir()
	conf := filepath.Join(dir, "l.conf")
	os.WriteFile(conf, []byte("base_dir = /run/dovecot\nprotocols = imap\nlogin_socket_path = auth-login\nservice imap-login {\n  postlogin_socket = imap-postlogin\n  inet_listener imap-webmail {\n    port = 10143\n  }\n}\n"), 0o644)
	golden(t, "custom-sockets.dovecot-conf-2.3", runOK(t, "--dovecot-conf", "2.3", "-c", conf))
}

// TestDovecotConfUsage: a release other than 2.3 or 2.4, or
// --dovecot-conf with -n or -a, is a usage error (exit 2).
func TestDovecotConfUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--dovecot-conf", "2.5"},
		{"--dovecot-conf", "2.33"},
		{"--dovecot-conf", ""},
		{"-n", "--dovecot-conf", "2.3"},
		{"-a", "--dovecot-conf", "2.4"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"loginsvc", "-c", "/nonexistent"}, args...), &out, &errb)
		if code != exitUsage && !(args[1] == "" && code == exitFailure) {
			t.Errorf("loginsvc %q: exit %d (want %d), stderr %q", args, code, exitUsage, errb.String())
		}
		if out.Len() != 0 {
			t.Errorf("loginsvc %q: stdout %q", args, out.String())
		}
	}
}
