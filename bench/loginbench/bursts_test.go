package main

import (
	"strings"
	"testing"
)

func TestBursts(t *testing.T) {
	in := `{"target":"loginsvc","test":"conc","n":500,"all_greeted_s":0.040,"greet_median_ms":20,"greet_p99_ms":35,"svc_cpu_us_per_conn":40,"drv_cpu_us_per_conn":100}
{"target":"dovecot","test":"conc","n":500,"all_greeted_s":0.050,"greet_median_ms":25,"greet_p99_ms":45,"svc_cpu_us_per_conn":60,"drv_cpu_us_per_conn":90}
{"target":"dovecot","test":"conc","n":500,"all_greeted_s":0.120,"greet_median_ms":60,"greet_p99_ms":110}
{"target":"loginsvc","test":"conc","n":500,"all_greeted_s":0.080,"greet_median_ms":40,"greet_p99_ms":70,"errors":1}
{"target":"loginsvc","test":"conc","n":500,"all_greeted_s":0.060,"greet_median_ms":30,"greet_p99_ms":50}
{"target":"dovecot","test":"conc","n":500,"all_greeted_s":0.048,"greet_median_ms":24,"greet_p99_ms":40}
{"target":"loginsvc","test":"seq","n":20,"conn_per_s":2000}
`
	var b strings.Builder
	if err := bursts(strings.NewReader(in), &b); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"target  bursts  errors  all greeted ms: min  p25  median  p75  max  greeting median ms  p99 ms  CPU µs/conn: svc  drv",
		// CPU: the mean over the bursts (one each here)
		"dovecot  3  0  48.0  48.0  50.0  120.0  120.0  25.0  45.0  20  30",
		"loginsvc  3  1  40.0  40.0  60.0  80.0  80.0  30.0  50.0  13  33",
		// pairs: 50/40 = 1.25, 120/80 = 1.50, 48/60 = 0.80
		"dovecot ÷ loginsvc (above 1: loginsvc faster): medians 0.83x; per pair: median 1.25x (p25 0.80x, p75 1.50x), loginsvc faster in 2 of 3 pairs",
	}
	diffRows(t, want, strings.Split(strings.TrimSpace(b.String()), "\n"), b.String())
	if err := bursts(strings.NewReader("not json\n"), &b); err == nil {
		t.Error("no error for a line that is not JSON")
	}
}
