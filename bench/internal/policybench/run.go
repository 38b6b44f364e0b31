package policybench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tcpwrapd/tcpwrapd/bench/internal/accessbench"
)

// SchemaVersion is the version of the Result JSON layout.
const SchemaVersion = 1

// Protocols.
const (
	ProtoAuthPolicy = "authpolicy" // Dovecot's auth policy over HTTP/1.1
	ProtoPostfix    = "postfix"    // Postfix's SMTPD policy delegation
)

// Config describes one measurement run against one policy service.
type Config struct {
	// Proto is ProtoAuthPolicy or ProtoPostfix.
	Proto string
	// Addr is HOST:PORT, or the path of a unix socket (starting with /).
	Addr string
	// Target and Rules label the result ("tcpwrapd", "null", "python";
	// the number of hosts.deny lines). They do not change what is sent.
	Target string
	Rules  int
	// Workers is the number of connections, each with one request in
	// flight; 0 means 4.
	Workers int
	// Duration bounds the measured phase; Count the number of measured
	// requests (all workers together). Both zero means 5 s.
	Duration time.Duration
	Count    int64
	// Warmup runs before measuring, on the same connections, uncounted.
	Warmup time.Duration
	// Client is the client address the requests name ("remote",
	// "client_address"); "" means 127.0.0.1.
	Client string
	// Timeout bounds each request; 0 means 10 s.
	Timeout time.Duration
	// ServerPID, if not zero, is the service's process; its CPU time
	// over the measured phase is reported per request.
	ServerPID int
}

