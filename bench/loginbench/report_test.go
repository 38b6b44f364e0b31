package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReport(t *testing.T) {
	in := `{"target":"dovecot/hp","test":"seq-raw","n":1000,"conn_per_s":5000}
{"target":"loginsvc/hp","test":"seq-raw","n":1000,"conn_per_s":5500}
{"target":"floor/hp","test":"seq-raw","n":1000,"conn_per_s":6000}
{"target":"dovecot/hp","test":"conc","n":500,"all_greeted_s":0.04,"pss_per_conn_bytes":13600}
{"target":"loginsvc/hp","test":"conc","n":500,"all_greeted_s":0.02,"pss_per_conn_bytes":3400}
{"target":"loginsvc/hp-idle","test":"idle","n":100000,"all_greeted_s":5.5,"pss_per_conn_bytes":6276}
`
	var b strings.Builder
	if err := report(strings.NewReader(in), &b); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"hp  seq-raw conn/s  5000  5500  6000  1.10x  1.20x",
		"hp  conc all greeted  0.040 s  0.020 s  -  2.00x  -",
		"hp  conc PSS/conn  13600 B  3400 B  -  4.00x  -",
		"hp-idle  idle all greeted  -  5.500 s  -  -  -",
	}
	diffRows(t, want, strings.Split(strings.TrimSpace(b.String()), "\n")[1:5], b.String())
	if err := report(strings.NewReader("not json\n"), &b); err == nil {
		t.Error("no error for a line that is not JSON")
	}
}

func TestReportLogin(t *testing.T) {
	in := `{"target":"dovecot/hs","test":"login-tls","n":300,"conn_per_s":40,"svc_cpu_us_per_conn":20000,"session_median_ms":25,"session_p99_ms":60}
{"target":"loginsvc/hs","test":"login-tls","n":300,"conn_per_s":50,"svc_cpu_us_per_conn":16000,"session_median_ms":20,"session_p99_ms":50}
{"target":"dovecot/hp","test":"sessions-tls","n":100,"all_greeted_s":2,"pss_per_conn_bytes":2097152,"imap_pss_per_session_bytes":716800}
{"target":"loginsvc/hp","test":"sessions-tls","n":100,"all_greeted_s":1,"pss_per_conn_bytes":20480,"imap_pss_per_session_bytes":716800}
`
	var b strings.Builder
	if err := report(strings.NewReader(in), &b); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"hs  login-tls logins/s  40  50  -  1.25x  -",
		"hs  login-tls session median / p99 ms  25.0 / 60.0  20.0 / 50.0  -  1.25x  -",
		"hs  login-tls CPU µs/login (all)  20000  16000  -  1.25x  -",
		"hp  sessions-tls 100 all logged in  2.00 s  1.00 s  -  2.00x  -",
		"hp  sessions-tls login PSS/session  2.00 MB  20.0 KB  -  102.40x  -",
		"hp  sessions-tls imap PSS/session  700.0 KB  700.0 KB  -  1.00x  -",
	}
	diffRows(t, want, strings.Split(strings.TrimSpace(b.String()), "\n")[1:7], b.String())
}

func TestReportRounds(t *testing.T) {
	in := `{"target":"dovecot/hp","test":"login","n":200,"conn_per_s":100,"svc_cpu_us_per_conn":7000,"session_median_ms":6,"session_p99_ms":9}
{"target":"loginsvc/hp","test":"login","n":200,"conn_per_s":90,"svc_cpu_us_per_conn":8000,"session_median_ms":7,"session_p99_ms":12}
{"target":"loginsvc/hp","test":"login","n":200,"conn_per_s":120,"svc_cpu_us_per_conn":6000,"session_median_ms":5,"session_p99_ms":8}
{"target":"dovecot/hp","test":"login","n":200,"conn_per_s":130,"svc_cpu_us_per_conn":6800,"session_median_ms":5,"session_p99_ms":8}
{"target":"dovecot/hp","test":"login","n":200,"conn_per_s":110,"svc_cpu_us_per_conn":7200,"session_median_ms":5.5,"session_p99_ms":10}
{"target":"loginsvc/hp","test":"login","n":200,"conn_per_s":115,"svc_cpu_us_per_conn":6500,"session_median_ms":5.2,"session_p99_ms":9}
`
	var b strings.Builder
	if err := report(strings.NewReader(in), &b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		"median of up to 3 runs per row",
		"hp  login logins/s  110  115  -  1.05x  -",
		"hp  login session median / p99 ms  5.5 / 9.0  5.2 / 9.0  -  1.06x  -",
		"hp  login CPU µs/login (all)  7000  6500  -  1.08x  -",
	}
	diffRows(t, want, append(lines[:1:1], lines[2:5]...), b.String())
}

