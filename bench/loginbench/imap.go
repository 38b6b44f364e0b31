package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The login tests go through to Dovecot's post-login imap: the front end
// (Dovecot's imap-login or loginsvc) asks Dovecot's auth and hands the
// client to Dovecot's imap, which answers SELECT and LOGOUT.
var (
	user    = flag.String("user", "bench", "login: IMAP user name")
	pass    = flag.String("pass", "benchpass", "login: IMAP password")
	useTLS  = flag.Bool("tls", false, "login, sessions: implicit TLS (AUTHENTICATE PLAIN with SASL-IR instead of LOGIN)")
	backend = flag.Int("backend", 0, "login, sessions: `PID` of the Dovecot master behind -master (its CPU is counted, its imap children measured); 0: -master itself")
)

// backendPID is the Dovecot master whose imap children serve the
// sessions: -backend, or -master when Dovecot's own imap-login is measured.
func backendPID() int {
	if *backend != 0 {
		return *backend
	}
	return *master
}

// imapSession is one client connection speaking IMAP line by line.
type imapSession struct {
	c net.Conn
	r *bufio.Reader
}

// dialIMAP connects (implicit TLS with -tls, full handshake every time),
// reads the greeting and logs in: LOGIN in plaintext, AUTHENTICATE PLAIN
// with an initial response over TLS.
func dialIMAP(a string, i int, cfg *tls.Config) (*imapSession, error) {
	c, err := dialTo(a, i)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		tc := tls.Client(c, cfg)
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s := &imapSession{c: c, r: bufio.NewReaderSize(c, 4096)}
	g, err := s.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(g, "* OK") {
		c.Close()
		return nil, fmt.Errorf("greeting %q: %v", g, err)
	}
	login := "a LOGIN " + *user + " \"" + *pass + "\""
	if cfg != nil {
		login = "a AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+*user+"\x00"+*pass))
	}
	if err := s.cmd(login, "Logged in"); err != nil {
		c.Close()
		return nil, err
	}
	if err := s.cmd("b SELECT INBOX", ""); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// cmd sends one tagged command and reads up to its tagged reply, which
// must be OK (and contain want if set).
func (s *imapSession) cmd(line, want string) error {
	tag, _, _ := strings.Cut(line, " ")
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		return err
	}
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("%s: %v", tag, err)
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") || !strings.Contains(l, want) {
				return fmt.Errorf("%s: %q", tag, strings.TrimSpace(l))
			}
			return nil
		}
	}
}

// logout sends LOGOUT, waits for its OK and for the server's close.
func (s *imapSession) logout() error {
	err := s.cmd("z LOGOUT", "")
	if err == nil {
		buf := make([]byte, 512)
		for {
			if _, e := s.r.Read(buf); e != nil {
				break
			}
		}
	}
	s.c.Close()
	return err
}

func clientTLS() *tls.Config {
	if !*useTLS {
		return nil
	}
	// The lab's self-signed certificate; no session cache: a full
	// handshake on every connection, for both front ends.
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
}

// loginTurn is LOGIN (or AUTHENTICATE PLAIN over TLS) + SELECT INBOX +
// LOGOUT through to Dovecot's imap, n times on fe, -clients at once
// (each one at a time), client numbers from offset: each login's whole
// session (connect to the server's close) goes to t.sess.
func loginTurn(fe frontEnd, n, offset int, t *tally) {
	cfg := clientTLS()
	t.parallel(fe, n, func(k, w, n int, p *tally) {
		for i := 0; i < n; i++ {
			t0 := time.Now()
			s, err := dialIMAP(fe.addr, offset+k+i*w, cfg)
			if err == nil {
				err = s.logout()
			}
			if p.fail(err) {
				continue
			}
			p.sess = append(p.sess, time.Since(t0))
		}
	})
}