// Result is the outcome of one Run, printed as one JSON line.
type Result struct {
	Schema  int     `json:"schema"`  // the JSON line's shape version
	Proto   string  `json:"proto"`   // Config.Proto
	Target  string  `json:"target"`  // Config.Target
	Rules   int     `json:"rules"`   // Config.Rules (hosts.deny lines)
	Addr    string  `json:"addr"`    // Config.Addr
	Client  string  `json:"client"`  // the client address the requests name
	Workers int     `json:"workers"` // connections, one request in flight each
	Seconds float64 `json:"seconds"` // length of the measured phase
	// Requests counts measured requests, failed ones included.
	Requests int64 `json:"requests"`
	// Allowed, Denied and Errors split Requests by verdict (Dovecot's
	// auth-policy status, Postfix's action); FirstError is the first
	// error's text.
	Allowed    int64  `json:"allowed"`
	Denied     int64  `json:"denied"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Rate is completed requests per second (failed ones included).
	Rate float64 `json:"requests_per_sec"`
	// Latencies in microseconds, from the write of the request to the
	// end of the reply.
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	MaxUS  float64 `json:"max_us"`
	// DriverCPUUS and ServerCPUUS are the CPU time (user+system) per
	// measured request of this driver and of Config.ServerPID (0 when not
	// measured; 10 ms tick resolution over the run).
	DriverCPUUS float64 `json:"driver_cpu_us_per_request"`
	ServerCPUUS float64 `json:"server_cpu_us_per_request,omitempty"`
}

// Verdicts of one request.
type verdict int

const (
	failed verdict = iota
	allowed
	denied
)

// DovecotRequest returns the bytes of one allow request exactly as
// Dovecot 2.3.19's auth policy client sends it with the default
// auth_policy_request_attributes (captured from the real Dovecot; the
// Date is fixed, the pwhash and session_id are one login's), for a
// client at client, to the server at host.
func DovecotRequest(host, client string) []byte {
	body := fmt.Sprintf(`{"device_id":"","login":"alice","protocol":"imap","pwhash":"05c6","remote":%q,"session_id":"TWfMlAtiOal/AAAB","tls":false}`, client)
	return fmt.Appendf(nil, "POST /?command=allow HTTP/1.1\r\nHost: %s\r\nDate: Mon, 07 Dec 2026 13:55:40 GMT\r\n"+
		"User-Agent: dovecot/auth-policy-client\r\nContent-Length: %d\r\nConnection: Keep-Alive\r\n"+
		"Content-Type: application/json\r\n\r\n%s", host, len(body), body)
}

// PostfixRequest returns Postfix 3.7's RCPT-stage policy block (as
// captured in pkg/postfix/smtpdpolicy/testdata/postfix37-rcpt.txt) for a
// client at client.
func PostfixRequest(client string) []byte {
	return []byte("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=" + client + "\nclient_name=unknown\nclient_port=57789\nreverse_client_name=unknown\n" +
		"server_address=127.0.0.1\nserver_port=10025\nhelo_name=[127.0.0.1]\nsender=a@x.test\nrecipient=b@example.test\n" +
		"recipient_count=0\nqueue_id=\ninstance=15d7.6b16a08a.98b5d.0\nsize=0\netrn_domain=\nstress=\nsasl_method=\n" +
		"sasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n" +
		"encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n")
}

// conn is one persistent client connection.
type conn struct {
	c       net.Conn
	r       *bufio.Reader
	req     []byte
	proto   string
	timeout time.Duration
	body    []byte
}

func dial(cfg Config) (*conn, error) {
	network := "tcp"
	if strings.HasPrefix(cfg.Addr, "/") {
		network = "unix"
	}
	c, err := net.DialTimeout(network, cfg.Addr, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	cn := &conn{c: c, r: bufio.NewReaderSize(c, 4096), proto: cfg.Proto, timeout: cfg.Timeout}
	if cfg.Proto == ProtoPostfix {
		cn.req = PostfixRequest(cfg.Client)
	} else {
		host := cfg.Addr
		if network == "unix" {
			host = "localhost"
		}
		cn.req = DovecotRequest(host, cfg.Client)
	}
	return cn, nil
}

// do sends one request and reads its reply.
func (cn *conn) do() (verdict, error) {
	cn.c.SetDeadline(time.Now().Add(cn.timeout))
	if _, err := cn.c.Write(cn.req); err != nil {
		return failed, err
	}
	if cn.proto == ProtoPostfix {
		return cn.readPostfix()
	}
	return cn.readHTTP()
}

// readPostfix reads one reply block: "action=...\n" lines up to an empty
// line. DUNNO allows; REJECT or a 4xx/5xx code denies.
func (cn *conn) readPostfix() (verdict, error) {
	v := failed
	for {
		line, err := cn.r.ReadSlice('\n')
		if err != nil {
			return failed, fmt.Errorf("reply: %w", err)
		}
		if len(line) == 1 {
			if v == failed {
				return failed, errors.New("reply without an action")
			}
			return v, nil
		}
		a, ok := bytes.CutPrefix(line, []byte("action="))
		switch {
		case !ok:
		case bytes.Equal(a, []byte("DUNNO\n")):
			v = allowed
		case bytes.HasPrefix(a, []byte("REJECT")) || len(a) > 0 && (a[0] == '4' || a[0] == '5'):
			v = denied
		default:
			return failed, fmt.Errorf("unexpected action %q", a)
		}
	}
}

// readHTTP reads one HTTP/1.1 response with a Content-Length body. A 200
// with {"status":0} allows, one with a negative status denies; anything
// else, or a server that closes the keep-alive connection, fails.
func (cn *conn) readHTTP() (verdict, error) {
	line, err := cn.r.ReadSlice('\n')
	if err != nil {
		return failed, fmt.Errorf("status line: %w", err)
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return failed, fmt.Errorf("status line %q", bytes.TrimSpace(line))
	}
	n, closing := -1, false
	for {
		h, err := cn.r.ReadSlice('\n')
		if err != nil {
			return failed, fmt.Errorf("headers: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if n, err = strconv.Atoi(string(value)); err != nil {
				return failed, fmt.Errorf("Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closing = true
		}
	}
	if n < 0 || n > 4096 {
		return failed, fmt.Errorf("Content-Length %d", n)
	}
	if cap(cn.body) < n {
		cn.body = make([]byte, n)
	}
	body := cn.body[:n]
	if _, err := io.ReadFull(cn.r, body); err != nil {
		return failed, fmt.Errorf("body: %w", err)
	}
	if closing {
		return failed, errors.New("the server closes the keep-alive connection")
	}
	switch {
	case bytes.Equal(body, []byte(`{"status":0}`)):
		return allowed, nil
	case bytes.HasPrefix(body, []byte(`{"status":-`)):
		return denied, nil
	}
	return failed, fmt.Errorf("reply body %q", body)
}

type workerStats struct {
	lat              []time.Duration
	allow, deny, bad int64
	first            error
	firstAt          time.Time
	conn             *conn
}

// Run measures cfg.Addr until cfg.Duration or cfg.Count is reached or ctx
// ends. It fails only when a connection cannot be opened; failed requests
// are counted in the Result. A worker whose request fails reconnects.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Proto != ProtoAuthPolicy && cfg.Proto != ProtoPostfix {
		return nil, fmt.Errorf("protocol %q: want %s or %s", cfg.Proto, ProtoAuthPolicy, ProtoPostfix)
	}
	if cfg.Addr == "" {
		return nil, errors.New("no address")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Duration <= 0 && cfg.Count <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Client == "" {
		cfg.Client = "127.0.0.1"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	stats := make([]*workerStats, cfg.Workers)
	for i := range stats {
		cn, err := dial(cfg)
		if err != nil {
			for _, ws := range stats[:i] {
				ws.conn.c.Close()
			}
			return nil, fmt.Errorf("connection %d: %w", i+1, err)
		}
		stats[i] = &workerStats{conn: cn, lat: make([]time.Duration, 0, 1<<16)}
	}
	defer func() {
		for _, ws := range stats {
			if ws.conn != nil {
				ws.conn.c.Close()
			}
		}
	}()
	if cfg.Warmup > 0 {
		wctx, cancel := context.WithTimeout(ctx, cfg.Warmup)
		runWorkers(wctx, cfg, stats, nil, false)
		cancel()
		for _, ws := range stats {
			ws.lat, ws.allow, ws.deny, ws.bad, ws.first = ws.lat[:0], 0, 0, 0, nil
		}
	}
	mctx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		mctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var budget *int64Budget
	if cfg.Count > 0 {
		budget = &int64Budget{left: cfg.Count}
	}
	srv0, srvErr := time.Duration(0), error(nil)
	if cfg.ServerPID > 0 {
		srv0, srvErr = accessbench.ProcCPU(cfg.ServerPID)
	}
	cpu0, start := accessbench.SelfCPU(), time.Now()
	runWorkers(mctx, cfg, stats, budget, true)
	elapsed, cpu := time.Since(start), accessbench.SelfCPU()-cpu0
	r := summarize(cfg, stats, elapsed)
	if r.Requests > 0 {
		r.DriverCPUUS = float64(cpu.Nanoseconds()) / 1e3 / float64(r.Requests)
		if cfg.ServerPID > 0 && srvErr == nil {
			if srv1, err := accessbench.ProcCPU(cfg.ServerPID); err == nil {
				r.ServerCPUUS = float64((srv1 - srv0).Nanoseconds()) / 1e3 / float64(r.Requests)
			}
		}
	}
	return r, nil
}

// int64Budget hands out at most left requests.
type int64Budget struct {
	mu   sync.Mutex
	left int64
}

func (b *int64Budget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left <= 0 {
		return false
	}
	b.left--
	return true
}

func runWorkers(ctx context.Context, cfg Config, stats []*workerStats, budget *int64Budget, measure bool) {
	var wg sync.WaitGroup
	for _, ws := range stats {
		wg.Go(func() {
			for ctx.Err() == nil {
				if budget != nil && !budget.take() {
					return
				}
				if ws.conn == nil {
					cn, err := dial(cfg)
					if err != nil {
						ws.fail(err)
						time.Sleep(10 * time.Millisecond) // a refused dial returns at once
						continue
					}
					ws.conn = cn
				}
				t0 := time.Now()
				v, err := ws.conn.do()
				d := time.Since(t0)
				if measure {
					ws.lat = append(ws.lat, d)
				}
				switch v {
				case allowed:
					ws.allow++
				case denied:
					ws.deny++
				default:
					ws.fail(err)
					ws.conn.c.Close()
					ws.conn = nil
				}
			}
		})
	}
	wg.Wait()
}

func (ws *workerStats) fail(err error) {
	ws.bad++
	if ws.first == nil {
		ws.first, ws.firstAt = err, time.Now()
	}
}

func summarize(cfg Config, stats []*workerStats, elapsed time.Duration) *Result {
	r := &Result{Schema: SchemaVersion, Proto: cfg.Proto, Target: cfg.Target, Rules: cfg.Rules,
		Addr: cfg.Addr, Client: cfg.Client, Workers: cfg.Workers, Seconds: elapsed.Seconds()}
	var lat []time.Duration
	var firstAt time.Time
	for _, ws := range stats {
		lat = append(lat, ws.lat...)
		r.Allowed += ws.allow
		r.Denied += ws.deny
		r.Errors += ws.bad
		if ws.first != nil && (firstAt.IsZero() || ws.firstAt.Before(firstAt)) {
			firstAt, r.FirstError = ws.firstAt, ws.first.Error()
		}
	}
	r.Requests = r.Allowed + r.Denied + r.Errors
	if elapsed > 0 {
		r.Rate = float64(r.Requests) / elapsed.Seconds()
	}
	l := accessbench.SummarizeLatencies(lat)
	r.MeanUS, r.P50US, r.P90US, r.P99US, r.MaxUS = l.MeanUS, l.P50US, l.P90US, l.P99US, l.MaxUS
	return r
}

// String is a one-line human summary of r.
func (r *Result) String() string {
	s := fmt.Sprintf("%-10s %-9s rules=%-6d workers=%-3d %9.0f req/s  p50 %s  p99 %s  max %s  (%d requests: %d allow, %d deny, %d errors, %.1fs; cpu/request driver %s server %s)",
		r.Proto, r.Target, r.Rules, r.Workers, r.Rate, accessbench.FormatUS(r.P50US), accessbench.FormatUS(r.P99US),
		accessbench.FormatUS(r.MaxUS), r.Requests, r.Allowed, r.Denied, r.Errors, r.Seconds,
		accessbench.FormatUS(r.DriverCPUUS), accessbench.FormatUS(r.ServerCPUUS))
	if r.FirstError != "" {
		s += "  first error: " + r.FirstError
	}
	return s
}

// WaitReady opens a connection to cfg.Addr and sends one request until
// one gets a well-formed reply or ctx ends, pausing 50 ms between tries.
func WaitReady(ctx context.Context, cfg Config) error {
	if cfg.Client == "" {
		cfg.Client = "127.0.0.1"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	for {
		cn, err := dial(cfg)
		if err == nil {
			_, err = cn.do()
			cn.c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", cfg.Addr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
