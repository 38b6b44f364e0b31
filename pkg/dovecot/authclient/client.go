package authclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Defaults of [Config], Dovecot's own values (lib-auth).
const (
	// DefaultConnectTimeout bounds connect(2) to the auth socket
	// (unix_client_connect_msecs).
	DefaultConnectTimeout = 1 * time.Second
	// DefaultHandshakeTimeout bounds the wait for the server's DONE
	// (AUTH_CONNECT_TIMEOUT_MSECS).
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultReconnectInterval is the least time between two connection
	// attempts (AUTH_SERVER_RECONNECT_TIMEOUT_SECS).
	DefaultReconnectInterval = 5 * time.Second
	// DefaultReconnectMax caps the interval, which doubles with each
	// consecutive failed attempt.
	DefaultReconnectMax = 30 * time.Second
)

// Errors of [Client] and [Auth] methods.
var (
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("auth client closed")
	// ErrFinished: the request already got its OK or FAIL, or was
	// cancelled.
	ErrFinished = errors.New("auth request finished")
	// ErrDisconnected: the connection the request was sent on is gone.
	ErrDisconnected = errors.New("auth connection lost")
)

// Config configures a [Client].
type Config struct {
	// Path is the auth socket: base_dir/login/login (2.3), or the
	// auth-client socket (2.4).
	Path string
	// PID is sent as CPID. It must be unique among the connections to
	// auth, and the hand-off request's client_pid must equal it. Zero
	// means os.Getpid().
	PID uint32
	// Version is the protocol version to speak. Zero means: read the
	// server's VERSION first and speak 1.2 to a 1.2 server, 1.3
	// otherwise.
	Version Version
	// Logger receives connection events (connect failures, broken
	// input). Nil means slog.Default().
	Logger *slog.Logger
	// ConnectTimeout, HandshakeTimeout, ReconnectInterval and
	// ReconnectMax: zero means the Default* constant.
	ConnectTimeout, HandshakeTimeout, ReconnectInterval, ReconnectMax time.Duration
	// Dial connects to Path. Nil means a unix stream socket.
	Dial func(ctx context.Context, path string) (net.Conn, error)
}

func (c *Config) setDefaults() {
	if c.PID == 0 {
		c.PID = uint32(os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.ReconnectInterval, DefaultReconnectInterval)
	def(&c.ReconnectMax, DefaultReconnectMax)
	if c.ReconnectMax < c.ReconnectInterval {
		c.ReconnectMax = c.ReconnectInterval
	}
	if c.Dial == nil {
		c.Dial = func(ctx context.Context, path string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
}

// Client is one login process's connection to Dovecot's auth service.
// It connects in the background, reconnects when the connection breaks,
// and multiplexes any number of requests over it. Its methods are safe
// for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the run loop has ended

	mu     sync.Mutex
	cur    *conn         // nil while disconnected
	ready  chan struct{} // closed while cur != nil
	nextID uint32
	closed bool
}

// conn is one connection to auth, after its handshake.
type conn struct {
	nc   net.Conn
	hs   Handshake
	wmu  sync.Mutex
	reqs map[uint32]*Auth // guarded by Client.mu
	wto  time.Duration
}

// New returns a Client and starts connecting to cfg.Path in the
// background. Call [Client.Close] to stop it.
func New(cfg Config) *Client {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, log: cfg.Logger.With("auth_socket", cfg.Path),
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		ready: make(chan struct{}),
	}
	go c.run()
	return c
}

// Close disconnects and stops reconnecting. Pending requests end with
// StatusInternalFail. It returns nil; calling it again does nothing.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	cur := c.cur
	c.mu.Unlock()
	c.cancel()
	if cur != nil {
		cur.nc.Close()
	}
	<-c.done
	return nil
}

// Handshake returns the current connection's handshake, and false while
// there is no connection.
func (c *Client) Handshake() (Handshake, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return Handshake{}, false
	}
	return c.cur.hs, true
}

// WaitReady waits until the client has a connection whose handshake is
// complete and returns the handshake. It returns ctx.Err() or ErrClosed.
func (c *Client) WaitReady(ctx context.Context) (Handshake, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return Handshake{}, ErrClosed
		}
		if c.cur != nil {
			hs := c.cur.hs
			c.mu.Unlock()
			return hs, nil
		}
		ready := c.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return Handshake{}, ctx.Err()
		case <-c.done:
			return Handshake{}, ErrClosed
		}
	}
}

