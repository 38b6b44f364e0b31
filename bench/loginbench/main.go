// Command loginbench drives an IMAP login front end (Dovecot's imap-login
// under a lab master, or loginsvc) with the same client for both, and
// prints one JSON line per run:
//
//	loginbench -addr 127.0.0.1:31143 -master PID seq 1000    # connect, greeting, LOGOUT, one at a time
//	loginbench -addr ... -master PID conc 500                # N at once, hold idle, measure, LOGOUT all
//	loginbench -addr ... -master PID -src 8 idle 100000      # conc, plus a NOOP to every held connection
//	loginbench -addr ... -master PID [-backend DPID] [-tls] [-clients 4] login 300   # LOGIN + SELECT INBOX + LOGOUT through to Dovecot's imap
//	loginbench -addr ... -master DPID -target dovecot/hp -also loginsvc/hp,ADDR,LPID,DPID login 200
//	                                                         # any test but sessions and idle: front ends in turns (A B B A ...)
//	loginbench -addr ... -master PID [-backend DPID] -tls sessions 100            # N logged-in sessions held idle, PSS
//	loginbench report results.jsonl                          # side-by-side table with ratios
//	loginbench bursts bursts.jsonl                           # bench/burst.sh: conc distributions, paired ratios
//
// idle is conc for very many connections: it spreads the source
// addresses (-src, about 28,000 ports each), measures the PSS of the
// supervisor too (sum_pss_kb_all, pss_per_conn_all_bytes), then sends a
// NOOP to every held connection and counts the answers (alive) before
// it closes them all.
//
// -master is the supervisor's pid: its children named *-login are the
// login processes counted and measured (RSS, PSS from smaps_rollup).
// -src N spreads client source addresses over 127.0.0.1..N (needed above
// ~28,000 concurrent connections to one port).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type result struct {
	Target  string  `json:"target"`
	Test    string  `json:"test"`
	N       int     `json:"n"`
	Errors  int     `json:"errors"`
	WallS   float64 `json:"wall_s"`
	PerSec  float64 `json:"conn_per_s,omitempty"`
	Workers int     `json:"workers,omitempty"`
	// seq-raw, par-raw: CPU time per connection of the service (-master
	// and its children) and of this driver, in microseconds; conc: the
	// same from the first connect until all are greeted.
	SvcCPUus    float64 `json:"svc_cpu_us_per_conn,omitempty"`
	DrvCPUus    float64 `json:"drv_cpu_us_per_conn,omitempty"`
	GreetMedMs  float64 `json:"greet_median_ms"`
	GreetP99Ms  float64 `json:"greet_p99_ms"`
	CloseMedMs  float64 `json:"closed_median_ms,omitempty"`
	AllGreetedS float64 `json:"all_greeted_s,omitempty"`
	Bursts      int     `json:"bursts,omitempty"` // conc -bursts: how many (AllGreetedS, greetings and CPU: their medians)
	Procs       int     `json:"login_procs,omitempty"`
	IdleProcs   int     `json:"idle_login_procs_before"`
	RSSkB       int     `json:"sum_rss_kb,omitempty"`
	PSSkB       int     `json:"sum_pss_kb,omitempty"`
	PSSIdlekB   int     `json:"sum_pss_kb_before,omitempty"`
	PSSPerConnB int     `json:"pss_per_conn_bytes,omitempty"`
	// idle only: the supervisor (-master) included, and the NOOP check.
	PSSAllkB       int     `json:"sum_pss_kb_all,omitempty"`
	PSSAllIdlekB   int     `json:"sum_pss_kb_all_before,omitempty"`
	PSSPerConnAllB int     `json:"pss_per_conn_all_bytes,omitempty"`
	Alive          int     `json:"alive,omitempty"`
	AliveCheckS    float64 `json:"alive_check_s,omitempty"`
	// login*: time of a whole session (connect to the server's close).
	SessMedMs float64 `json:"session_median_ms,omitempty"`
	SessP99Ms float64 `json:"session_p99_ms,omitempty"`
	// sessions*: Dovecot's imap processes, measured apart from the
	// login processes (the same for both front ends).
	IMAPProcs       int `json:"imap_procs,omitempty"`
	IMAPPSSkB       int `json:"imap_sum_pss_kb,omitempty"`
	IMAPPSSPerSessB int `json:"imap_pss_per_session_bytes,omitempty"`
	// sessions*: the login processes relaying a session and what their
	// PSS grew by (pss_per_conn_bytes is this / the sessions).
	RelayProcs int `json:"relay_login_procs,omitempty"`
	RelayPSSkB int `json:"relay_pss_grown_kb,omitempty"`
}

