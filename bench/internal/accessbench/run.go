package accessbench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// SchemaVersion is the version of the Result JSON layout.
const SchemaVersion = 1

// Config describes one measurement run against one access socket.
type Config struct {
	// Socket is the path of the access socket (required).
	Socket string
	// Name is the protocol name sent before the newline; "" means "imap".
	Name string
	// Target and Rules label the result ("tcpwrapd", "dovecot", "null";
	// the number of rule lines). They do not change what is measured.
	Target string
	Rules  int
	// Workers is the number of concurrent checkers; 0 means 4.
	Workers int
	// Duration bounds the measured phase; Count bounds the number of
	// measured checks (all workers together). The run stops at whichever
	// comes first. If both are zero, Duration is 5 s.
	Duration time.Duration
	Count    int64
	// Warmup is run (with the same workers) before measuring; its checks
	// are not counted. Zero means no warm-up.
	Warmup time.Duration
	// Source is the client address of the passed TCP sockets; the zero
	// value means 127.0.0.1. Any 127.0.0.0/8 address works on Linux.
	Source netip.Addr
	// Fresh dials and accepts a new TCP connection before every check
	// instead of reusing one per worker. The TCP setup is not timed.
	Fresh bool
	// Timeout bounds each reply; 0 means 60 s, as in Dovecot's logins.
	Timeout time.Duration
	// ServerPID, if not zero, is the service's process (for Dovecot: the
	// master, whose reaped tcpwrap children count too); its CPU time over
	// the measured phase is reported per check.
	ServerPID int
}

// Result is the outcome of one Run. It is printed as one JSON line.
type Result struct {
	Schema  int    `json:"schema"`
	Target  string `json:"target"`
	Rules   int    `json:"rules"`
	Socket  string `json:"socket"`
	Name    string `json:"name"`
	Source  string `json:"source"`
	Workers int    `json:"workers"`
	Fresh   bool   `json:"fresh"`
	// Seconds is the wall time of the measured phase.
	Seconds float64 `json:"seconds"`
	// Checks counts measured checks, failed ones included.
	Checks  int64 `json:"checks"`
	Allowed int64 `json:"allowed"`
	Denied  int64 `json:"denied"`
	Errors  int64 `json:"errors"`
	// ErrorKinds counts failures by CheckError.Kind; FirstError is the
	// first failure's text.
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	FirstError string           `json:"first_error,omitempty"`
	// Rate is completed checks per second (failed ones included).
	Rate float64 `json:"checks_per_sec"`
	// Latencies of all measured checks, in microseconds.
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	MaxUS  float64 `json:"max_us"`
	// DriverCPUUS is this driver's CPU time (user+system, all threads) per
	// measured check, in microseconds; ServerCPUUS the same for
	// Config.ServerPID (0 when not measured; 10 ms tick resolution).
	DriverCPUUS float64 `json:"driver_cpu_us_per_check"`
	ServerCPUUS float64 `json:"server_cpu_us_per_check,omitempty"`
}

type workerStats struct {
	lat              []time.Duration
	allow, deny, bad int64
	kinds            map[string]int64
	first            error
	firstAt          time.Time
}

// Run measures cfg.Socket until cfg.Duration or cfg.Count is reached or
// ctx is cancelled, and returns the aggregate. It fails only when the setup
// fails (no TCP listener, cannot dial from cfg.Source); failed checks are
// counted in the Result, not returned as an error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Socket == "" {
		return nil, errors.New("no socket path")
	}
	if cfg.Name == "" {
		cfg.Name = "imap"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Duration <= 0 && cfg.Count <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if !cfg.Source.IsValid() {
		cfg.Source = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	src, err := newTCPSource(cfg.Source)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var pairs []*tcpPair
	defer func() {
		for _, p := range pairs {
			p.close()
		}
	}()
	if !cfg.Fresh {
		for range cfg.Workers {
			p, err := src.pair()
			if err != nil {
				return nil, err
			}
			pairs = append(pairs, p)
		}
	}
	ck := NewChecker(cfg.Socket, cfg.Name, cfg.Timeout)

	if cfg.Warmup > 0 {
		wctx, cancel := context.WithTimeout(ctx, cfg.Warmup)
		runWorkers(wctx, cfg, ck, src, pairs, nil)
		cancel()
	}
	mctx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		mctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var budget *atomic.Int64
	if cfg.Count > 0 {
		budget = new(atomic.Int64)
		budget.Store(cfg.Count)
	}
	srv0, srvErr := time.Duration(0), error(nil)
	if cfg.ServerPID > 0 {
		srv0, srvErr = ProcCPU(cfg.ServerPID)
	}
	cpu0, start := SelfCPU(), time.Now()
	stats := runWorkers(mctx, cfg, ck, src, pairs, budget)
	elapsed, cpu := time.Since(start), SelfCPU()-cpu0
	r := summarize(cfg, stats, elapsed)
	if r.Checks > 0 {
		r.DriverCPUUS = float64(cpu.Nanoseconds()) / 1e3 / float64(r.Checks)
		if cfg.ServerPID > 0 && srvErr == nil {
			if srv1, err := ProcCPU(cfg.ServerPID); err == nil {
				r.ServerCPUUS = float64((srv1 - srv0).Nanoseconds()) / 1e3 / float64(r.Checks)
			}
		}
	}
	return r, nil
}

// runWorkers runs cfg.Workers checkers until ctx is done or budget (if not
// nil) is used up, and returns their statistics.
func runWorkers(ctx context.Context, cfg Config, ck *Checker, src *tcpSource, pairs []*tcpPair, budget *atomic.Int64) []*workerStats {
	stats := make([]*workerStats, cfg.Workers)
	var wg sync.WaitGroup
	for i := range cfg.Workers {
		ws := &workerStats{lat: make([]time.Duration, 0, 1<<16), kinds: map[string]int64{}}
		stats[i] = ws
		var pair *tcpPair
		if pairs != nil {
			pair = pairs[i]
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				if budget != nil && budget.Add(-1) < 0 {
					return
				}
				fd := -1
				var fresh *tcpPair
				if pair != nil {
					fd = pair.fd
				} else {
					p, err := src.pair()
					if err != nil {
						ws.fail(&CheckError{Kind: "tcp", Err: err})
						continue
					}
					fresh, fd = p, p.fd
				}
				t0 := time.Now()
				out, err := ck.Check(fd)
				ws.lat = append(ws.lat, time.Since(t0))
				if fresh != nil {
					fresh.close()
				}
				switch out {
				case Allow:
					ws.allow++
				case Deny:
					ws.deny++
				default:
					ws.fail(err)
				}
			}
		})
	}
	wg.Wait()
	return stats
}