// Begin starts an authentication: it waits (bounded by ctx) for a ready
// connection, assigns the request an id and sends AUTH. Drive the result
// with [Auth.Next]. The error is ctx.Err(), ErrClosed, or a write error
// (the connection is then dropped and reconnected).
func (c *Client) Begin(ctx context.Context, req *Request) (*Auth, error) {
	if _, err := c.WaitReady(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	cn := c.cur
	if cn == nil || c.closed {
		c.mu.Unlock()
		if c.closed {
			return nil, ErrClosed
		}
		return c.Begin(ctx, req)
	}
	for {
		c.nextID++
		if c.nextID == 0 {
			continue // 0 is not a valid id
		}
		if _, used := cn.reqs[c.nextID]; !used {
			break
		}
	}
	a := &Auth{c: c, cn: cn, id: c.nextID, ch: make(chan Step, 1), finalOK: req.FinalRespOK}
	cn.reqs[a.id] = a
	c.mu.Unlock()

	line := appendAuth(make([]byte, 0, 256), a.id, cn.hs.Spoken, req)
	if err := c.write(cn, line); err != nil {
		c.mu.Lock()
		delete(cn.reqs, a.id)
		c.mu.Unlock()
		return nil, err
	}
	return a, nil
}

// write sends one line on cn; a failure drops the connection.
func (c *Client) write(cn *conn, line []byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	_ = cn.nc.SetWriteDeadline(time.Now().Add(cn.wto))
	if _, err := cn.nc.Write(line); err != nil {
		cn.nc.Close() // the reader notices and reconnects
		return fmt.Errorf("write to auth server %s: %w", c.cfg.Path, err)
	}
	return nil
}

// run connects, serves and reconnects until Close.
func (c *Client) run() {
	defer close(c.done)
	var last time.Time
	failures := 0
	for {
		if !last.IsZero() {
			wait := c.cfg.ReconnectInterval
			for i := 1; i < failures && wait < c.cfg.ReconnectMax; i++ {
				wait *= 2
			}
			wait = min(wait, c.cfg.ReconnectMax)
			if failures > 1 { // spread the herd of login processes
				wait += time.Duration(rand.Int64N(int64(wait)/5 + 1))
			}
			if d := time.Until(last.Add(wait)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-c.ctx.Done():
					t.Stop()
					return
				}
			}
		}
		if c.ctx.Err() != nil {
			return
		}
		last = time.Now()
		cn, br, err := c.connect()
		if err != nil {
			failures++
			if c.ctx.Err() != nil {
				return
			}
			c.log.Error("auth connect failed", "err", err, "attempt", failures)
			continue
		}
		failures = 0
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			cn.nc.Close()
			return
		}
		c.cur = cn
		close(c.ready)
		c.mu.Unlock()
		c.log.Debug("auth connected", "spid", cn.hs.ServerPID, "cuid", cn.hs.ConnectUID, "version", cn.hs.Spoken.String())

		err = c.serve(cn, br)
		cn.nc.Close()
		c.mu.Lock()
		c.cur = nil
		c.ready = make(chan struct{})
		pending := cn.reqs
		cn.reqs = nil
		closed := c.closed
		c.mu.Unlock()
		if !closed {
			c.log.Warn("auth connection lost", "err", err, "pending_requests", len(pending))
		}
		lost := parseFields([]string{"temp", "code=" + CodeTempFail}, false)
		for _, a := range pending {
			a.deliver(Step{Status: StatusInternalFail, Reply: lost})
		}
	}
}

// connect dials and does the handshake.
func (c *Client) connect() (*conn, *bufio.Reader, error) {
	dctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
	nc, err := c.cfg.Dial(dctx, c.cfg.Path)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("connect(%s): %w", c.cfg.Path, err)
	}
	stop := context.AfterFunc(c.ctx, func() { nc.Close() })
	defer stop()
	_ = nc.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(nc, MaxLineLength)
	var h handshake
	send := func(v Version) error {
		h.hs.Spoken = v
		_, err := io.WriteString(nc, "VERSION\t1\t"+strconv.Itoa(int(v.Minor))+"\nCPID\t"+strconv.FormatUint(uint64(c.cfg.PID), 10)+"\n")
		return err
	}
	if c.cfg.Version != (Version{}) {
		if err := send(c.cfg.Version); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("send handshake to %s: %w", c.cfg.Path, err)
		}
	}
	for sent := c.cfg.Version != (Version{}); ; {
		line, err := readLine(br)
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("handshake with %s: %w", c.cfg.Path, err)
		}
		done, err := h.feed(line)
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("handshake with %s: %w", c.cfg.Path, err)
		}
		if !sent && h.version {
			v := Version13
			if h.hs.Version.Minor < 3 {
				v = Version12
			}
			if err := send(v); err != nil {
				nc.Close()
				return nil, nil, fmt.Errorf("send handshake to %s: %w", c.cfg.Path, err)
			}
			sent = true
		}
		if done {
			break
		}
	}
	_ = nc.SetDeadline(time.Time{})
	return &conn{nc: nc, hs: h.hs, reqs: map[uint32]*Auth{}, wto: c.cfg.HandshakeTimeout}, br, nil
}

// readLine reads one line without its LF; a line longer than
// MaxLineLength is an error.
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("auth server sent more than %d bytes in a line", MaxLineLength)
	}
	if err != nil {
		return "", err
	}
	return string(b[:len(b)-1]), nil
}

// serve reads replies until the connection fails.
func (c *Client) serve(cn *conn, br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		r, err := parseReply(line)
		if err != nil {
			c.log.Error("auth server sent broken input", "err", err)
			return err
		}
		c.mu.Lock()
		a := cn.reqs[r.id]
		if a != nil && r.status != StatusContinue {
			delete(cn.reqs, r.id)
		}
		c.mu.Unlock()
		if a == nil {
			// Cancelled by us, or the server is confused; Dovecot logs
			// and carries on.
			c.log.Debug("auth server sent unknown id", "id", r.id)
			continue
		}
		if !a.deliver(a.step(r)) {
			c.log.Error("auth server sent a reply before the client answered the previous one", "id", r.id)
			return protoErr(line, "unexpected reply")
		}
	}
}

