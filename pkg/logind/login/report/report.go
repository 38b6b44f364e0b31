// Package report sends a login process's reports to its supervisor on
// the control socket (ipc.AppendReport records; pkg/logind/proto.go,
// docs/loginsvc.md): urgent ones at once, lazy ones (a direct accept or
// a close that does not make the process full or non-full, a failed
// authentication, a login) batched for up to 20 ms, always in the order
// they were made.
package report

import (
	"net"
	"sync"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// delay bounds how long a lazy report waits; maxBatch is the largest
// batch packet in bytes.
const (
	delay    = 20 * time.Millisecond
	maxBatch = 4000
)

// Sender writes reports on a control socket. A nil *Sender sends
// nothing (a client served without a supervisor, login.ServeConn). Its
// methods are safe for concurrent use; write errors are ignored (the
// control loop sees a broken socket on its next read).
type Sender struct {
	c     *net.UnixConn
	mu    sync.Mutex // send order; guards batch and queued
	batch []byte     // lazy reports: ipc.MsgBatch + their records
	// queued: lazy packets of their own (LazyPacket), each after the
	// batch records that were made before it (a closed batch is queued
	// as a packet); the open batch goes after them.
	queued [][]byte
	// spare: the buffer of a queued batch, once sent, for the next
	// batch (a closed batch would otherwise cost the next one its
	// allocations, at every login).
	spare []byte
}

// New returns a Sender writing on c.
func New(c *net.UnixConn) *Sender { return &Sender{c: c} }

// Send sends packet b on its own (ipc.MsgReady) now, after
// any batched reports, and returns the write's error.
func (s *Sender) Send(b []byte) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
	_, _, err := s.c.WriteMsgUnix(b, nil, nil)
	return err
}

// Now sends one report now, after any batched ones: typ about client
// id with arg, and for ipc.MsgAccepted the client's address and accept
// time acc (the zero Accept otherwise).
func (s *Sender) Now(typ byte, id uint64, arg uint8, acc ipc.Accept) {
	if s == nil {
		return
	}
	var a [36]byte
	b := ipc.AppendReport(a[:0], typ, id, arg, acc)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batch) > 0 {
		s.batch = append(s.batch, b...)
		s.flushLocked()
		return
	}
	s.flushLocked() // the lazy packets (LazyPacket) first
	s.c.WriteMsgUnix(b, nil, nil)
}

// Lazy batches a report (the arguments are Now's) that the supervisor
// does not need at once: a batch goes out within 20 ms, when it holds
// about 4000 bytes, or before the next urgent report. The supervisor's
// view of which processes are full, and of every client of a full
// process, therefore stays exact, and that is all that decides
// spawning and eviction.
func (s *Sender) Lazy(typ byte, id uint64, arg uint8, acc ipc.Accept) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batch) == 0 {
		s.batch = append(s.batch, ipc.MsgBatch)
		if len(s.queued) == 0 {
			time.AfterFunc(delay, s.Flush)
		}
	}
	s.batch = ipc.AppendReport(s.batch, typ, id, arg, acc)
	if len(s.batch) >= maxBatch {
		s.flushLocked()
	}
}

// LazyPacket queues packet b (ipc.MsgLogin) to go on its own within
// 20 ms, with the batched reports and after those made before it: a
// plaintext client's login, which no decision of the supervisor waits
// for, costs the supervisor no wake-up of its own (the client's close
// follows in the same flush); a TLS client's goes at once, with the
// urgent ipc.StateProxying report that follows it. b is the Sender's.
func (s *Sender) LazyPacket(b []byte) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batch) == 0 && len(s.queued) == 0 {
		time.AfterFunc(delay, s.Flush)
	}
	if len(s.batch) > 1 {
		s.queued = append(s.queued, s.batch)
		s.batch, s.spare = s.spare, nil
	}
	s.batch = s.batch[:0]
	s.queued = append(s.queued, b)
}

// Flush sends the batched reports now (before the process exits, or
// the supervisor would never learn of its last clients).
func (s *Sender) Flush() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

func (s *Sender) flushLocked() {
	for i, b := range s.queued {
		s.c.WriteMsgUnix(b, nil, nil)
		if b[0] == ipc.MsgBatch && s.spare == nil {
			s.spare = b[:0]
		}
		s.queued[i] = nil
	}
	s.queued = s.queued[:0]
	if len(s.batch) > 1 {
		s.c.WriteMsgUnix(s.batch, nil, nil)
	}
	s.batch = s.batch[:0]
}
