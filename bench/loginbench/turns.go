package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// More front ends: seq, seq-raw, login and conc then measure all in
// turns (inTurns, conc), one result each, so that a load that comes and
// goes on a shared machine weighs on all alike.
var (
	also  frontEnds
	turnN = flag.Int("turns", 4, "with -also: `K` turns per front end (A B, then B A, ...)")
)

func init() {
	flag.Var(&also, "also", "seq, seq-raw, login, conc: another front end, `LABEL,ADDR,MASTER[,BACKEND]`, measured in turns with the first (repeatable)")
}

// frontEnds is the -also flag: labelled front ends.
type frontEnds struct {
	labels []string
	fes    []frontEnd
}

// String lists the labels (flag.Value).
func (f *frontEnds) String() string { return strings.Join(f.labels, " ") }

// Set adds the front end LABEL,ADDR,MASTER[,BACKEND] (flag.Value); an
// error names a value of another shape or a PID that is not a number.
func (f *frontEnds) Set(v string) error {
	p := strings.Split(v, ",")
	if len(p) < 3 || len(p) > 4 {
		return fmt.Errorf("want LABEL,ADDR,MASTER[,BACKEND], not %q", v)
	}
	fe := frontEnd{addr: p[1]}
	var err error
	if fe.master, err = strconv.Atoi(p[2]); err == nil && len(p) == 4 {
		fe.backend, err = strconv.Atoi(p[3])
	}
	if err != nil {
		return fmt.Errorf("%q: %v", v, err)
	}
	f.labels, f.fes = append(f.labels, p[0]), append(f.fes, fe)
	return nil
}

// frontEnd is one front end under test: the address its clients
// connect to, its supervisor (-master) and the Dovecot behind it
// (-backend; 0 if none or if the front end is Dovecot's own imap-login).
type frontEnd struct {
	addr            string
	master, backend int
}

// flagFrontEnd is the front end the flags -addr, -master and -backend
// name.
func flagFrontEnd() frontEnd { return frontEnd{*addr, *master, *backend} }

// cpu is the CPU time of the whole service: the front end (master
// tree) and, when it is another process, Dovecot behind it (backend
// tree: auth, imap, and the rest).
func (fe frontEnd) cpu() time.Duration {
	cpu := serviceCPUOf(fe.master)
	if fe.backend != 0 && fe.backend != fe.master {
		cpu += serviceCPUOf(fe.backend)
	}
	return cpu
}

// turn is one slice of a run in turns: n connections on front end fe
// (an index).
type turn struct{ fe, n int }

// turns is the schedule of a run in turns: n connections for each of m
// front ends in k turns each (at least 1), the front ends in order in
// even rounds of turns and in reverse order in odd ones (A B, B A, A B,
// ...); each front end's n split as evenly as can be.
func turns(n, k, m int) []turn {
	k = max(k, 1)
	var ts []turn
	for j := range k {
		for i := range m {
			fe := i
			if j%2 == 1 {
				fe = m - 1 - i
			}
			ts = append(ts, turn{fe: fe, n: n/k + btoi(j < n%k)})
		}
	}
	return ts
}

// inTurns runs test (seqTurn, rawTurn, loginTurn) n times on each of
// fes: on one, in a single turn; on more, in -turns turns each. It returns a
// result per front end, named test (with -clients: "par-raw" for
// seq-raw, "login-par" for login; "-tls" added with -tls for login).
func inTurns(fes []frontEnd, n int, test func(fe frontEnd, n, offset int, t *tally), name string) []result {
	ts := make([]tally, len(fes))
	k := *turnN
	if len(fes) == 1 {
		k = 1
	}
	for _, t := range turns(n, k, len(fes)) {
		test(fes[t.fe], t.n, ts[t.fe].n, &ts[t.fe])
		ts[t.fe].n += t.n
	}
	if name == "login" && *useTLS {
		name += "-tls"
	}
	w := max(*clients, 1)
	if w > 1 {
		name = strings.NewReplacer("seq-raw", "par-raw", "login", "login-par").Replace(name)
	}
	rs := make([]result, len(fes))
	for i := range ts {
		rs[i] = ts[i].result(name, n)
		if w > 1 {
			rs[i].Workers = w
		}
	}
	return rs
}

// tally adds up one front end's connections over its turns.
type tally struct {
	n, errs             int
	first               error           // the first error
	greet, closed, sess []time.Duration // per connection: greeting, close, whole login session
	wall, svc, drv      time.Duration   // elapsed; the service's CPU (frontEnd.cpu); this driver's
}

// fail counts err (nil: no failure) and reports whether there was one.
func (t *tally) fail(err error) bool {
	if err == nil {
		return false
	}
	t.errs++
	if t.first == nil {
		t.first = err
	}
	return true
}

// timed runs fn, adding its elapsed time and the CPU of fe and of this
// driver to t.
func (t *tally) timed(fe frontEnd, fn func()) {
	svc0, drv0 := fe.cpu(), selfCPU()
	start := time.Now()
	fn()
	t.wall += time.Since(start)
	t.svc += fe.cpu() - svc0
	t.drv += selfCPU() - drv0
}

// parallel runs fn for -clients clients at once, timed on fe: client k
// of w makes its share n of the n connections, into a tally of its own,
// which is then added to t.
func (t *tally) parallel(fe frontEnd, n int, fn func(k, w, n int, p *tally)) {
	w := max(*clients, 1)
	parts := make([]tally, w)
	var wg sync.WaitGroup
	t.timed(fe, func() {
		for k := range parts {
			wg.Add(1)
			go func(k int) {
				defer wg.Done()
				fn(k, w, n/w+btoi(k < n%w), &parts[k])
			}(k)
		}
		wg.Wait()
	})
	for _, p := range parts {
		t.greet, t.closed, t.sess = append(t.greet, p.greet...), append(t.closed, p.closed...), append(t.sess, p.sess...)
		t.errs += p.errs
		if t.first == nil {
			t.first = p.first
		}
	}
}

// result is the tally as loginbench's result of test for n
// connections: rates count the connections that succeeded.
func (t *tally) result(test string, n int) result {
	r := result{Test: test, N: n, Errors: t.errs}
	if t.first != nil {
		fmt.Fprintln(os.Stderr, "loginbench: first error:", t.first)
	}
	r.WallS = t.wall.Seconds()
	r.PerSec = float64(n-t.errs) / t.wall.Seconds()
	r.SvcCPUus = float64(t.svc.Microseconds()) / float64(n)
	r.DrvCPUus = float64(t.drv.Microseconds()) / float64(n)
	r.GreetMedMs, r.GreetP99Ms, r.CloseMedMs = ms(pct(t.greet, 0.5)), ms(pct(t.greet, 0.99)), ms(pct(t.closed, 0.5))
	r.SessMedMs, r.SessP99Ms = ms(pct(t.sess, 0.5)), ms(pct(t.sess, 0.99))
	return r
}