var (
	addr    = flag.String("addr", "127.0.0.1:31143", "IMAP `ADDR` to connect to")
	master  = flag.Int("master", 0, "supervisor `PID` whose *-login children are measured")
	target  = flag.String("target", "", "label for the output")
	srcN    = flag.Int("src", 1, "spread source addresses over 127.0.0.1..127.0.0.`N`")
	clients = flag.Int("clients", 1, "seq-raw: `C` clients at once, each connecting one at a time (par-raw)")
	hold    = flag.Duration("hold", 2*time.Second, "conc: how long to hold the idle connections before measuring")
	burstsN = flag.Int("bursts", 1, "conc: `K` bursts, one after the other (the report's figures: medians over them; PSS: the first's)")
)

func main() {
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: loginbench [flags] seq|seq-raw|conc|idle|login|sessions N | report FILE | bursts FILE")
		os.Exit(2)
	}
	if flag.Arg(0) == "report" || flag.Arg(0) == "bursts" {
		f, err := os.Open(flag.Arg(1))
		if err == nil {
			if flag.Arg(0) == "report" {
				err = report(f, os.Stdout)
			} else {
				err = bursts(f, os.Stdout)
			}
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loginbench:", err)
			os.Exit(1)
		}
		return
	}
	n, _ := strconv.Atoi(flag.Arg(1))
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if lim.Cur < uint64(n)+100 {
		lim.Cur = uint64(n) + 1000
		if lim.Max < lim.Cur {
			lim.Max = lim.Cur
		}
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	var r result
	switch test := flag.Arg(0); test {
	case "seq", "seq-raw", "login", "conc":
		fes, labels := append([]frontEnd{flagFrontEnd()}, also.fes...), append([]string{*target}, also.labels...)
		var rs []result
		switch test {
		case "seq":
			rs = inTurns(fes, n, seqTurn, "seq")
		case "seq-raw":
			rs = inTurns(fes, n, rawTurn, "seq-raw")
		case "login":
			rs = inTurns(fes, n, loginTurn, "login")
		case "conc":
			rs = conc(fes, n)
		}
		for i, r := range rs {
			r.Target = labels[i]
			json.NewEncoder(os.Stdout).Encode(r)
		}
		return
	case "sessions":
		r = sessionsTest(n)
	case "idle":
		if *workerIdx >= 0 {
			idleWorker(n)
			return
		}
		r = idle(n)
	default:
		fmt.Fprintln(os.Stderr, "unknown test", flag.Arg(0))
		os.Exit(2)
	}
	r.Target = *target
	json.NewEncoder(os.Stdout).Encode(r)
}

func dial(i int) (net.Conn, error) { return dialTo(*addr, i) }

// dialTo connects to a as client i (its source address by -src).
func dialTo(a string, i int) (net.Conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	switch {
	case *workerIdx >= 0: // idle worker W: 127.0.W+1.1..src
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, byte(*workerIdx+1), byte(1+i%max(*srcN, 1)%250))}
	case *srcN > 1:
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, byte((i%*srcN)/250), byte(1+(i%*srcN)%250))}
	}
	return d.Dial("tcp", a)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// seqTurn connects, reads the greeting, sends LOGOUT and waits for the
