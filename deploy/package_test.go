// Package deploy_test checks that what the packages ship is true to the
// tree: the copyright file names every module linked into the binaries
// with its licence, and every document a shipped file points to is
// shipped (deploy/nfpm.yaml).
package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const module = "github.com/tcpwrapd/tcpwrapd"

// binaries are the commands the packages ship.
var binaries = []string{"tcpwrapd", "loginctl", "loginsvc"}

func goTool(t *testing.T) string {
	t.Helper()
	g := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(g); err != nil {
		t.Fatalf("go tool: %v", err)
	}
	return g
}

// linkedModules builds the shipped commands and returns the modules
// `go version -m` lists as linked into any of them (path -> module dir).
func linkedModules(t *testing.T) map[string]string {
	t.Helper()
	g := goTool(t)
	dir := t.TempDir()
	mods := map[string]string{}
	for _, b := range binaries {
		bin := filepath.Join(dir, b)
		cmd := exec.Command(g, "build", "-trimpath", "-o", bin, "./cmd/"+b)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/%s: %v\n%s", b, err, out)
		}
		out, err := exec.Command(g, "version", "-m", bin).Output()
		if err != nil {
			t.Fatalf("go version -m %s: %v", b, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && (f[0] == "dep" || f[0] == "=>") {
				mods[f[1]] = f[2]
			}
		}
	}
	for path, version := range mods {
		out, err := exec.Command(g, "mod", "download", "-json", path+"@"+version).Output()
		if err != nil {
			t.Fatalf("go mod download %s@%s: %v", path, version, err)
		}
		m := regexp.MustCompile(`"Dir": "([^"]+)"`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("go mod download %s@%s: no Dir in %s", path, version, out)
		}
		mods[path] = string(m[1])
	}
	return mods
}

// copyrightModules reads the "module licence" lines of
// deploy/debian/copyright: one-space-indented lines of two words whose
// first is a module path.
func copyrightModules(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("debian/copyright")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^ ([a-z0-9.-]+\.[a-z]+/\S+) (\S+)$`)
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			got[m[1]] = m[2]
		}
	}
	return got
}

// licenceOf names the licence of a module from its LICENSE file, for the
// four licences the dependencies use; "" when it is none of them.
func licenceOf(dir string) string {
	matches, _ := filepath.Glob(filepath.Join(dir, "LICEN[SC]E*"))
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		s := string(b)
		switch {
		case strings.Contains(s, "Apache License") && strings.Contains(s, "Version 2.0"):
			return "Apache-2.0"
		case strings.Contains(s, "Permission is hereby granted, free of charge"):
			return "MIT"
		case strings.Contains(s, "Neither the name"):
			return "BSD-3-Clause"
		case strings.Contains(s, "Redistribution and use in source and binary forms"):
			return "BSD-2-Clause"
		}
	}
	return ""
}

// TestCopyrightNamesLinkedModules keeps deploy/debian/copyright true when
// dependencies change: the modules it lists are exactly those linked into
// the shipped binaries, each with the licence of its LICENSE file.
func TestCopyrightNamesLinkedModules(t *testing.T) {
	linked := linkedModules(t)
	want := map[string]string{}
	for path, dir := range linked {
		if path == module {
			continue
		}
		lic := licenceOf(dir)
		if lic == "" {
			t.Errorf("%s: cannot tell the licence of %s; name it in debian/copyright by hand and teach licenceOf", path, dir)
		}
		want[path] = lic
	}
	if diff := cmp.Diff(want, copyrightModules(t)); diff != "" {
		t.Errorf("deploy/debian/copyright module list (-linked +listed):\n%s", diff)
	}
	if _, err := os.Stat("../LICENSE"); err != nil {
		t.Errorf("LICENSE at the repository root: %v", err)
	}
}

// shipped is one contents entry of nfpm.yaml.
type shipped struct{ src, dst string }

func packageContents(t *testing.T) []shipped {
	t.Helper()
	b, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []shipped
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "- src: "):
			out = append(out, shipped{src: strings.TrimPrefix(l, "- src: ")})
		case strings.HasPrefix(l, "dst: ") && len(out) > 0:
			out[len(out)-1].dst = strings.TrimPrefix(l, "dst: ")
		}
	}
	return out
}

// TestPackageShipsReferencedDocs: every docs/*.md or
// /usr/share/doc/tcpwrapd/... path named by a shipped file (or a man page
// source) is in the package, so no installed file points at nothing.
func TestPackageShipsReferencedDocs(t *testing.T) {
	contents := packageContents(t)
	dsts := map[string]bool{}
	var sources []string
	for _, c := range contents {
		dsts[c.dst] = true
		if !strings.Contains(c.src, "$") && !strings.HasPrefix(c.src, "..") {
			sources = append(sources, filepath.Join("..", c.src))
		}
	}
	pages, _ := filepath.Glob("man/*.md")
	sources = append(sources, pages...)
	rel := regexp.MustCompile(`\bdocs/[A-Za-z0-9_.-]+\.md\b`)
	abs := regexp.MustCompile(`/usr/share/doc/tcpwrapd/[A-Za-z0-9_./-]*[A-Za-z0-9_-]`)
	var missing []string
	for _, src := range sources {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("shipped file: %v", err)
		}
		for _, m := range rel.FindAllString(string(b), -1) {
			if !dsts["/usr/share/doc/tcpwrapd/"+m] {
				missing = append(missing, src+": "+m)
			}
		}
		for _, m := range abs.FindAllString(string(b), -1) {
			if !dsts[m] && !isShippedDir(dsts, m) {
				missing = append(missing, src+": "+m)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("shipped files name documents the package does not ship:\n%s", strings.Join(missing, "\n"))
	}
	if len(dsts) == 0 || !dsts["/usr/share/doc/tcpwrapd/copyright"] {
		t.Fatalf("nfpm.yaml parse found no copyright entry: %v", contents)
	}
}

func isShippedDir(dsts map[string]bool, dir string) bool {
	for d := range dsts {
		if strings.HasPrefix(d, dir+"/") {
			return true
		}
	}
	return false
}
