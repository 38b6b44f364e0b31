package hostsrules

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// oracleCase is one line of testdata/oracle/cases.jsonl, the differential
// corpus produced by Debian's real tcpdmatch (see ../../shared/oracle).
type oracleCase struct {
	ID            string            `json:"id"`
	HostsAllow    *string           `json:"hosts_allow"`
	HostsDeny     *string           `json:"hosts_deny"`
	Files         map[string]string `json:"files"`
	Symlinks      map[string]string `json:"symlinks"`
	Dirs          []string          `json:"dirs"`
	Daemon        string            `json:"daemon"`
	Client        string            `json:"client"`
	Args          []string          `json:"args"`
	Argv          []string          `json:"argv"`
	Expect        string            `json:"expect"`
	ServiceExpect string            `json:"service_expect"`
}

func loadOracle(t testing.TB) []oracleCase {
	t.Helper()
	data, err := os.ReadFile("testdata/oracle/cases.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var cases []oracleCase
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var c oracleCase
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, c)
	}
	return cases
}

// oracleEnv is the lookup environment gen.sh gives tcpdmatch: /etc/hosts
// with the two base lines plus hosts-additions.txt, and netgroup.txt.
func oracleEnv(t testing.TB) *Env {
	t.Helper()
	add, err := os.ReadFile("testdata/oracle/hosts-additions.txt")
	if err != nil {
		t.Fatal(err)
	}
	ng, err := os.ReadFile("testdata/oracle/netgroup.txt")
	if err != nil {
		t.Fatal(err)
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tip6-localhost ip6-loopback\n" + string(add)
	return &Env{Resolver: ParseHosts([]byte(hosts)), Netgroups: ParseNetgroup(ng), Effects: aclexecEffects{}}
}

// aclexecEffects runs aclexec commands (their exit status decides, spec
// §10.3) and nothing else: the effects a live daemon's verdict depends on.
type aclexecEffects struct{}

func (aclexecEffects) Apply(ctx context.Context, o Option, x *Expander) (bool, error) {
	if o.Name != "aclexec" {
		return true, nil
	}
	return exec.CommandContext(ctx, "/bin/sh", "-c", o.Expanded).Run() == nil, nil
}

// setupCase writes a case's files under dir, replacing the corpus'
// /tmp/tcpw-case directory with dir in paths and contents.
func setupCase(t *testing.T, c oracleCase, dir string) {
	t.Helper()
	fix := func(s string) string { return strings.ReplaceAll(s, "/tmp/tcpw-case", dir) }
	for _, d := range c.Dirs {
		if err := os.MkdirAll(fix(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if c.HostsAllow != nil {
		write(filepath.Join(dir, "hosts.allow"), fix(*c.HostsAllow))
	}
	if c.HostsDeny != nil {
		write(filepath.Join(dir, "hosts.deny"), fix(*c.HostsDeny))
	}
	for p, s := range c.Files {
		write(fix(p), fix(s))
	}
	for p, target := range c.Symlinks {
		if err := os.Symlink(fix(target), fix(p)); err != nil {
			t.Fatal(err)
		}
	}
}

// runCase evaluates a case as `tcpdmatch -d DAEMON CLIENT` would, with a
// live daemon's semantics, and returns the verdicts joined by commas or
// "error".
func runCase(t *testing.T, c oracleCase, env *Env) string {
	dir := t.TempDir()
	setupCase(t, c, dir)
	p := Load(filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny"))
	ctx := context.Background()
	reqs, err := SimulatedRequests(ctx, env.Resolver, c.Daemon, c.Client)
	if err != nil {
		return "error"
	}
	var got []string
	for i := range reqs {
		d := p.Check(ctx, &reqs[i], env)
		switch {
		case errors.Is(d.Err, ErrExpansionTooLong):
			return "error"
		case d.Delegated:
			got = append(got, "delegated")
		default:
			got = append(got, d.Verdict.String())
		}
	}
	return strings.Join(got, ",")
}

// TestOracle runs every case of the tcpdmatch differential corpus through
// the evaluator. Cases whose result is a tcpdmatch artifact carry
// service_expect, the verdict a live libwrap daemon gives; that is ours.
func TestOracle(t *testing.T) {
	env := oracleEnv(t)
	for _, c := range loadOracle(t) {
		t.Run(c.ID, func(t *testing.T) {
			if c.Argv != nil || c.Args != nil {
				t.Skip("command-line case: tested by loginctl check-host")
			}
			want := c.Expect
			if c.ServiceExpect != "" {
				want = c.ServiceExpect
			}
			if diff := cmp.Diff(want, runCase(t, c, env)); diff != "" {
				t.Errorf("verdict mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
