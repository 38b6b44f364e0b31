package accessbench

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Target names that Report compares. Results with other names are shown
// but take no part in the ratios.
const (
	TargetOurs    = "tcpwrapd"
	TargetNull    = "null"
	TargetDovecot = "dovecot"
	// TargetManaged is tcpwrapd run by a Dovecot master as its tcpwrap
	// service (tcpwrapd --dovecot, one resident process).
	TargetManaged = "managed"
)

// Goals of tcpwrapd, checked by Report: at least GoalVsNull times the null
// responder's throughput, and a p99 latency under GoalP99US.
const (
	GoalVsNull = 0.9
	GoalP99US  = 1000
)

// ReadResults decodes Result JSON lines from r. Lines that do not start
// with '{' are skipped, so the driver's whole stdout can be fed in.
func ReadResults(r io.Reader) ([]*Result, error) { return ReadJSONLines[Result](r) }

// Report writes, for each rule size in order of first appearance, a table
// of the targets measured at that size (checks/s, p50, p99, max, errors)
// followed by the ratios ours/null and ours/dovecot, and then a summary of
// tcpwrapd against its goals. Later results for the same target and size
// replace earlier ones.
func Report(w io.Writer, results []*Result) error {
	type key struct {
		rules  int
		target string
	}
	var sizes []int
	seenSize := map[int]bool{}
	targets := map[int][]string{}
	byKey := map[key]*Result{}
	for _, r := range results {
		if !seenSize[r.Rules] {
			seenSize[r.Rules] = true
			sizes = append(sizes, r.Rules)
		}
		k := key{r.Rules, r.Target}
		if byKey[k] == nil {
			targets[r.Rules] = append(targets[r.Rules], r.Target)
		}
		byKey[k] = r
	}
	bw := bufio.NewWriter(w)
	type summary struct {
		rules         int
		vsNull, vsDov float64
		p99, nullP99  float64
		errors        int64
	}
	var sums []summary
	for _, n := range sizes {
		fmt.Fprintf(bw, "\nhosts.deny: %d lines\n", n)
		fmt.Fprintf(bw, "  %-10s %10s %9s %9s %9s %8s %6s %9s %9s\n", "target", "checks/s", "p50", "p99", "max", "checks", "errors", "drv cpu", "svc cpu")
		for _, t := range targets[n] {
			r := byKey[key{n, t}]
			svc := "-"
			if r.ServerCPUUS > 0 {
				svc = FormatUS(r.ServerCPUUS)
			}
			fmt.Fprintf(bw, "  %-10s %10.0f %9s %9s %9s %8d %6d %9s %9s\n", t, r.Rate, FormatUS(r.P50US), FormatUS(r.P99US), FormatUS(r.MaxUS), r.Checks, r.Errors, FormatUS(r.DriverCPUUS), svc)
		}
		ours, null, dov := byKey[key{n, TargetOurs}], byKey[key{n, TargetNull}], byKey[key{n, TargetDovecot}]
		if m := byKey[key{n, TargetManaged}]; m != nil && dov != nil && dov.Rate > 0 {
			fmt.Fprintf(bw, "  managed/dovecot = %s\n", fmtRatio(m.Rate/dov.Rate))
		}
		if ours == nil {
			continue
		}
		s := summary{rules: n, p99: ours.P99US, errors: ours.Errors}
		if null != nil {
			s.nullP99 = null.P99US
		}
		var parts []string
		if null != nil && null.Rate > 0 {
			s.vsNull = ours.Rate / null.Rate
			parts = append(parts, "ours/null = "+fmtRatio(s.vsNull))
		}
		if dov != nil && dov.Rate > 0 {
			s.vsDov = ours.Rate / dov.Rate
			parts = append(parts, "ours/dovecot = "+fmtRatio(s.vsDov))
		}
		if len(parts) > 0 {
			fmt.Fprintf(bw, "  %s\n", strings.Join(parts, ", "))
		}
		sums = append(sums, s)
	}
	if len(sums) > 0 {
		fmt.Fprintf(bw, "\ntcpwrapd goals: >= %.1fx null throughput, p99 < %s, no errors\n", GoalVsNull, FormatUS(GoalP99US))
		fmt.Fprintf(bw, "  %8s %10s %12s %10s %10s %8s  %s\n", "lines", "ours/null", "ours/dovecot", "p99", "null p99", "errors", "verdict")
		for _, s := range sums {
			ok := s.vsNull >= GoalVsNull && s.p99 < GoalP99US && s.errors == 0
			verdict := "PASS"
			if !ok {
				verdict = "FAIL"
			}
			dov, nullP99 := "-", "-"
			if s.vsDov > 0 {
				dov = fmtRatio(s.vsDov)
			}
			if s.nullP99 > 0 {
				nullP99 = FormatUS(s.nullP99)
			}
			fmt.Fprintf(bw, "  %8d %10s %12s %10s %10s %8d  %s\n", s.rules, fmtRatio(s.vsNull), dov, FormatUS(s.p99), nullP99, s.errors, verdict)
		}
	}
	return bw.Flush()
}

// fmtRatio formats a throughput ratio with enough digits to be read.
func fmtRatio(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0fx", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2fx", r)
	default:
		return fmt.Sprintf("%.4fx", r)
	}
}
