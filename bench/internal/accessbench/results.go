package accessbench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// ReadJSONLines decodes JSON lines from r into values of T. Lines that do
// not start with '{' are skipped, so a driver's whole stdout can be fed
// in. The benchmarks' result types (Result here, policybench.Result)
// are read with it.
func ReadJSONLines[T any](r io.Reader) ([]*T, error) {
	var out []*T
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(t, "{") {
			continue
		}
		v := new(T)
		if err := json.Unmarshal([]byte(t), v); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// ReadJSONFiles is ReadJSONLines over each of files in turn, or over
// stdin when files is empty. Errors name the file.
func ReadJSONFiles[T any](files []string, stdin io.Reader) ([]*T, error) {
	if len(files) == 0 {
		out, err := ReadJSONLines[T](stdin)
		if err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
		return out, nil
	}
	var all []*T
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		rs, err := ReadJSONLines[T](fh)
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		all = append(all, rs...)
	}
	return all, nil
}

// Latencies summarizes request latencies in microseconds: the mean, the
// nearest-rank p50, p90 and p99, and the maximum. It sorts lat. All are
// zero when lat is empty.
type Latencies struct {
	// MeanUS, P50US, P90US, P99US and MaxUS are in microseconds.
	MeanUS, P50US, P90US, P99US, MaxUS float64
}

// SummarizeLatencies sorts lat and returns its Latencies.
func SummarizeLatencies(lat []time.Duration) Latencies {
	if len(lat) == 0 {
		return Latencies{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return Latencies{
		MeanUS: us(sum / time.Duration(len(lat))),
		P50US:  us(Percentile(lat, 50)),
		P90US:  us(Percentile(lat, 90)),
		P99US:  us(Percentile(lat, 99)),
		MaxUS:  us(lat[len(lat)-1]),
	}
}

// Counts are the verdicts of a run, for Emit.
type Counts struct {
	// Allowed, Denied and Errors count the requests by verdict.
	Allowed, Denied, Errors int64
}

// Emit prints res's human line on stderr and its JSON line on stdout, as
// the drivers' "run" commands do, and returns their exit status: 0, or 1
// when expect is "allow" or "deny" and not every check got that verdict
// (prog names the driver in the message).
func Emit(stdout, stderr io.Writer, prog string, res fmt.Stringer, c Counts, expect string) int {
	fmt.Fprintln(stderr, res)
	line, _ := json.Marshal(res)
	fmt.Fprintf(stdout, "%s\n", line)
	switch {
	case expect == "allow" && (c.Denied > 0 || c.Errors > 0 || c.Allowed == 0),
		expect == "deny" && (c.Allowed > 0 || c.Errors > 0 || c.Denied == 0):
		fmt.Fprintf(stderr, "%s: expected every check to %s: %d allow, %d deny, %d errors\n",
			prog, expect, c.Allowed, c.Denied, c.Errors)
		return 1
	}
	return 0
}