// server's close, n times on fe, one at a time, with Go's net package
// (client numbers from offset).
func seqTurn(fe frontEnd, n, offset int, t *tally) {
	buf := make([]byte, 4096)
	t.timed(fe, func() {
		for i := 0; i < n; i++ {
			t0 := time.Now()
			c, err := dialTo(fe.addr, offset+i)
			if t.fail(err) {
				continue
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			k, err := c.Read(buf)
			if err == nil && (k < 4 || string(buf[:4]) != "* OK") {
				err = fmt.Errorf("greeting %q", buf[:k])
			}
			if t.fail(err) {
				c.Close()
				continue
			}
			t.greet = append(t.greet, time.Since(t0))
			c.Write([]byte("a LOGOUT\r\n"))
			for {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			t.closed = append(t.closed, time.Since(t0))
			c.Close()
		}
	})
}

// conc is -bursts bursts of n connections at once, each greeted, held
// and closed: the first one's figures, but the time until all are
// greeted, the greeting times and the CPU per connection are the
// median over the bursts (a burst of 500 lasts 0.04-0.08 s in
// high-performance mode here: one is noise). The PSS per connection is
// the first burst's alone (later ones find the memory already there);
// later bursts hold their connections only briefly.
//
// With -also, the front ends burst in turns: each its first (held)
// burst, then the others in the order of turns (A B B A ...).
func conc(fes []frontEnd, n int) []result {
	bursts := make([][]result, len(fes))
	for i, fe := range fes {
		bursts[i] = append(bursts[i], concBurst(fe, n, *hold))
	}
	for _, t := range turns(*burstsN-1, *burstsN-1, len(fes)) {
		if t.n > 0 {
			fe := fes[t.fe]
			settleProcs(fe.master, bursts[t.fe][0].IdleProcs)
			bursts[t.fe] = append(bursts[t.fe], concBurst(fe, n, 0))
		}
	}
	rs := make([]result, len(fes))
	for i, b := range bursts {
		r := b[0]
		m := medianResult(b)
		r.AllGreetedS, r.GreetMedMs, r.GreetP99Ms = m.AllGreetedS, m.GreetMedMs, m.GreetP99Ms
		r.SvcCPUus, r.DrvCPUus = m.SvcCPUus, m.DrvCPUus
		for _, o := range b[1:] {
			r.Errors += o.Errors
		}
		r.Bursts = len(b)
		rs[i] = r
	}
	return rs
}

// settleProcs waits up to 10 s until master is back to idle login
// processes (those of high-security mode exit with their client).
func settleProcs(master, idle int) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if procs, _, _ := measureOf(master); procs <= idle {
			return
		}
	}
}

