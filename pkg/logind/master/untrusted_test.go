package master

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// The supervisor treats login processes as untrusted: these tests play
// a compromised one (fakeLogin) and check that it is killed for its
// first lie, logged once, that its memory and log volume stay bounded,
// and that honest processes go on serving.

// fakeLogin is the login process of the tests that set LOGINSVC_TEST_FAKE:
// the first process to remove the token file misbehaves as mode says;
// the others (the replacements) are honest login processes.
func fakeLogin(mode, token string) int {
	if token == "" || os.Remove(token) != nil {
		return login.Main(testProtocols...)
	}
	switch mode {
	case "stderr-flood": // an honest process whose stderr floods
		go func() {
			w := bufioWriter(os.Stderr)
			for i := 0; ; i++ {
				fmt.Fprintf(w, "INFO flood line %d\n", i)
			}
		}()
		return login.Main(testProtocols...)
	case "endless-line": // an honest process with one 64 MiB stderr line
		go func() {
			os.Stderr.WriteString("INFO endless ")
			b := bytes.Repeat([]byte("x"), 64<<10)
			for range 1024 {
				os.Stderr.Write(b)
			}
			// The end, then a line the test waits for: no other line may
			// be written meanwhile, or it would end the long one early
			// (a pipe write over PIPE_BUF is not atomic) and be lost in
			// the part dropped.
			os.Stderr.WriteString("\nINFO endless line written\n")
		}()
		return login.Main(testProtocols...)
	}
	f := os.NewFile(3, "login-ctl")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return ipc.ExitFatal
	}
	c := fc.(*net.UnixConn)
	buf, oob := make([]byte, 1<<16), make([]byte, syscall.CmsgSpace(4*4))
	pk, err := ipc.ReadPacket(c, buf, oob)
	if err != nil {
		return ipc.ExitFatal
	}
	if pk.FD >= 0 {
		syscall.Close(pk.FD)
	}
	var in ipc.Settings
	json.Unmarshal(pk.JSON, &in)
	send := func(b []byte, fd int) error { return ipc.SendPacket(c, b, fd) }
	rep := func(typ byte, id uint64, arg uint8) []byte {
		return ipc.AppendReport(nil, typ, id, arg, ipc.Accept{})
	}
	own := in.Seq << 32
	send([]byte{ipc.MsgReady}, -1)
	switch mode {
	case "logs-in-tls", "logs-in-plain":
		return fakeLogsIn(c, buf, oob, mode == "logs-in-tls")
	case "ready-twice":
		send([]byte{ipc.MsgReady}, -1)
	case "foreign-accept":
		send(rep(ipc.MsgAccepted, (in.Seq+1000)<<32|1, uint8(ipc.StateLoggingIn)), -1)
	case "dup-accept":
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
	case "over-limit": // the 2.4 GB flood: fresh ids, in batches, until killed
		for n := uint64(1); ; {
			b := []byte{ipc.MsgBatch}
			for range 200 { // 200 'A' records of 28 bytes fit a packet
				b = append(b, rep(ipc.MsgAccepted, own|n, uint8(ipc.StateLoggingIn))...)
				n++
			}
			if send(b, -1) != nil {
				break
			}
		}
	case "foreign-state":
		send(rep(ipc.MsgState, 1<<40, uint8(ipc.StateLoggingIn)), -1)
	case "backward":
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
		send(rep(ipc.MsgState, own|1, uint8(ipc.StateChecking)), -1)
	case "close-twice":
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
		send(rep(ipc.MsgClosed, own|1, uint8(ipc.CloseNormal)), -1)
		send(rep(ipc.MsgClosed, own|1, uint8(ipc.CloseNormal)), -1)
	case "unknown-type":
		send([]byte{'Z', 1, 2, 3}, -1)
	case "short":
		send([]byte{ipc.MsgAccepted, 1, 2}, -1)
	case "oversize":
		send(append([]byte{ipc.MsgBatch}, make([]byte, 100000)...), -1)
	case "ragged-batch":
		send([]byte{ipc.MsgBatch, ipc.MsgState, 1, 2, 3, 4}, -1) // a 'T' record cut short
	case "descriptor":
		send(rep(ipc.MsgState, own|1, uint8(ipc.StateLoggingIn)), 0)
	case "close-ctl": // stop talking, keep running
		c.Close()
	case "login-stranger":
		send(ipc.AppendLogin(nil, ipc.Login{ID: own | 5, User: "alice", Mech: "PLAIN"}), -1)
	case "login-twice":
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
		send(ipc.AppendLogin(nil, ipc.Login{ID: own | 1, User: "alice", Mech: "PLAIN"}), -1)
		send(ipc.AppendLogin(nil, ipc.Login{ID: own | 1, User: "mallory", Mech: "PLAIN"}), -1)
	case "login-forged-user": // a user that would forge a log line or move the cursor
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
		send(ipc.AppendLogin(nil, ipc.Login{ID: own | 1, User: "alice\x1b[1A\nroot", Mech: "PLAIN"}), -1)
	case "login-cut":
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
		b := ipc.AppendLogin(nil, ipc.Login{ID: own | 1, User: "alice", Mech: "PLAIN"})
		send(b[:len(b)-2], -1)
	case "login-in-batch":
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
		send(append([]byte{ipc.MsgBatch}, ipc.AppendLogin(nil, ipc.Login{ID: own | 1, User: "alice", Mech: "PLAIN"})...), -1)
	case "authfail-skip":
		send(rep(ipc.MsgAccepted, own|1, uint8(ipc.StateLoggingIn)), -1)
		send(rep(ipc.MsgAuthFailed, own|1, 1), -1)
		send(rep(ipc.MsgAuthFailed, own|1, 3), -1)
	}
	// Wait to be killed (the supervisor's messages are read and dropped).
	for {
		pk, err := ipc.ReadPacket(c, buf, oob)
		if pk.FD >= 0 {
			syscall.Close(pk.FD)
		}
		if err != nil || pk.Closed {
			time.Sleep(time.Hour)
		}
	}
}