// Step is one answer of the server to a request.
type Step struct {
	// Status says what kind of answer it is.
	Status Status
	// Challenge is the base64 server challenge of a StatusContinue.
	Challenge string
	// Reply holds the fields of every other status.
	Reply *Reply
}

// Auth is one authentication in progress. Its methods are safe for
// concurrent use; Next is meant to be called by one goroutine.
type Auth struct {
	c       *Client
	cn      *conn
	id      uint32
	ch      chan Step
	finalOK bool

	mu       sync.Mutex
	finished bool  // OK or FAIL received, or cancelled
	final    *Step // 1.3: OK/FAIL held back behind a final response
}

// ID returns the request id: the auth_id of the hand-off request.
func (a *Auth) ID() uint32 { return a.id }

// ServerPID returns the SPID of the connection the request went to: the
// auth_pid of the hand-off request.
func (a *Auth) ServerPID() uint32 { return a.cn.hs.ServerPID }

// Cookie returns the COOKIE of the connection the request went to.
func (a *Auth) Cookie() [16]byte { return a.cn.hs.Cookie }

// ClientPID returns the CPID the connection was opened with: the
// client_pid of the hand-off request.
func (a *Auth) ClientPID() uint32 { return a.c.cfg.PID }

// step turns a server reply into the Step the caller sees. With protocol
// 1.3 and no FinalRespOK, an OK or FAIL that carries resp= first shows as
// a StatusContinue with resp as the challenge; the next Continue then
// yields the OK or FAIL without sending anything (lib-auth-client does
// this for protocols that cannot carry a final response).
func (a *Auth) step(r serverReply) Step {
	if r.status == StatusContinue {
		return Step{Status: StatusContinue, Challenge: r.challenge}
	}
	rep := parseFields(r.args, r.status == StatusOK)
	st := Step{Status: r.status, Reply: rep}
	if a.cn.hs.Spoken.is13() && rep.FinalResponse != "" && (r.status != StatusOK || !a.finalOK) {
		a.mu.Lock()
		a.final = &st
		a.mu.Unlock()
		return Step{Status: StatusContinue, Challenge: rep.FinalResponse}
	}
	return st
}

// deliver queues s for Next; false if the previous step was not taken.
func (a *Auth) deliver(s Step) bool {
	a.mu.Lock()
	if s.Status != StatusContinue && a.final == nil {
		a.finished = true
	}
	a.mu.Unlock()
	select {
	case a.ch <- s:
		return true
	default:
		return false
	}
}

// Next waits for the server's next answer. When ctx ends first (the
// client went away), Next cancels the request and returns ctx.Err().
func (a *Auth) Next(ctx context.Context) (Step, error) {
	select {
	case s := <-a.ch:
		return s, nil
	case <-ctx.Done():
		a.Cancel()
		return Step{}, ctx.Err()
	}
}

// Continue sends the client's response (base64, as the client sent it)
// to a StatusContinue step. It returns ErrFinished if the request has
// ended, ErrDisconnected if its connection is gone, or a write error.
func (a *Auth) Continue(resp Secret) error {
	a.mu.Lock()
	if f := a.final; f != nil {
		a.final = nil
		a.finished = true
		a.mu.Unlock()
		a.ch <- *f // the channel is empty: Next took the CONT
		return nil
	}
	if a.finished {
		a.mu.Unlock()
		return ErrFinished
	}
	a.mu.Unlock()
	if !a.live() {
		return ErrDisconnected
	}
	line := make([]byte, 0, 16+len(resp))
	line = append(line, "CONT\t"...)
	line = strconv.AppendUint(line, uint64(a.id), 10)
	line = append(line, '\t')
	line = append(line, TabEscape(resp.Reveal())...)
	line = append(line, '\n')
	return a.c.write(a.cn, line)
}

// live reports whether the request's connection is still the current one.
func (a *Auth) live() bool {
	a.c.mu.Lock()
	defer a.c.mu.Unlock()
	return a.c.cur == a.cn
}

// Cancel tells auth to forget the request (CANCEL): for a pending request
// when the client goes away, and after an OK whose hand-off failed (auth
// keeps a successful request until the post-login side asks for it).
// Replies that arrive later are dropped. It does nothing if the request's
// connection is gone, and is safe to call more than once.
func (a *Auth) Cancel() {
	a.mu.Lock()
	a.finished = true
	a.final = nil
	a.mu.Unlock()
	a.c.mu.Lock()
	live := a.c.cur == a.cn
	if a.cn.reqs != nil {
		delete(a.cn.reqs, a.id)
	}
	a.c.mu.Unlock()
	if live {
		_ = a.c.write(a.cn, []byte("CANCEL\t"+strconv.FormatUint(uint64(a.id), 10)+"\n"))
	}
}