func (ws *workerStats) fail(err error) {
	ws.bad++
	kind := "other"
	var ce *CheckError
	if errors.As(err, &ce) {
		kind = ce.Kind
	}
	ws.kinds[kind]++
	if ws.first == nil {
		ws.first, ws.firstAt = err, time.Now()
	}
}

func summarize(cfg Config, stats []*workerStats, elapsed time.Duration) *Result {
	r := &Result{
		Schema: SchemaVersion, Target: cfg.Target, Rules: cfg.Rules,
		Socket: cfg.Socket, Name: cfg.Name, Source: cfg.Source.String(),
		Workers: cfg.Workers, Fresh: cfg.Fresh, Seconds: elapsed.Seconds(),
	}
	var lat []time.Duration
	var firstAt time.Time
	for _, ws := range stats {
		lat = append(lat, ws.lat...)
		r.Allowed += ws.allow
		r.Denied += ws.deny
		r.Errors += ws.bad
		for k, n := range ws.kinds {
			if r.ErrorKinds == nil {
				r.ErrorKinds = map[string]int64{}
			}
			r.ErrorKinds[k] += n
		}
		if ws.first != nil && (firstAt.IsZero() || ws.firstAt.Before(firstAt)) {
			firstAt, r.FirstError = ws.firstAt, ws.first.Error()
		}
	}
	r.Checks = r.Allowed + r.Denied + r.Errors
	if elapsed > 0 {
		r.Rate = float64(r.Checks) / elapsed.Seconds()
	}
	l := SummarizeLatencies(lat)
	r.MeanUS, r.P50US, r.P90US, r.P99US, r.MaxUS = l.MeanUS, l.P50US, l.P90US, l.P99US, l.MaxUS
	return r
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 when sorted is empty. sorted must be in ascending order.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted)) * p / 100))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// String is a one-line human summary of r.
func (r *Result) String() string {
	s := fmt.Sprintf("%-9s rules=%-6d %9.0f checks/s  p50 %s  p99 %s  max %s  (%d checks: %d allow, %d deny, %d errors, %d workers, %.1fs; cpu/check driver %s server %s)",
		r.Target, r.Rules, r.Rate, FormatUS(r.P50US), FormatUS(r.P99US), FormatUS(r.MaxUS),
		r.Checks, r.Allowed, r.Denied, r.Errors, r.Workers, r.Seconds, FormatUS(r.DriverCPUUS), FormatUS(r.ServerCPUUS))
	if r.FirstError != "" {
		s += "  first error: " + r.FirstError
	}
	return s
}

// FormatUS formats a latency given in microseconds with a readable unit
// (µs, ms or s).
func FormatUS(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2fs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	default:
		return fmt.Sprintf("%.0fµs", us)
	}
}

// WaitReady repeats single checks (passing no fd) against socket until one
// gets a well-formed reply ("1\n" or "0\n") or ctx is done, pausing 50 ms
// between tries. It returns nil once the service answers, or the last
// failure wrapped with ctx's error.
func WaitReady(ctx context.Context, socket, name string) error {
	if name == "" {
		name = "imap"
	}
	ck := NewChecker(socket, name, 10*time.Second)
	for {
		out, err := ck.Check(-1)
		if out != Failed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", socket, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
