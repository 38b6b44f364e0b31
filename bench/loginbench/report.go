package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// report reads the JSON result lines of bench/login.sh (targets
// "dovecot/MODE", "loginsvc/MODE", "floor/MODE") and writes one row per
// mode and test with both front ends side by side and the ratios the
// issue asks for: loginsvc's rate over Dovecot's (and the floor's, the
// most any server reaches here); for conc, Dovecot's time to greet all
// and memory per connection over loginsvc's (above 1: loginsvc is
// faster, smaller).
func report(in io.Reader, out io.Writer) error {
	type key struct{ mode, test string }
	res := map[key]map[string]result{}
	var order []key
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return fmt.Errorf("report: %v in %q", err, line)
		}
		target, mode, _ := strings.Cut(r.Target, "/")
		k := key{mode, r.Test}
		if res[k] == nil {
			res[k] = map[string]result{}
			order = append(order, k)
		}
		res[k][target] = r
	}
	if err := sc.Err(); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\ttest\tdovecot\tloginsvc\tfloor\tloginsvc vs dovecot\tfloor vs dovecot\t")
	for _, k := range order {
		m := res[k]
		d, dok := m["dovecot"]
		l, lok := m["loginsvc"]
		f, fok := m["floor"]
		cell := func(ok bool, s string) string {
			if !ok {
				return "-"
			}
			return s
		}
		ratio := func(ok bool, a, b float64) string {
			if !ok || b == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", a/b)
		}
		switch k.test {
		case "conc", "idle":
			fmt.Fprintf(tw, "%s\t%s all greeted\t%s\t%s\t-\t%s\t-\t\n", k.mode, k.test,
				cell(dok, fmt.Sprintf("%.3f s", d.AllGreetedS)), cell(lok, fmt.Sprintf("%.3f s", l.AllGreetedS)),
				ratio(dok && lok, d.AllGreetedS, l.AllGreetedS))
			fmt.Fprintf(tw, "%s\t%s PSS/conn\t%s\t%s\t-\t%s\t-\t\n", k.mode, k.test,
				cell(dok, fmt.Sprintf("%d B", d.PSSPerConnB)), cell(lok, fmt.Sprintf("%d B", l.PSSPerConnB)),
				ratio(dok && lok, float64(d.PSSPerConnB), float64(l.PSSPerConnB)))
		default:
			fmt.Fprintf(tw, "%s\t%s conn/s\t%s\t%s\t%s\t%s\t%s\t\n", k.mode, k.test,
				cell(dok, fmt.Sprintf("%.0f", d.PerSec)), cell(lok, fmt.Sprintf("%.0f", l.PerSec)), cell(fok, fmt.Sprintf("%.0f", f.PerSec)),
				ratio(dok && lok, l.PerSec, d.PerSec), ratio(dok && fok, f.PerSec, d.PerSec))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(out, "(vs: rates loginsvc ÷ Dovecot; times and memory Dovecot ÷ loginsvc: above 1, loginsvc is better)")
	return err
}
