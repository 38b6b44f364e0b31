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
		fmt.Fprintf(out, "median of up to %d runs per row (a run per round; sessions: two per round)\n", rounds)
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
		case "sessions", "sessions-tls":
			fmt.Fprintf(tw, "%s\t%s %d all logged in\t%s\t%s\t-\t%s\t-\t\n", k.mode, k.test, max(d.N, l.N),
				cell(dok, fmt.Sprintf("%.2f s", d.AllGreetedS)), cell(lok, fmt.Sprintf("%.2f s", l.AllGreetedS)),
				ratio(dok && lok, d.AllGreetedS, l.AllGreetedS))
			fmt.Fprintf(tw, "%s\t%s login PSS/session\t%s\t%s\t-\t%s\t-\t\n", k.mode, k.test,
				cell(dok, kb(d.PSSPerConnB)), cell(lok, kb(l.PSSPerConnB)),
				ratio(dok && lok, float64(d.PSSPerConnB), float64(l.PSSPerConnB)))
			fmt.Fprintf(tw, "%s\t%s imap PSS/session\t%s\t%s\t-\t%s\t-\t\n", k.mode, k.test,
				cell(dok, kb(d.IMAPPSSPerSessB)), cell(lok, kb(l.IMAPPSSPerSessB)),
				ratio(dok && lok, float64(d.IMAPPSSPerSessB), float64(l.IMAPPSSPerSessB)))
		case "login", "login-par", "login-tls", "login-par-tls":
			fmt.Fprintf(tw, "%s\t%s logins/s\t%s\t%s\t-\t%s\t-\t\n", k.mode, k.test,
				cell(dok, fmt.Sprintf("%.0f", d.PerSec)), cell(lok, fmt.Sprintf("%.0f", l.PerSec)),
				ratio(dok && lok, l.PerSec, d.PerSec))
			fmt.Fprintf(tw, "%s\t%s session median / p99 ms\t%s\t%s\t-\t%s\t-\t\n", k.mode, k.test,
				cell(dok, fmt.Sprintf("%.1f / %.1f", d.SessMedMs, d.SessP99Ms)), cell(lok, fmt.Sprintf("%.1f / %.1f", l.SessMedMs, l.SessP99Ms)),
				ratio(dok && lok, d.SessMedMs, l.SessMedMs))
			fmt.Fprintf(tw, "%s\t%s CPU µs/login (all)\t%s\t%s\t-\t%s\t-\t\n", k.mode, k.test,
				cell(dok, fmt.Sprintf("%.0f", d.SvcCPUus)), cell(lok, fmt.Sprintf("%.0f", l.SvcCPUus)),
				ratio(dok && lok, d.SvcCPUus, l.SvcCPUus))
		default:
			fmt.Fprintf(tw, "%s\t%s conn/s\t%s\t%s\t%s\t%s\t%s\t\n", k.mode, k.test,
				cell(dok, fmt.Sprintf("%.0f", d.PerSec)), cell(lok, fmt.Sprintf("%.0f", l.PerSec)), cell(fok, fmt.Sprintf("%.0f", f.PerSec)),
				ratio(dok && lok, l.PerSec, d.PerSec), ratio(dok && fok, f.PerSec, d.PerSec))
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
