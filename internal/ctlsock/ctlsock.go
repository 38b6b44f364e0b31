// Package ctlsock serves a daemon's local control socket: a unix stream
// socket that only root and one owner uid may use, checked with
// SO_PEERCRED on every connection, where a client writes request lines
// and reads one JSON value per line in answer. tcpwrapd's admin socket
// (accessd.AdminServer, `loginctl status`) uses it; it is shaped for
// loginsvc's control socket too (one "status" line, one JSON Status).
//
// The package frames and guards the conversation; what a line means is
// the Handler's business, so a request may be JSON or a plain word.
package ctlsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
)

// Defaults for the zero values of Server's fields.
const (
	// DefaultIdleTimeout closes a connection that sends no line for 60 s.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultWriteTimeout bounds the write of one reply.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxLine bounds one request line: 64 KiB.
	DefaultMaxLine = 64 << 10
)

// Peer is the process at the other end of a unix socket, by SO_PEERCRED.
type Peer struct {
	// PID and UID are the peer's process and user ids; -1 when unknown.
	PID, UID int
}

// PeerCred returns the SO_PEERCRED credentials of c, or -1s when the
// kernel does not give them.
func PeerCred(c *net.UnixConn) Peer {
	p := Peer{PID: -1, UID: -1}
	rc, err := c.SyscallConn()
	if err != nil {
		return p
	}
	rc.Control(func(fd uintptr) {
		if cr, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			p.PID, p.UID = int(cr.Pid), int(cr.Uid)
		}
	})
	return p
}

// Server serves a control socket. The exported fields must not change
// once Serve has been called.
type Server struct {
	// OwnerUID is the uid allowed besides root; -1 allows root only.
	OwnerUID int
	// Handle answers one request line (without its newline). Its result
	// is written as one line of JSON; a nil result writes nothing, and
	// the connection waits for the next line. Required.
	Handle func(ctx context.Context, p Peer, line []byte) any
	// Refused, if set, returns the reply to a peer that is neither root
	// nor OwnerUID, written before the connection is closed; nil closes
	// it without a reply.
	Refused func(p Peer) any
	// OneRequest closes a connection after its first reply.
	OneRequest bool
	// IdleTimeout, WriteTimeout and MaxLine: zero means the defaults.
	IdleTimeout, WriteTimeout time.Duration
	MaxLine                   int
	// Name names the socket in log messages ("admin socket").
	Name string
	// Logger receives refused peers (Warn). Nil discards.
	Logger *slog.Logger
}

// Permitted reports whether a peer with uid may use the socket: root, and
// OwnerUID.
func (s *Server) Permitted(uid int) bool {
	return uid == 0 || (s.OwnerUID >= 0 && uid == s.OwnerUID)
}

// Serve serves ln until ctx is cancelled, then closes ln and the open
// connections, waits for their handlers and returns nil; it returns an
// Accept error otherwise (after the same wait). Temporary Accept errors
// are retried after 50 ms. Each connection's context is cancelled when
// ctx is.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		wg.Go(func() {
			defer c.Close()
			stop := context.AfterFunc(connCtx, func() { c.Close() })
			defer stop()
			s.serve(connCtx, c)
		})
	}
}

func (s *Server) serve(ctx context.Context, c net.Conn) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return
	}
	enc := json.NewEncoder(c)
	write := func(v any) bool {
		c.SetWriteDeadline(time.Now().Add(defaults.Positive(s.WriteTimeout, DefaultWriteTimeout)))
		return enc.Encode(v) == nil
	}
	p := PeerCred(uc)
	if !s.Permitted(p.UID) {
		if s.Logger != nil {
			s.Logger.Warn(s.Name+": peer not allowed", "peer_pid", p.PID, "peer_uid", p.UID)
		}
		if s.Refused != nil {
			write(s.Refused(p))
		}
		return
	}
	maxLine := s.MaxLine
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, min(4096, maxLine)), maxLine)
	for {
		c.SetReadDeadline(time.Now().Add(defaults.Positive(s.IdleTimeout, DefaultIdleTimeout)))
		if !sc.Scan() {
			return
		}
		rep := s.Handle(ctx, p, sc.Bytes())
		if rep == nil {
			continue
		}
		if !write(rep) || s.OneRequest {
			return
		}
	}
}
