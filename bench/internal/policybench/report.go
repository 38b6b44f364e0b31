package policybench

import (
	"bufio"
	"fmt"
	"io"

	"github.com/tcpwrapd/tcpwrapd/bench/internal/accessbench"
)

// Target names that Report compares; others are shown with their ratio
// to the null responder.
const (
	TargetOurs   = "tcpwrapd"
	TargetNull   = "null"
	TargetPython = "python"
)

// Goals of tcpwrapd's policy front ends, checked by Report: at least
// GoalVsNull times the null responder's throughput at every size and
// concurrency, and a p99 under GoalP99US with GoalP99Workers clients.
const (
	GoalVsNull     = 0.9
	GoalP99US      = 1000
	GoalP99Workers = 4
)

// ReadResults decodes Result JSON lines from r; lines that do not start
// with '{' are skipped.
func ReadResults(r io.Reader) ([]*Result, error) { return accessbench.ReadJSONLines[Result](r) }

var protoTitle = map[string]string{
	ProtoAuthPolicy: "Dovecot auth policy (HTTP/1.1 keep-alive)",
	ProtoPostfix:    "Postfix policy (persistent connection, attribute blocks)",
}

// Report writes, per protocol and hosts.deny size, one table of every
// target and client count (requests/s, p50, p99, max, errors, CPU per
// request, ratio to the null responder at the same client count), and
// then tcpwrapd against its goals. A later result for the same protocol,
// size, client count and target replaces an earlier one.
func Report(w io.Writer, results []*Result) error {
	type group struct {
		proto string
		rules int
	}
	type key struct {
		group
		workers int
		target  string
	}
	var groups []group
	seen := map[group]bool{}
	rows := map[group][]key{}
	byKey := map[key]*Result{}
	for _, r := range results {
		g := group{r.Proto, r.Rules}
		if !seen[g] {
			seen[g] = true
			groups = append(groups, g)
		}
		k := key{g, r.Workers, r.Target}
		if byKey[k] == nil {
			rows[g] = append(rows[g], k)
		}
		byKey[k] = r
	}
	bw := bufio.NewWriter(w)
	f := accessbench.FormatUS
	type goal struct {
		k                  key
		vsNull, vsPy       float64
		p99, nullP99       float64
		errors             int64
		haveNull, havePyth bool
	}
	var goals []goal
	for _, g := range groups {
		title := protoTitle[g.proto]
		if title == "" {
			title = g.proto
		}
		fmt.Fprintf(bw, "\n%s, hosts.deny %d lines\n", title, g.rules)
		fmt.Fprintf(bw, "  %7s %-9s %10s %9s %9s %9s %9s %6s %9s %9s %8s\n",
			"clients", "target", "req/s", "p50", "p90", "p99", "max", "errors", "drv cpu", "svc cpu", "vs null")
		for _, k := range rows[g] {
			r := byKey[k]
			ratio, svc := "-", "-"
			if n := byKey[key{g, k.workers, TargetNull}]; n != nil && n.Rate > 0 && k.target != TargetNull {
				ratio = fmtRatio(r.Rate / n.Rate)
			}
			if r.ServerCPUUS > 0 {
				svc = f(r.ServerCPUUS)
			}
			fmt.Fprintf(bw, "  %7d %-9s %10.0f %9s %9s %9s %9s %6d %9s %9s %8s\n", k.workers, k.target, r.Rate,
				f(r.P50US), f(r.P90US), f(r.P99US), f(r.MaxUS), r.Errors, f(r.DriverCPUUS), svc, ratio)
			if k.target != TargetOurs {
				continue
			}
			gl := goal{k: k, p99: r.P99US, errors: r.Errors}
			if n := byKey[key{g, k.workers, TargetNull}]; n != nil && n.Rate > 0 {
				gl.vsNull, gl.nullP99, gl.haveNull = r.Rate/n.Rate, n.P99US, true
			}
			if p := byKey[key{g, k.workers, TargetPython}]; p != nil && p.Rate > 0 {
				gl.vsPy, gl.havePyth = r.Rate/p.Rate, true
			}
			goals = append(goals, gl)
		}
	}
	if len(goals) > 0 {
		fmt.Fprintf(bw, "\ntcpwrapd goals: >= %.1fx the null responder, p99 < %s with %d clients, no errors\n",
			GoalVsNull, f(GoalP99US), GoalP99Workers)
		fmt.Fprintf(bw, "  %-10s %8s %7s %10s %12s %9s %9s %6s  %s\n",
			"front end", "lines", "clients", "ours/null", "ours/python", "p99", "null p99", "errors", "verdict")
		for _, gl := range goals {
			ok := gl.haveNull && gl.vsNull >= GoalVsNull && gl.errors == 0 &&
				(gl.k.workers != GoalP99Workers || gl.p99 < GoalP99US)
			verdict := "PASS"
			if !ok {
				verdict = "FAIL"
			}
			vsNull, vsPy, nullP99 := "-", "-", "-"
			if gl.haveNull {
				vsNull, nullP99 = fmtRatio(gl.vsNull), f(gl.nullP99)
			}
			if gl.havePyth {
				vsPy = fmtRatio(gl.vsPy)
			}
			fmt.Fprintf(bw, "  %-10s %8d %7d %10s %12s %9s %9s %6d  %s\n", gl.k.proto, gl.k.rules, gl.k.workers,
				vsNull, vsPy, f(gl.p99), nullP99, gl.errors, verdict)
		}
	}
	return bw.Flush()
}

// fmtRatio formats a throughput ratio with enough digits to be read.
func fmtRatio(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0fx", r)
	default:
		return fmt.Sprintf("%.2fx", r)
	}
}