// diffRows compares report rows with want, runs of spaces (the table's
// alignment) counting as one separator, and shows the full output on a
// difference.
func diffRows(t *testing.T, want, got []string, full string) {
	t.Helper()
	norm := func(ls []string) []string {
		out := make([]string, len(ls))
		for i, l := range ls {
			out[i] = strings.Join(strings.Fields(l), "  ")
		}
		return out
	}
	if d := cmp.Diff(norm(want), norm(got)); d != "" {
		t.Errorf("(-want +got)\n%s\nfull output:\n%s", d, full)
	}
}

// TestTurns: the schedule of runs in turns, A B, B A, ..., each front
// end's connections split evenly, every one counted once.
func TestTurns(t *testing.T) {
	for _, tc := range []struct {
		n, k, m int
		want    []turn
	}{
		{200, 2, 2, []turn{{0, 100}, {1, 100}, {1, 100}, {0, 100}}},
		{201, 2, 2, []turn{{0, 101}, {1, 101}, {1, 100}, {0, 100}}},
		{7, 3, 2, []turn{{0, 3}, {1, 3}, {1, 2}, {0, 2}, {0, 2}, {1, 2}}},
		{5, 1, 2, []turn{{0, 5}, {1, 5}}},
		{5, 0, 1, []turn{{0, 5}}},
		{4, 2, 3, []turn{{0, 2}, {1, 2}, {2, 2}, {2, 2}, {1, 2}, {0, 2}}},
		{0, 0, 2, []turn{{0, 0}, {1, 0}}},
	} {
		if d := cmp.Diff(tc.want, turns(tc.n, tc.k, tc.m), cmp.AllowUnexported(turn{})); d != "" {
			t.Errorf("turns(%d, %d, %d) (-want +got)\n%s", tc.n, tc.k, tc.m, d)
		}
	}
}

// TestReportControl: results of the control target dovecot2 (Dovecot
// measured again, in turns) add a column: Dovecot against itself.
func TestReportControl(t *testing.T) {
	in := `{"target":"dovecot/hp","test":"login-par","n":200,"conn_per_s":200,"svc_cpu_us_per_conn":7000,"session_median_ms":18,"session_p99_ms":25}
{"target":"loginsvc/hp","test":"login-par","n":200,"conn_per_s":210,"svc_cpu_us_per_conn":7000,"session_median_ms":18,"session_p99_ms":25}
{"target":"dovecot2/hp","test":"login-par","n":200,"conn_per_s":180,"svc_cpu_us_per_conn":7700,"session_median_ms":20,"session_p99_ms":30}
{"target":"dovecot/hp","test":"conc","n":500,"all_greeted_s":0.04,"pss_per_conn_bytes":13600}
{"target":"loginsvc/hp","test":"conc","n":500,"all_greeted_s":0.02,"pss_per_conn_bytes":3400}
{"target":"dovecot2/hp","test":"conc","n":500,"all_greeted_s":0.05,"pss_per_conn_bytes":1200}
`
	var b strings.Builder
	if err := report(strings.NewReader(in), &b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{
		"mode  test  dovecot  loginsvc  floor  loginsvc vs dovecot  floor vs dovecot  dovecot vs itself",
		"hp  login-par logins/s  200  210  -  1.05x  -  0.90x",
		"hp  login-par session median / p99 ms  18.0 / 25.0  18.0 / 25.0  -  1.00x  -  0.90x",
		"hp  login-par CPU µs/login (all)  7000  7000  -  1.00x  -  0.91x",
		"hp  conc all greeted  0.040 s  0.020 s  -  2.00x  -  0.80x",
		"hp  conc PSS/conn  13600 B  3400 B  -  4.00x  -  -",
	}
	diffRows(t, want, lines[:6], b.String())
}
