// Command floorgreeter is the floor of bench/login.sh: the least a server
// can do for the benchmark's client and still be an IMAP greeter. It
// listens on -addr and runs -threads OS threads that each, with blocking
// system calls and nothing else, loop: accept, write a greeting the size
// of Dovecot's, read one command, write the two LOGOUT reply lines,
// close. No event loop, no processes, no access checks, no pre-login
// state, no limits: a figure for what the kernel's loopback TCP costs on
// this machine, to set the two login front ends' figures against (like
// bench/cmd/nullresponder for bench/access.sh). Not a server to run.
//
// -netpoll N is the floor of an event-loop server instead: N processes
// (GOMAXPROCS=1 each, as loginsvc's high-performance login processes run)
// share the listening socket, as process_min_avail = N login processes
// do, and serve each client in a goroutine through Go's net package
// (epoll): what the same exchange costs once readiness goes through an
// event loop, with nothing else in it.
//
//	floorgreeter -addr 127.0.0.1:31143 -threads 2
//	floorgreeter -addr 127.0.0.1:31143 -netpoll 2
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

const (
	greeting = "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.\r\n"
	bye      = "* BYE Logging out\r\na OK Logout completed (0.001 + 0.000 secs).\r\n"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:31143", "listen on `ADDR` (IPv4)")
	threads := flag.Int("threads", 2, "`N` threads blocking in accept")
	netpoll := flag.Int("netpoll", 0, "`N` processes serving through Go's netpoller instead (0: -threads)")
	child := flag.Bool("netpoll-child", false, "internal: a -netpoll process; the listener is descriptor 3")
	flag.Parse()
	if *child {
		serveNetpoll(os.NewFile(3, "listener"))
		return
	}
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "floorgreeter: -addr must be IPv4 ADDR:PORT")
		os.Exit(2)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err == nil {
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		err = syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	}
	if err == nil {
		err = syscall.Listen(fd, 4096)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floorgreeter:", err)
		os.Exit(1)
	}
	if *netpoll > 0 {
		startNetpoll(fd, *netpoll)
		return
	}
	for i := 1; i < *threads; i++ {
		go serve(fd)
	}
	serve(fd)
}

// startNetpoll runs n -netpoll processes on listener fd and waits for
// them (a signal to this process ends them: they are its children, in
// its process group, and die with it on SIGTERM through Pdeathsig).
func startNetpoll(fd, n int) {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "floorgreeter:", err)
		os.Exit(1)
	}
	l := os.NewFile(uintptr(fd), "listener")
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command(self, "-netpoll-child")
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		cmd.ExtraFiles = []*os.File{l}
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "floorgreeter:", err)
			os.Exit(1)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		c.Wait()
	}
}

// serveNetpoll serves the clients of listener f, one goroutine each,
// through Go's net package.
func serveNetpoll(f *os.File) {
	ln, err := net.FileListener(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floorgreeter:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 1026)
			if _, err := c.Write([]byte(greeting)); err == nil {
				if n, err := c.Read(buf); err == nil && n > 0 {
					c.Write([]byte(bye))
				}
			}
		}()
	}
}

// serve answers clients one at a time on a locked thread.
func serve(lfd int) {
	runtime.LockOSThread()
	g, b := []byte(greeting), []byte(bye)
	buf := make([]byte, 1026)
	for {
		c, _, err := syscall.Accept4(lfd, syscall.SOCK_CLOEXEC)
		if err != nil {
			continue
		}
		if _, err := syscall.Write(c, g); err == nil {
			if n, err := syscall.Read(c, buf); err == nil && n > 0 {
				syscall.Write(c, b)
			}
		}
		syscall.Close(c)
	}
}
