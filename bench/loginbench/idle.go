package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	nWorkers  = flag.Int("workers", 0, "idle: driver `PROCESSES` (0: one per 15,000 connections; a process can hold only RLIMIT_NOFILE connections)")
	workerIdx = flag.Int("worker", -1, "internal: run as idle worker number `W` (source addresses 127.0.W+1.1..-src)")
)

// workerReport is what an idle worker prints once all its connections
// are greeted, and again (Alive) after the NOOP check.
type workerReport struct {
	Greeted     int       `json:"greeted"`
	Errors      int       `json:"errors"`
	AllGreetedS float64   `json:"all_greeted_s"`
	GreetMs     []float64 `json:"greet_ms,omitempty"` // sorted sample (every 100th)
	Alive       int       `json:"alive"`
	FirstErr    string    `json:"first_error,omitempty"`
}

// idle opens n connections through worker processes, holds them, measures
// the PSS of the login processes and of all loginsvc processes, checks
// that every connection still answers a NOOP, and closes them all (the
// workers exit; if this process dies, their stdin closes and they exit
// too).
func idle(n int) result {
	r := result{Test: "idle", N: n}
	time.Sleep(500 * time.Millisecond)
	r.IdleProcs, _, r.PSSIdlekB = measure()
	r.PSSAllIdlekB = r.PSSIdlekB + masterPSS()
	k := *nWorkers
	if k <= 0 {
		k = (n + 14999) / 15000
	}
	type worker struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *json.Decoder
		rep workerReport
	}
	ws := make([]*worker, k)
	start := time.Now()
	for w := range ws {
		share := n / k
		if w < n%k {
			share++
		}
		cmd := exec.Command(os.Args[0], "-addr", *addr, "-src", strconv.Itoa(*srcN), "-worker", strconv.Itoa(w), "idle", strconv.Itoa(share))
		cmd.Stderr = os.Stderr
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		ws[w] = &worker{cmd: cmd, in: in, out: json.NewDecoder(out)}
	}
	defer func() {
		for _, w := range ws {
			w.in.Close()
			w.cmd.Wait()
		}
	}()
	var gs []float64
	for _, w := range ws {
		if err := w.out.Decode(&w.rep); err != nil {
			fmt.Fprintln(os.Stderr, "worker report:", err)
			os.Exit(1)
		}
		r.Errors += w.rep.Errors
		if w.rep.FirstErr != "" {
			fmt.Fprintln(os.Stderr, "worker error:", w.rep.FirstErr)
		}
		gs = append(gs, w.rep.GreetMs...)
	}
	r.AllGreetedS = time.Since(start).Seconds()
	sort.Float64s(gs)
	if len(gs) > 0 {
		r.GreetMedMs, r.GreetP99Ms = gs[len(gs)/2], gs[min(len(gs)-1, len(gs)*99/100)]
	}
	greeted := 0
	for _, w := range ws {
		greeted += w.rep.Greeted
	}
	time.Sleep(*hold)
	r.Procs, r.RSSkB, r.PSSkB = measure()
	r.PSSAllkB = r.PSSkB + masterPSS()
	if greeted > 0 {
		r.PSSPerConnB = (r.PSSkB - r.PSSIdlekB) * 1024 / greeted
		r.PSSPerConnAllB = (r.PSSAllkB - r.PSSAllIdlekB) * 1024 / greeted
	}
	t0 := time.Now()
	for _, w := range ws {
		fmt.Fprintln(w.in, "alive")
	}
	for _, w := range ws {
		var rep workerReport
		if err := w.out.Decode(&rep); err == nil {
			r.Alive += rep.Alive
		}
	}
	r.AliveCheckS = time.Since(t0).Seconds()
	r.WallS = time.Since(start).Seconds()
	return r
}

// idleWorker is one idle worker: it opens n connections, reports, then
// on "alive" from stdin NOOPs them all and reports again; at EOF or any
// other line it closes them and returns.
func idleWorker(n int) {
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	conns := make([]net.Conn, n)
	greet := make([]time.Duration, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var rep workerReport
	start := time.Now()
	sem := make(chan struct{}, 256)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			c, err := dial(i)
			if err == nil {
				c.SetReadDeadline(time.Now().Add(60 * time.Second))
				var line string
				line, err = bufio.NewReaderSize(c, 256).ReadString('\n')
				if err == nil && !strings.HasPrefix(line, "* OK") {
					err = fmt.Errorf("greeting %q", line)
				}
				if err != nil {
					c.Close()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Errors++
				if rep.FirstErr == "" {
					rep.FirstErr = err.Error()
				}
				return
			}
			c.SetReadDeadline(time.Time{})
			greet[i] = time.Since(t0)
			conns[i] = c
			rep.Greeted++
		}(i)
	}
	wg.Wait()
	rep.AllGreetedS = time.Since(start).Seconds()
	var gs []time.Duration
	for _, g := range greet {
		if g > 0 {
			gs = append(gs, g)
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i] < gs[j] })
	for i := 0; i < len(gs); i += 100 {
		rep.GreetMs = append(rep.GreetMs, ms(gs[i]))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.Encode(rep)
	sc := bufio.NewScanner(os.Stdin)
	if sc.Scan() && sc.Text() == "alive" {
		enc.Encode(workerReport{Alive: alive(conns)})
		sc.Scan()
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
