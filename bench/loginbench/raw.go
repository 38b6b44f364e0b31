package main

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// rawConn is one blocking TCP connection made with plain system calls on
// the calling (locked) thread, bypassing the Go netpoller: a driver whose
// own cost per round trip is a few system calls, so that fast servers are
// not measured against the driver's scheduler latency.
type rawConn struct{ fd int }

// rawDial connects to addr (IPv4 only) with a blocking socket.
func rawDial(addr string) (rawConn, error) {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return rawConn{-1}, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return rawConn{-1}, err
	}
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	// A receive timeout, so that a stuck server counts as an error
	// instead of hanging the run.
	tv := syscall.NsecToTimeval(int64(10 * time.Second))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return rawConn{-1}, err
	}
	return rawConn{fd}, nil
}

func (c rawConn) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(c.fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, errors.New("EOF")
		}
		return n, nil
	}
}

func (c rawConn) Write(b []byte) (int, error) { return syscall.Write(c.fd, b) }
func (c rawConn) Close() error                { return syscall.Close(c.fd) }

// seqRaw is seq with rawConn: connect, greeting, LOGOUT, wait for the
// server's close, n times, one at a time, on one locked OS thread.
func seqRaw(n int) result {
	r := result{Test: "seq-raw", N: n}
	r.IdleProcs, _, r.PSSIdlekB = measure()
	w := max(*clients, 1)
	if w > 1 {
		r.Test = "par-raw"
		r.Workers = w
	}
	type part struct {
		greet, closed []time.Duration
		errors        int
	}
	parts := make([]part, w)
	var wg sync.WaitGroup
	svc0, drv0 := serviceCPU(), selfCPU()
	start := time.Now()
	for k := range parts {
		wg.Add(1)
		go func(p *part, n int) {
			defer wg.Done()
			p.greet, p.closed, p.errors = seqRawLoop(n)
		}(&parts[k], n/w+btoi(k < n%w))
	}
	wg.Wait()
	wall := time.Since(start)
	svc, drv := serviceCPU()-svc0, selfCPU()-drv0
	r.SvcCPUus = float64(svc.Microseconds()) / float64(n)
	r.DrvCPUus = float64(drv.Microseconds()) / float64(n)
	var greet, closed []time.Duration
	for _, p := range parts {
		greet, closed = append(greet, p.greet...), append(closed, p.closed...)
		r.Errors += p.errors
	}
	r.WallS = wall.Seconds()
	r.PerSec = float64(n) / wall.Seconds()
	r.GreetMedMs, r.GreetP99Ms, r.CloseMedMs = ms(pct(greet, 0.5)), ms(pct(greet, 0.99)), ms(pct(closed, 0.5))
	return r
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// seqRawLoop runs n rounds on one locked OS thread.
func seqRawLoop(n int) (greet, closed []time.Duration, errs int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 4096)
	logout := []byte("a LOGOUT\r\n")
	for i := 0; i < n; i++ {
		t0 := time.Now()
		c, err := rawDial(*addr)
		if err != nil {
			errs++
			continue
		}
		k, err := c.Read(buf)
		if err != nil || k < 4 || string(buf[:4]) != "* OK" {
			errs++
			c.Close()
			continue
		}
		greet = append(greet, time.Since(t0))
		c.Write(logout)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		closed = append(closed, time.Since(t0))
		c.Close()
	}
	return greet, closed, errs
}
