package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
)

// report reads the JSON result lines of bench/login.sh (targets
// "dovecot/MODE", "loginsvc/MODE", "floor/MODE") and writes one row per
// mode and test with both front ends side by side and the ratios the
// issue asks for: loginsvc's rate over Dovecot's (and the floor's, the
// most any server reaches here); for conc, Dovecot's time to greet all
// and memory per connection over loginsvc's (above 1: loginsvc is
// faster, smaller). The login tests (through to Dovecot's imap) get
// logins/s, the session's median and p99 and the CPU per login of the
// front end and Dovecot together; the sessions tests the time to log
// all in and the PSS per held session of the login processes and,
// apart, of Dovecot's imap processes. A run of several rounds
// (bench/login.sh ROUNDS; the sessions test runs twice a round) has
// several lines per mode, test and target: each figure is then the
// median of that figure over them (medianResult), and the header says
// how many there were at most.
func report(in io.Reader, out io.Writer) error {
	type key struct{ mode, test string }
	all := map[key]map[string][]result{}
	var order []key
	err := eachResult(in, "report", func(r result) {
		target, mode, _ := strings.Cut(r.Target, "/")
		k := key{mode, r.Test}
		if all[k] == nil {
			all[k] = map[string][]result{}
			order = append(order, k)
		}
		all[k][target] = append(all[k][target], r)
	})
	if err != nil {
		return err
	}
	res := map[key]map[string]result{}
	rounds := 1
	for k, byTarget := range all {
		res[k] = map[string]result{}
		for target, rs := range byTarget {
			res[k][target] = medianResult(rs)
			rounds = max(rounds, len(rs))
		}
	}
	if rounds > 1 {
		fmt.Fprintf(out, "median of up to %d runs per row\n", rounds)
	}
	// A control (bench/login.sh TARGETS with dovecot2: Dovecot's same
	// front end measured again, in turns with the others) gets a column
	// of its own: what the noise alone makes of a ratio.
	control := false
	for _, m := range res {
		_, ok := m["dovecot2"]
		control = control || ok
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "mode\ttest\tdovecot\tloginsvc\tfloor\tloginsvc vs dovecot\tfloor vs dovecot\t"
	if control {
		head += "dovecot vs itself\t"
	}
	fmt.Fprintln(tw, head)
	for _, k := range order {
		m := res[k]
		// row prints one figure of every target: fig formats it, val is
		// what the ratios divide (rate: above 1 for the faster; else a
		// time or a size: Dovecot's over the other's). A memory figure
		// (mem) has no control: dovecot2 measures the processes that
		// dovecot's run has grown already.
		row := func(label string, val func(result) float64, fig func(result) string, rate, mem bool) {
			line := k.mode + "\t" + label + "\t"
			for _, t := range []string{"dovecot", "loginsvc", "floor"} {
				if r, ok := m[t]; ok {
					line += fig(r)
				} else {
					line += "-"
				}
				line += "\t"
			}
			ratio := func(t string) string {
				d, dok := m["dovecot"]
				o, ook := m[t]
				if !dok || !ook || val(d) == 0 || val(o) == 0 {
					return "-"
				}
				if rate {
					return fmt.Sprintf("%.2fx", val(o)/val(d))
				}
				return fmt.Sprintf("%.2fx", val(d)/val(o))
			}
			line += ratio("loginsvc") + "\t" + ratio("floor") + "\t"
			if control && mem {
				line += "-\t"
			} else if control {
				line += ratio("dovecot2") + "\t"
			}
			fmt.Fprintln(tw, line)
		}
		f := func(format string, v func(result) float64) func(result) string {
			return func(r result) string { return fmt.Sprintf(format, v(r)) }
		}
		perSec := func(r result) float64 { return r.PerSec }
		greeted := func(r result) float64 { return r.AllGreetedS }
		pss := func(r result) float64 { return float64(r.PSSPerConnB) }
		switch k.test {
		case "conc", "idle":
			row(k.test+" all greeted", greeted, f("%.3f s", greeted), false, false)
			row(k.test+" PSS/conn", pss, f("%.0f B", pss), false, true)
		case "sessions", "sessions-tls":
			n := 0
			for _, r := range m {
				n = max(n, r.N)
			}
			imap := func(r result) float64 { return float64(r.IMAPPSSPerSessB) }
			row(fmt.Sprintf("%s %d all logged in", k.test, n), greeted, f("%.2f s", greeted), false, false)
			row(k.test+" login PSS/session", pss, func(r result) string { return kb(r.PSSPerConnB) }, false, true)
			row(k.test+" imap PSS/session", imap, func(r result) string { return kb(r.IMAPPSSPerSessB) }, false, true)
		case "login", "login-par", "login-tls", "login-par-tls":
			row(k.test+" logins/s", perSec, f("%.0f", perSec), true, false)
			row(k.test+" session median / p99 ms", func(r result) float64 { return r.SessMedMs },
				func(r result) string { return fmt.Sprintf("%.1f / %.1f", r.SessMedMs, r.SessP99Ms) }, false, false)
			cpu := func(r result) float64 { return r.SvcCPUus }
			row(k.test+" CPU µs/login (all)", cpu, f("%.0f", cpu), false, false)
		default:
			row(k.test+" conn/s", perSec, f("%.0f", perSec), true, false)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, "(vs: rates loginsvc ÷ Dovecot; times and memory Dovecot ÷ loginsvc: above 1, loginsvc is better)")
	return err
}

// eachResult calls fn with each JSON result line of in (blank lines
// skipped); a line that is not one is an error, prefixed with cmd.
func eachResult(in io.Reader, cmd string, fn func(result)) error {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return fmt.Errorf("%s: %v in %q", cmd, err, line)
		}
		fn(r)
	}
	return sc.Err()
}

// kb formats a byte count in KB (one decimal), or in MB from 1 MB.
func kb(b int) string {
	if b >= 1<<20 {
		return fmt.Sprintf("%.2f MB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f KB", float64(b)/1024)
}

// medianResult is one result whose every numeric field is the median of
// that field over rs (the rounds of one mode, test and target; the
// upper median of an even count); the strings are rs[0]'s. A figure
// absent from some rounds (0) counts as 0 there.
func medianResult(rs []result) result {
	m := rs[0]
	if len(rs) == 1 {
		return m
	}
	mv := reflect.ValueOf(&m).Elem()
	vals := make([]float64, len(rs))
	for f := 0; f < mv.NumField(); f++ {
		kind := mv.Field(f).Kind()
		if kind != reflect.Float64 && kind != reflect.Int {
			continue
		}
		for i := range rs {
			v := reflect.ValueOf(rs[i]).Field(f)
			if kind == reflect.Int {
				vals[i] = float64(v.Int())
			} else {
				vals[i] = v.Float()
			}
		}
		sort.Float64s(vals)
		med := vals[len(vals)/2]
		if kind == reflect.Int {
			mv.Field(f).SetInt(int64(med))
		} else {
			mv.Field(f).SetFloat(med)
		}
	}
	return m
}