// bufioWriter is a large buffered writer on w (the flood writes as fast
// as it can).
func bufioWriter(w io.Writer) io.Writer {
	return &flushWriter{w: w, b: make([]byte, 0, 64<<10)}
}

type flushWriter struct {
	w io.Writer
	b []byte
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if len(f.b)+len(p) > cap(f.b) {
		f.w.Write(f.b)
		f.b = f.b[:0]
	}
	f.b = append(f.b, p...)
	return len(p), nil
}

// liarLab starts a lab whose first login process misbehaves as mode says
// (fakeLogin); the processes after it are honest.
func liarLab(t *testing.T, mode, conf string) *lab {
	t.Helper()
	token := filepath.Join(t.TempDir(), "liar-token")
	if err := os.WriteFile(token, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(token), 0o777) // removable by a login process that dropped root
	// No auth: an honest fake's stderr holds only what its test writes.
	return startLabEnv(t, []string{"LOGINSVC_TEST_FAKE=" + mode, "LOGINSVC_TEST_TOKEN=" + token}, "imap-login", "login_socket_path =", conf)
}

// waitLog waits up to d for the supervisor log to contain sub.
func (l *lab) waitLog(sub string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(l.logs.String(), sub) {
			return true
		}
	}
	return false
}

// greeted waits for a ready process, then checks that a client is
// greeted. The liar may still be listed (killed, not yet reaped) and a
// liar that served no client throttles the service: a client dropped
// meanwhile is tried again, until the replacement greets one (at most
// 15 s).
func (l *lab) greeted() {
	l.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		l.waitFor("a ready process", func(s control.ServiceStatus) bool { return readyProcs(s) >= 1 })
		c := l.dial("")
		g := c.line()
		c.c.Close()
		if strings.HasPrefix(g, "* OK") {
			return
		}
		if time.Now().After(deadline) {
			l.t.Errorf("honest client: greeting %q", g)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// heapInUse is the test process's (the in-process supervisor's) heap in
// use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestLyingLoginProcessIsKilled: a login process that breaks the protocol
// (in what it says, or in the packets themselves) is killed at once,
// logged once with what it did, counted, and replaced; honest clients
// are served by its replacement.
func TestLyingLoginProcessIsKilled(t *testing.T) {
	for _, tt := range []struct {
		mode string
		what string
	}{
		{"ready-twice", "reported ready twice"},
		{"foreign-accept", "which is not one of its ids"},
		{"dup-accept", "again or out of order"},
		{"foreign-state", "reported a state for client 0x10000000000, which it does not have"},
		{"backward", "back from logging-in to checking"},
		{"close-twice", "which it does not have (never had, or closed before)"},
		{"unknown-type", `sent a message of unknown type 'Z' (4 bytes)`},
		{"short", `sent a malformed 'A' report (3 bytes)`},
		{"oversize", "sent a packet larger than 8192 bytes"},
		{"ragged-batch", "sent a malformed batch (a 'T' record of 5 bytes)"},
		{"descriptor", "sent a descriptor"},
		{"close-ctl", "closed its control socket but did not exit"},
		{"login-stranger", "reported a login or failed authentication of client 0x100000005, which it does not have"},
		{"login-twice", "reported client 0x100000001 logged in twice"},
		{"login-forged-user", "sent a login report with an invalid user (14 bytes"},
		{"login-cut", "sent a malformed login report (42 bytes, user of 5, mechanism of 5)"},
		{"login-in-batch", "sent a batch with a record of unknown type 'L'"},
		{"authfail-skip", "reported failed authentication 3 of client 0x100000001 after 1"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			l := liarLab(t, tt.mode, "service_count = 0\nclient_limit = 3\nprocess_min_avail = 1")
			if !l.waitLog("broke the protocol", 15*time.Second) {
				t.Fatalf("the liar was not killed")
			}
			st := l.waitFor("the liar gone", func(s control.ServiceStatus) bool { return s.Counters.Violations == 1 && len(s.Procs) <= 1 })
			l.greeted()
			logs := l.logs.String()
			if n := strings.Count(logs, "broke the protocol"); n != 1 {
				t.Errorf("%d lines about the liar, want 1", n)
			}
			if !strings.Contains(logs, tt.what) {
				t.Errorf("the line does not say %q", tt.what)
			}
			if st.Counters.Crashes != 0 {
				t.Errorf("counted as a crash too: %+v", st.Counters)
			}
		})
	}
}

// TestReportFloodKeepsSupervisorMemoryBounded: a login process that
// reports accepting clients without end (fresh ids, 400 to a packet;
// before, this grew the supervisor by about 2.4 GB in 20 s) is killed
// when it claims more than client_limit + 1 clients.
func TestReportFloodKeepsSupervisorMemoryBounded(t *testing.T) {
	before := heapInUse()
	l := liarLab(t, "over-limit", "service_count = 0\nclient_limit = 10\nprocess_min_avail = 1")
	killed := l.waitLog("broke the protocol", 10*time.Second)
	grown := int64(heapInUse()) - int64(before)
	t.Logf("supervisor heap grew by %.1f MB", float64(grown)/(1<<20))
	if !killed {
		t.Fatalf("the flooding process was not killed")
	}
	if !strings.Contains(l.logs.String(), "reported more clients than client_limit (10) allows: 12") {
		t.Errorf("no client_limit violation in the log")
	}
	if grown > 32<<20 {
		t.Errorf("supervisor heap grew by %d bytes", grown)
	}
	l.greeted()
}

// countLines counts the log lines containing sub.
func countLines(logs, sub string) int { return strings.Count(logs, sub) }

// TestStderrFloodIsRateLimited: a login process writing log lines as fast
// as it can (before: about 400,000 lines a second reached the log) gets
// LogBurst lines and then LogRate a second, with a line a second saying
// how many were suppressed; the supervisor's memory stays bounded and
// the process (honest otherwise) serves its clients.
func TestStderrFloodIsRateLimited(t *testing.T) {
	before := heapInUse()
	l := liarLab(t, "stderr-flood", "service_count = 0\nclient_limit = 10\nprocess_min_avail = 1")
	l.waitFor("the flooding process ready", func(s control.ServiceStatus) bool { return readyProcs(s) == 1 })
	start := time.Now()
	suppressed := l.waitLog("lines suppressed", 10*time.Second)
	n0 := countLines(l.logs.String(), "flood line")
	time.Sleep(3 * time.Second) // a measuring window, not a synchronisation
	n1 := countLines(l.logs.String(), "flood line")
	window := 3*worker.LogRate + 2*worker.LogPerClient + 10 // a dial below adds a client's lines
	t.Logf("%d flood lines logged in the first %v, %d in the next 3 s (limit %d/s); heap grew by %.1f MB",
		n0, time.Since(start)-3*time.Second, n1-n0, worker.LogRate, float64(int64(heapInUse())-int64(before))/(1<<20))
	if !suppressed {
		t.Fatalf("no suppression notice")
	}
	if n0 > worker.LogBurst+2*worker.LogRate+int(time.Since(start).Seconds())*worker.LogRate || n1-n0 > window {
		t.Errorf("flood lines: %d at first, %d in 3 s", n0, n1-n0)
	}
	if grown := int64(heapInUse()) - int64(before); grown > 32<<20 {
		t.Errorf("supervisor heap grew by %d bytes", grown)
	}
	l.greeted()
}

// TestEndlessStderrLineIsCut: one huge stderr line (64 MiB, 16,000
// times MaxLogLine) is relayed cut at MaxLogLine and the rest dropped,
// in bounded memory; the process goes on serving and logging (before,
// the relay stopped at 64 KiB and the process died of SIGPIPE at its
// next write). The honest client is served once the line is written:
// its disconnect line, written in the middle of the long one, would cut
// that short and be dropped with its rest (this test failed so under
// load).
func TestEndlessStderrLineIsCut(t *testing.T) {
	before := heapInUse()
	l := liarLab(t, "endless-line", "service_count = 0\nclient_limit = 10\nprocess_min_avail = 1")
	if !l.waitLog("endless line written", 60*time.Second) {
		t.Fatalf("the long line's end never reached the log")
	}
	l.greeted()
	if !l.waitLog("Disconnected: ", 10*time.Second) {
		t.Errorf("the honest client's disconnect line is not in the log")
	}
	if grown := int64(heapInUse()) - int64(before); grown > 32<<20 {
		t.Errorf("supervisor heap grew by %d bytes", grown)
	}
	if n := strings.Count(l.logs.String(), worker.LogLineCut); n != 1 {
		t.Errorf("%d cut lines, want 1", n)
	}
	if st := l.status(); st.Counters.Crashes != 0 || st.Counters.Spawned != 1 {
		t.Errorf("the process did not survive: %+v", st.Counters)
	}
}

// TestPoolChecksReports: every report a login process can send is checked
// against what the supervisor knows; the first lie kills the process
// (once), its later reports are ignored, and its exit releases its
// clients. A process given the listeners (high-performance, client_limit
// 2) has Seq 1, so its own ids are 1<<32 | n.
func TestPoolChecksReports(t *testing.T) {
	const own = uint64(1) << 32
	acc := func(id uint64, s ipc.ConnState) worker.Event {
		return worker.Event{Kind: worker.EventAccepted, Conn: id, State: s}
	}
	st := func(id uint64, s ipc.ConnState) worker.Event {
		return worker.Event{Kind: worker.EventState, Conn: id, State: s}
	}
	cl := func(id uint64, r ipc.CloseReason) worker.Event {
		return worker.Event{Kind: worker.EventClosed, Conn: id, Reason: r}
	}
	ready := worker.Event{Kind: worker.EventReady}
	unlisten := worker.Event{Kind: worker.EventUnlistened}
	login := func(id uint64) worker.Event {
		return worker.Event{Kind: worker.EventLogin, Conn: id, Login: ipc.Login{ID: id, User: "alice", Mech: "PLAIN"}}
	}
	af := func(id uint64, n uint8) worker.Event {
		return worker.Event{Kind: worker.EventAuthFailed, Conn: id, Attempt: n}
	}
	for _, tt := range []struct {
		name    string
		noLns   bool // high-security: no listeners
		handed  int  // clients handed over by the supervisor first (ids 1, 2, ...)
		events  []worker.Event
		wantErr string // "" = honest
	}{
		{name: "honest", handed: 1, events: []worker.Event{ready, st(1, ipc.StateLoggingIn), acc(own|1, ipc.StateChecking), st(own|1, ipc.StateLoggingIn), st(own|1, ipc.StateLoggingIn), st(own|1, ipc.StateProxying), cl(own|1, ipc.CloseNormal), acc(own|3, ipc.StateLoggingIn), cl(1, ipc.CloseEvicted), unlisten}},
		{name: "ready twice", events: []worker.Event{ready, ready}, wantErr: "reported ready twice"},
		{name: "accept without listeners", noLns: true, events: []worker.Event{ready, acc(own|1, ipc.StateLoggingIn)}, wantErr: "but it has no listeners"},
		{name: "accept after unlisten", events: []worker.Event{ready, unlisten, acc(own|1, ipc.StateLoggingIn)}, wantErr: "after it had closed its listeners"},
		{name: "foreign id", events: []worker.Event{ready, acc(2<<32|1, ipc.StateLoggingIn)}, wantErr: "not one of its ids"},
		{name: "handed id as accepted", handed: 1, events: []worker.Event{ready, acc(1, ipc.StateLoggingIn)}, wantErr: "not one of its ids"},
		{name: "duplicate accept", events: []worker.Event{ready, acc(own|1, ipc.StateLoggingIn), acc(own|1, ipc.StateLoggingIn)}, wantErr: "again or out of order"},
		{name: "accept out of order", events: []worker.Event{ready, acc(own|2, ipc.StateLoggingIn), acc(own|1, ipc.StateLoggingIn)}, wantErr: "again or out of order"},
		{name: "accept n = 0", events: []worker.Event{ready, acc(own, ipc.StateLoggingIn)}, wantErr: "again or out of order"},
		{name: "accepted proxying", events: []worker.Event{ready, acc(own|1, ipc.StateProxying)}, wantErr: "invalid state (proxying)"},
		{name: "client_limit + 1 is allowed", events: []worker.Event{ready, acc(own|1, ipc.StateLoggingIn), acc(own|2, ipc.StateLoggingIn), acc(own|3, ipc.StateLoggingIn)}},
		{name: "client_limit + 2", events: []worker.Event{ready, acc(own|1, ipc.StateLoggingIn), acc(own|2, ipc.StateLoggingIn), acc(own|3, ipc.StateLoggingIn), acc(own|4, ipc.StateLoggingIn)}, wantErr: "more clients than client_limit (2) allows: 4"},
		{name: "state of a stranger", events: []worker.Event{ready, st(7, ipc.StateLoggingIn)}, wantErr: "reported a state for client 0x7, which it does not have"},
		{name: "state invalid", handed: 1, events: []worker.Event{ready, st(1, 9)}, wantErr: "invalid state (state(9))"},
		{name: "state backwards", handed: 1, events: []worker.Event{ready, st(1, ipc.StateProxying), st(1, ipc.StateLoggingIn)}, wantErr: "back from proxying to logging-in"},
		{name: "close of a stranger", events: []worker.Event{ready, cl(own|1, ipc.CloseNormal)}, wantErr: "closed, which it does not have"},
		{name: "close twice", handed: 1, events: []worker.Event{ready, cl(1, ipc.CloseNormal), cl(1, ipc.CloseNormal)}, wantErr: "closed, which it does not have"},
		{name: "close reason invalid", handed: 1, events: []worker.Event{ready, cl(1, 42)}, wantErr: "invalid reason (reason(42))"},
		{name: "unlisten without listeners", noLns: true, events: []worker.Event{ready, unlisten}, wantErr: "it has none"},
		{name: "unlisten twice", events: []worker.Event{ready, unlisten, unlisten}, wantErr: "closing its listeners twice"},
		{name: "honest logins", handed: 1, events: []worker.Event{ready, st(1, ipc.StateLoggingIn), af(1, 1), af(1, 2), login(1), st(1, ipc.StateProxying), cl(1, ipc.CloseNormal), acc(own|1, ipc.StateLoggingIn), st(own|1, ipc.StateProxying), login(own | 1), cl(own|1, ipc.CloseNormal)}},
		{name: "login of a stranger", events: []worker.Event{ready, login(7)}, wantErr: "reported a login or failed authentication of client 0x7, which it does not have"},
		{name: "login after close", handed: 1, events: []worker.Event{ready, cl(1, ipc.CloseNormal), login(1)}, wantErr: "of client 0x1, which it does not have"},
		{name: "login twice", handed: 1, events: []worker.Event{ready, login(1), login(1)}, wantErr: "reported client 0x1 logged in twice"},
		{name: "login before the access check", events: []worker.Event{ready, acc(own|1, ipc.StateChecking), login(own | 1)}, wantErr: "of client 0x100000001 before its access check"},
		{name: "auth failure before the access check", events: []worker.Event{ready, acc(own|1, ipc.StateChecking), af(own|1, 1)}, wantErr: "before its access check"},
		{name: "auth failure out of order", handed: 1, events: []worker.Event{ready, af(1, 2)}, wantErr: "reported failed authentication 2 of client 0x1 after 0"},
		{name: "auth failure repeated", handed: 1, events: []worker.Event{ready, af(1, 1), af(1, 1)}, wantErr: "reported failed authentication 1 of client 0x1 after 1"},
		{name: "auth failure after login", handed: 1, events: []worker.Event{ready, login(1), af(1, 1)}, wantErr: "failed authentication of client 0x1 after its login"},
		{name: "auth failure while proxying", handed: 1, events: []worker.Event{ready, st(1, ipc.StateProxying), af(1, 1)}, wantErr: "of client 0x1 while it was proxying"},
		{name: "auth failure of a stranger", events: []worker.Event{ready, af(9, 1)}, wantErr: "of client 0x9, which it does not have"},
		{name: "invalid packet", events: []worker.Event{ready, {Kind: worker.EventInvalid, Err: fmt.Errorf("sent a descriptor")}}, wantErr: "sent a descriptor"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mode := "service_count = 0\n client_limit = 2\n process_limit = 1\n process_min_avail = 1"
			var lns []*os.File
			if tt.noLns {
				mode = "service_count = 1\n process_limit = 1\n process_min_avail = 1"
			} else {
				lns = append(lns, fakeListener(t))
			}
			cfg, err := config.Parse("t.conf", []byte("base_dir = /tmp/x\nservice imap-login {\n "+mode+"\n}\n"))
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncBuf{}
			r := &fakeRunner{}
			var seq, id atomic.Uint64
			p := newPool(t.Context(), slog.New(slog.NewTextHandler(logs, nil)), r, cfg, cfg.Service("imap-login"), 1, &seq, &id, lns)
			t.Cleanup(func() { p.mu.Lock(); p.stopIdle(); p.mu.Unlock() })
			for range tt.handed {
				p.arrive(-1, anyAddr)
			}
			w := r.w(0)
			for _, ev := range tt.events {
				w.emit(ev)
			}
			if tt.wantErr == "" {
				if _, ctr, _ := p.snapshot(); ctr.Violations != 0 || strings.Contains(strings.Join(w.got(), " "), "kill") {
					t.Errorf("honest reports taken for lies:\n%s", logs.String())
				}
				return
			}
			w.emit(st(1<<50, ipc.StateLoggingIn)) // ignored: it is a liar already
			killed := strings.Count(strings.Join(w.got(), " "), "kill")
			_, ctr, _ := p.snapshot()
			if killed != 1 || ctr.Violations != 1 || strings.Count(logs.String(), "broke the protocol") != 1 {
				t.Fatalf("killed %d times, %d violations, log:\n%s", killed, ctr.Violations, logs.String())
			}
			if !strings.Contains(logs.String(), tt.wantErr) {
				t.Errorf("log does not say %q:\n%s", tt.wantErr, logs.String())
			}
			// Its exit releases its clients.
			w.emit(worker.Event{Kind: worker.EventExit, Signal: "killed", ExitCode: -1})
			_, ctr, _ = p.snapshot()
			p.mu.Lock()
			conns := len(p.conns)
			p.mu.Unlock()
			if conns != 0 || ctr.Crashes != 0 {
				t.Errorf("after its exit: %d clients left, counters %+v", conns, ctr)
			}
		})
	}
}

