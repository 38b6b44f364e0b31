// Package deps_test keeps the module's dependency rules: which packages
// may import which (the layout in README.md, "Layout"), checked on the
// transitive imports `go list -deps` reports, as tailscale's
// cmd/tailscaled/deps_test.go does.
package deps_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

const mod = "github.com/tcpwrapd/tcpwrapd/"

// deps returns each package of the module (without the module prefix)
// with its transitive dependencies inside the module and a flag for
// dependencies outside the standard library.
func deps(t *testing.T) map[string]pkgDeps {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-f",
		`{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	std := map[string]bool{}
	stdOut, err := exec.Command(goBin, "list", "std").Output()
	if err != nil {
		t.Fatalf("go list std: %v", err)
	}
	for _, p := range strings.Fields(string(stdOut)) {
		std[p] = true
	}
	res := map[string]pkgDeps{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], mod) {
			continue
		}
		var d pkgDeps
		for _, dep := range f[1:] {
			switch {
			case strings.HasPrefix(dep, mod):
				d.internal = append(d.internal, strings.TrimPrefix(dep, mod))
			case !std[dep] && !strings.HasPrefix(dep, "vendor/") && !strings.HasPrefix(dep, "internal/"):
				d.external = append(d.external, dep)
			}
		}
		res[strings.TrimPrefix(f[0], mod)] = d
	}
	return res
}

type pkgDeps struct{ internal, external []string }

// under reports whether pkg is dir or inside it.
func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// rule: packages matching from never depend on packages matching to.
type rule struct {
	why  string
	from func(string) bool
	to   func(string) bool
}

func in(dirs ...string) func(string) bool {
	return func(p string) bool {
		for _, d := range dirs {
			if under(p, d) {
				return true
			}
		}
		return false
	}
}

func exact(pkgs ...string) func(string) bool {
	return func(p string) bool {
		for _, x := range pkgs {
			if p == x {
				return true
			}
		}
		return false
	}
}

var protocols = []string{"pkg/logind/imap", "pkg/logind/pop3", "pkg/logind/submission", "pkg/logind/managesieve"}

var rules = []rule{
	{"the rules language stands alone (standard library only)", in("pkg/hostsrules"), func(p string) bool { return !under(p, "pkg/hostsrules") }},
	{"Dovecot's own seams (conf, service, authclient, masterauth, authpolicy) know nothing of ours",
		in("pkg/dovecot"), in("pkg/logind", "pkg/accessd", "pkg/ctl", "pkg/lint")},
	{"the shared mechanisms in internal/ know nothing of the products", in("internal/sockfd", "internal/privdrop", "internal/ctlsock", "internal/sdnotify", "internal/filestamp"), in("pkg")},
	{"the master-login contract and the control wire types stand alone", exact("pkg/logind/ipc", "pkg/logind/control"), in("pkg/logind")},
	{"the supervisor never links the login process or a protocol", in("pkg/logind/master"), in(append([]string{"pkg/logind/login"}, protocols...)...)},
	{"the login process knows no supervisor, schema or protocol", in("pkg/logind/login"), in(append([]string{"pkg/logind/master", "pkg/logind/config"}, protocols...)...)},
	{"the admin tool speaks to loginsvc through its control types", exact("pkg/ctl"), in("pkg/logind/master", "pkg/logind/login")},
	{"failure-driven bans know nothing of the front ends or the daemon", in("pkg/bans"), in("pkg", "internal")},
	{"a front end of the access checks knows nothing of the core or of other front ends", exact("pkg/accessd/dovecotsock"), exact("pkg/accessd")},
}

func TestDependencyRules(t *testing.T) {
	all := deps(t)
	if _, ok := all["pkg/hostsrules"]; !ok {
		t.Fatalf("go list found no pkg/hostsrules: %v", all)
	}
	for _, r := range rules {
		var bad []string
		for p, d := range all {
			if !r.from(p) {
				continue
			}
			if under(p, "pkg/hostsrules") && len(d.external) > 0 {
				bad = append(bad, p+" -> "+strings.Join(d.external, ", "))
			}
			for _, dep := range d.internal {
				if dep != p && r.to(dep) {
					bad = append(bad, p+" -> "+dep)
				}
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%s:\n\t%s", r.why, strings.Join(bad, "\n\t"))
		}
	}
	for _, a := range protocols {
		for _, b := range append([]string{"pkg/logind/master", "pkg/logind/config"}, protocols...) {
			if a != b && dependsOn(all, a, b) {
				t.Errorf("protocol package %s depends on %s (protocols never import each other, the master or the schema)", a, b)
			}
		}
	}
}

func dependsOn(all map[string]pkgDeps, a, b string) bool {
	for _, d := range all[a].internal {
		if d == b {
			return true
		}
	}
	return false
}

// maxLines is the most non-test lines one package may have: past it, a
// package holds more than one idea and is split along Dovecot's seams.
const maxLines = 2500

func TestPackageSize(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-f", `{{.Dir}}{{range .GoFiles}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n := 0
		for _, name := range f[1:] {
			b, err := os.ReadFile(filepath.Join(f[0], name))
			if err != nil {
				t.Fatal(err)
			}
			n += strings.Count(string(b), "\n")
		}
		if n > maxLines {
			t.Errorf("%s: %d non-test lines, more than %d", f[0], n, maxLines)
		}
	}
}
