package main

import (
	"errors"
	"net"
	"runtime"
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

// rawTurn is seq with rawConn: connect, greeting, LOGOUT, wait for the
// server's close, n times on fe, -clients at once, each one at a time on
// a locked OS thread of its own.
func rawTurn(fe frontEnd, n, _ int, t *tally) {
	t.parallel(fe, n, func(_, _, n int, p *tally) {
		p.greet, p.closed, p.errs = seqRawLoop(fe.addr, n)
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// seqRawLoop runs n rounds on addr on one locked OS thread.
func seqRawLoop(addr string, n int) (greet, closed []time.Duration, errs int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 4096)
	logout := []byte("a LOGOUT\r\n")
	for i := 0; i < n; i++ {
		t0 := time.Now()
		c, err := rawDial(addr)
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