// TestLiarThatServedNoClientThrottles: as in Dovecot, a process that fails
// before it handled any connection throttles the service (a login
// binary that lies from the start is not respawned in a loop); one that
// had clients is replaced at once.
func TestLiarThatServedNoClientThrottles(t *testing.T) {
	p, r := testPool(t, "service imap-login {\n service_count = 1\n process_min_avail = 1\n}\n")
	r.w(0).emit(worker.Event{Kind: worker.EventReady})
	r.w(0).emit(worker.Event{Kind: worker.EventReady})
	r.w(0).emit(worker.Event{Kind: worker.EventExit, Signal: "killed", ExitCode: -1})
	if _, ctr, _ := p.snapshot(); ctr.Throttles != 1 || r.n() != 1 {
		t.Errorf("liar without clients: %d throttles, %d processes; want 1, 1 (none spawned while throttled)", ctr.Throttles, r.n())
	}

	p, r = testPool(t, "service imap-login {\n service_count = 1\n process_min_avail = 1\n}\n")
	r.w(0).emit(worker.Event{Kind: worker.EventReady})
	p.arrive(-1, anyAddr)
	r.w(0).emit(worker.Event{Kind: worker.EventState, Conn: 99, State: ipc.StateLoggingIn})
	r.w(0).emit(worker.Event{Kind: worker.EventExit, Signal: "killed", ExitCode: -1})
	if _, ctr, _ := p.snapshot(); ctr.Throttles != 0 || ctr.Lost != 1 || ctr.Violations != 1 {
		t.Errorf("liar with a client: counters %+v; want no throttle, 1 lost, 1 violation", ctr)
	}
}