// concBurst is one burst of conc on fe; its connections are held for
// hold before the processes are measured and the connections closed.
func concBurst(fe frontEnd, n int, hold time.Duration) result {
	r := result{Test: "conc", N: n}
	time.Sleep(500 * time.Millisecond)
	r.IdleProcs, _, r.PSSIdlekB = measureOf(fe.master)
	conns := make([]net.Conn, n)
	greet := make([]time.Duration, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var last time.Time
	sem := make(chan struct{}, 512)
	svc0 := fe.cpu()
	drv0 := selfCPU() // after the scan of /proc
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			c, err := dialTo(fe.addr, i)
			if err != nil {
				mu.Lock()
				r.Errors++
				mu.Unlock()
				return
			}
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReaderSize(c, 256)
			line, err := br.ReadString('\n')
			mu.Lock()
			defer mu.Unlock()
			if err != nil || !strings.HasPrefix(line, "* OK") {
				r.Errors++
				c.Close()
				return
			}
			greet[i] = time.Since(t0)
			if now := time.Now(); now.After(last) {
				last = now
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	r.AllGreetedS = last.Sub(start).Seconds()
	// CPU of the greetings: the service's until all are greeted (ticks
	// of 10 ms: sum several bursts), and the driver's.
	if n > 0 {
		drv := selfCPU() - drv0 // before the scan of /proc
		r.SvcCPUus = float64((fe.cpu() - svc0).Microseconds()) / float64(n)
		r.DrvCPUus = float64(drv.Microseconds()) / float64(n)
	}
	var gs []time.Duration
	for _, g := range greet {
		if g > 0 {
			gs = append(gs, g)
		}
	}
	r.GreetMedMs, r.GreetP99Ms = ms(pct(gs, 0.5)), ms(pct(gs, 0.99))
	time.Sleep(hold)
	r.Procs, r.RSSkB, r.PSSkB = measureOf(fe.master)
	if len(gs) > 0 {
		r.PSSPerConnB = (r.PSSkB - r.PSSIdlekB) * 1024 / len(gs)
	}
	t0 := time.Now()
	for _, c := range conns {
		if c != nil {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("z LOGOUT\r\n"))
			c.Close()
		}
	}
	r.WallS = time.Since(t0).Seconds() + r.AllGreetedS
	return r
}

// alive sends a NOOP to every connection (in parallel, bounded) and
// counts the ones that answer "n OK".
func alive(conns []net.Conn) int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := 0
	sem := make(chan struct{}, 512)
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(c net.Conn) {
			defer wg.Done()
			defer func() { <-sem }()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write([]byte("n NOOP\r\n")); err != nil {
				return
			}
			line, err := bufio.NewReaderSize(c, 256).ReadString('\n')
			if err == nil && strings.HasPrefix(line, "n OK") {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	return n
}

// masterPSS is the PSS of -master itself in kB.
func masterPSS() int {
	if *master == 0 {
		return 0
	}
	return field(fmt.Sprintf("/proc/%d/smaps_rollup", *master), "Pss:")
}

// measure returns the number of *-login children of -master and their
// summed RSS and PSS in kB.
func measure() (procs, rss, pss int) { return measureOf(*master) }

// measureOf is measure for the login processes of master.
func measureOf(master int) (procs, rss, pss int) {
	if master == 0 {
		return
	}
	eachProc(func(dir string, pid int, f []string) {
		if f[1] != strconv.Itoa(master) {
			return
		}
		if !isLogin(dir) {
			return
		}
		procs++
		rss += field(filepath.Join(dir, "status"), "VmRSS:")
		pss += field(filepath.Join(dir, "smaps_rollup"), "Pss:")
	})
	return
}

// eachProc calls fn for every process in /proc with its directory, its
// pid and the fields of its stat file after the command name (f[0] is
// the state, f[1] the parent pid; at least 15 fields).
func eachProc(fn func(dir string, pid int, f []string)) {
	ents, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, e := range ents {
		b, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 > len(s) {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) < 15 {
			continue
		}
		dir := filepath.Dir(e)
		pid, _ := strconv.Atoi(filepath.Base(dir))
		fn(dir, pid, f)
	}
}

func field(path, key string) int {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
			v, _ := strconv.Atoi(strings.Fields(l[len(key):])[0])
			return v
		}
	}
	return 0
}

// serviceCPU is the CPU time (user + system) used so far by -master and
// every process it has started: its own, its live children's, and its
// reaped children's (cutime, cstime). Resolution: one clock tick (10 ms).
func serviceCPU() time.Duration { return serviceCPUOf(*master) }

// serviceCPUOf is serviceCPU for the process tree of pid.
func serviceCPUOf(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	const tick = 10 * time.Millisecond // USER_HZ = 100
	var ticks int
	eachProc(func(_ string, p int, f []string) {
		n := func(k int) int { v, _ := strconv.Atoi(f[k]); return v }
		switch {
		case p == pid:
			ticks += n(11) + n(12) + n(13) + n(14)
		case f[1] == strconv.Itoa(pid):
			ticks += n(11) + n(12)
		}
	})
	return time.Duration(ticks) * tick
}

// selfCPU is this process's CPU time (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