// sessionsTest opens n logged-in sessions (LOGIN or AUTHENTICATE, then
// SELECT INBOX; at most 8 being set up at a time), holds them idle and
// measures the PSS of the login processes that relay them (-master's
// *-login children holding an established connection to -addr's port:
// with TLS the login process stays for the whole session) and,
// separately, of Dovecot's imap processes (-backend's, or -master's,
// children named imap). Per session: what those processes grew by
// (a process started for the session grew from 0) / n; idle login
// processes started ahead or left over are not counted, for either
// front end. Then it logs every session out.
func sessionsTest(n int) result {
	r := result{Test: "sessions"}
	if *useTLS {
		r.Test += "-tls"
	}
	r.N = n
	settle()
	r.IdleProcs, _, r.PSSIdlekB = measure()
	before := loginPSS()
	_, _, imapBefore := measureIMAP()
	cfg := clientTLS()
	sess := make([]*imapSession, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var first error
	sem := make(chan struct{}, 8)
	start := time.Now()
	for i := range sess {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := dialIMAP(*addr, i, cfg)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Errors++
				if first == nil {
					first = err
				}
				return
			}
			s.c.SetDeadline(time.Time{})
			sess[i] = s
		}(i)
	}
	wg.Wait()
	if first != nil {
		fmt.Fprintln(os.Stderr, "loginbench: first error:", first)
	}
	r.AllGreetedS = time.Since(start).Seconds()
	ok := n - r.Errors
	time.Sleep(*hold)
	settle()
	r.Procs, r.RSSkB, r.PSSkB = measure()
	r.IMAPProcs, _, r.IMAPPSSkB = measureIMAP()
	relaying := relayingPIDs()
	grown := 0
	for pid, pss := range loginPSS() {
		if relaying[pid] {
			r.RelayProcs++
			grown += pss - before[pid]
		}
	}
	r.RelayPSSkB = grown
	if ok > 0 {
		r.PSSPerConnB = grown * 1024 / ok
		r.IMAPPSSPerSessB = (r.IMAPPSSkB - imapBefore) * 1024 / ok
	}
	t0 := time.Now()
	for _, s := range sess {
		if s != nil {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.c.SetDeadline(time.Now().Add(30 * time.Second))
				s.logout()
			}()
		}
	}
	wg.Wait()
	r.WallS = time.Since(t0).Seconds() + r.AllGreetedS
	return r
}

// measureIMAP returns the number of Dovecot's imap processes (children
// of backendPID whose command is imap) and their summed RSS and PSS in kB.
func measureIMAP() (procs, rss, pss int) {
	bp := backendPID()
	if bp == 0 {
		return
	}
	eachProc(func(dir string, pid int, f []string) {
		if f[1] != strconv.Itoa(bp) {
			return
		}
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		if strings.TrimSpace(string(comm)) != "imap" {
			return
		}
		procs++
		rss += field(filepath.Join(dir, "status"), "VmRSS:")
		pss += field(filepath.Join(dir, "smaps_rollup"), "Pss:")
	})
	return
}

// settle waits (up to 10 s) until the number of login processes has
// stayed the same for 1 s: processes of an earlier test exiting, or
// started ahead of clients, are not measured mid-way.
func settle() {
	last, same := -1, 0
	for i := 0; i < 100 && same < 10; i++ {
		n, _, _ := measure()
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loginPSS maps each login process (-master's *-login children) to its
// PSS in kB.
func loginPSS() map[int]int {
	m := map[int]int{}
	eachProc(func(dir string, pid int, f []string) {
		if f[1] != strconv.Itoa(*master) || !isLogin(dir) {
			return
		}
		m[pid] = field(filepath.Join(dir, "smaps_rollup"), "Pss:")
	})
	return m
}

// isLogin reports whether the process in dir is a login process: argv[0]
// (Dovecot's binary is imap-login; loginsvc sets argv[0]) names one.
func isLogin(dir string) bool {
	cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	argv0, _, _ := strings.Cut(string(cmd), "\x00")
	// Dovecot's titles are INSTANCE/NAME ("dovecot-loginbench/imap"):
	// only the name after the instance counts.
	return strings.Contains(argv0[strings.LastIndex(argv0, "/")+1:], "-login")
}

// relayingPIDs is the set of -master's login processes that hold an
// established TCP connection whose local port is -addr's: the ones
// serving (relaying) a client.
func relayingPIDs() map[int]bool {
	_, ps, _ := net.SplitHostPort(*addr)
	port, _ := strconv.Atoi(ps)
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n")[1:] {
			x := strings.Fields(l)
			if len(x) < 10 || x[3] != "01" { // ESTABLISHED
				continue
			}
			_, lp, _ := strings.Cut(x[1], ":")
			if p, err := strconv.ParseUint(lp, 16, 16); err == nil && int(p) == port {
				inodes["socket:["+x[9]+"]"] = true
			}
		}
	}
	pids := map[int]bool{}
	eachProc(func(dir string, pid int, f []string) {
		if f[1] != strconv.Itoa(*master) || !isLogin(dir) {
			return
		}
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && inodes[l] {
				pids[pid] = true
				return
			}
		}
	})
	return pids
}