// supervisorChild runs a Supervisor with the configuration file conf
// until SIGTERM (TestLoginProcessInheritsOnlyItsDescriptors).
func supervisorChild(conf string) int {
	text, err := os.ReadFile(conf)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := config.Parse(conf, text)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sup := &Supervisor{Logger: log, Runner: &worker.ExecRunner{Path: os.Args[0], Logger: log, NoSandbox: os.Geteuid() != 0}}
	if err := sup.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fdTargets lists what the descriptors of process pid refer to.
func fdTargets(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		out[fd], _ = os.Readlink(filepath.Join(dir, e.Name()))
	}
	return out
}

// TestLoginProcessInheritsOnlyItsDescriptors: a supervisor started with
// descriptors it does not know of (here six copies of a marker file, fds
// 3-8) does not pass them on: its login processes hold none of them.
// With root, the login process also has its RLIMIT_NPROC ceiling.
func TestLoginProcessInheritsOnlyItsDescriptors(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	confPath := filepath.Join(dir, "loginsvc.conf")
	text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nservice imap-login {\n inet_listener imap {\n  port = %d\n }\n service_count = 1\n process_min_avail = 1\n}\n", filepath.Join(dir, "run"), port)
	if err := os.WriteFile(confPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(confPath, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	marker, err := os.Create(filepath.Join(dir, "inherited-marker"))
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	var logs syncBuf
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOGINSVC_TEST_SUPERVISOR="+confPath)
	cmd.ExtraFiles = []*os.File{marker, marker, marker, marker, marker, marker}
	cmd.Stderr = &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	startStopped(t, cmd, 15*time.Second, "supervisor log", &logs)
	var pid int
	for deadline := time.Now().Add(15 * time.Second); pid == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no ready login process")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := control.QueryStatus(ctx, cfg.ControlSocket())
		cancel()
		if err == nil && len(st.Services) == 1 {
			for _, p := range st.Services[0].Procs {
				if p.Ready {
					pid = p.PID
				}
			}
		}
	}
	count := func(m map[int]string) int {
		n := 0
		for _, target := range m {
			if target == marker.Name() {
				n++
			}
		}
		return n
	}
	if n := count(fdTargets(t, cmd.Process.Pid)); n != 6 {
		t.Fatalf("the supervisor holds %d copies of the marker, want 6 (the test is broken)", n)
	}
	fds := fdTargets(t, pid)
	t.Logf("login process %d descriptors: %v", pid, fds)
	if n := count(fds); n != 0 {
		t.Errorf("login process %d inherited %d of the supervisor's descriptors: %v", pid, n, fds)
	}
	if os.Geteuid() == 0 {
		want := strconv.FormatUint(worker.NProc(cfg, cfg.Service("imap-login")), 10)
		if got := procLimit(t, pid, "Max processes"); got != want {
			t.Errorf("login process RLIMIT_NPROC %s, want %s", got, want)
		}
	}
}

// procLimit is the soft limit named name ("Max processes") of process pid.
func procLimit(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	t.Fatalf("no %q in /proc/%d/limits", name, pid)
	return ""
}
