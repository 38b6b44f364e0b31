package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
)

// bursts reads the conc result lines of bench/burst.sh (targets
// "dovecot" and "loginsvc", one line per burst, the two targets' bursts
// interleaved) and writes, per target, the distribution of the time to
// greet all connections (min, quartiles, max), the medians of the
// per-burst greeting median and p99, and the mean CPU per connection of
// the service and of the driver until all are greeted (10 ms ticks:
// the mean over the bursts is the figure, not one burst's); then the ratio Dovecot ÷ loginsvc of
// the medians and the median of the ratios of the bursts run next to
// each other (the i-th of each target: above 1, loginsvc is faster).
// One burst is too noisy to compare on a shared machine (0.04-0.08 s
// for the same binary); pairs run seconds apart see the same load.
func bursts(in io.Reader, out io.Writer) error {
	by := map[string][]result{}
	err := eachResult(in, "bursts", func(r result) {
		if r.Test == "conc" {
			by[r.Target] = append(by[r.Target], r)
		}
	})
	if err != nil {
		return err
	}
	targets := make([]string, 0, len(by))
	for t := range by {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tbursts\terrors\tall greeted ms: min\tp25\tmedian\tp75\tmax\tgreeting median ms\tp99 ms\tCPU µs/conn: svc\tdrv\t")
	med := map[string]float64{}
	for _, t := range targets {
		rs := by[t]
		var all, g50, g99 []float64
		var svc, drv float64
		errs := 0
		for _, r := range rs {
			svc += r.SvcCPUus / float64(len(rs))
			drv += r.DrvCPUus / float64(len(rs))
			all = append(all, r.AllGreetedS*1000)
			g50 = append(g50, r.GreetMedMs)
			g99 = append(g99, r.GreetP99Ms)
			errs += r.Errors
		}
		q := quantiles(all)
		med[t] = q[2]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t\n", t, len(rs), errs,
			q[0], q[1], q[2], q[3], q[4], quantiles(g50)[2], quantiles(g99)[2], svc, drv)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	d, l := by["dovecot"], by["loginsvc"]
	if len(d) == 0 || len(l) == 0 || med["loginsvc"] == 0 {
		return nil
	}
	var ratios []float64
	for i := range min(len(d), len(l)) {
		if l[i].AllGreetedS > 0 {
			ratios = append(ratios, d[i].AllGreetedS/l[i].AllGreetedS)
		}
	}
	rq := quantiles(ratios)
	_, err = fmt.Fprintf(out, "dovecot ÷ loginsvc (above 1: loginsvc faster): medians %.2fx; per pair: median %.2fx (p25 %.2fx, p75 %.2fx), loginsvc faster in %d of %d pairs\n",
		med["dovecot"]/med["loginsvc"], rq[2], rq[1], rq[3], countAbove(ratios, 1), len(ratios))
	return err
}

// quantiles returns the minimum, the quartiles (nearest rank; the
// median the upper one of an even count, as medianResult's) and the
// maximum of vs (zeros for none).
func quantiles(vs []float64) [5]float64 {
	if len(vs) == 0 {
		return [5]float64{}
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	at := func(p float64) float64 { return s[min(len(s)-1, int(float64(len(s))*p))] }
	return [5]float64{s[0], at(0.25), at(0.5), at(0.75), s[len(s)-1]}
}

// countAbove counts the values above x.
func countAbove(vs []float64, x float64) int {
	n := 0
	for _, v := range vs {
		if v > x {
			n++
		}
	}
	return n
}
