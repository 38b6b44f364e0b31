// Package input is a login client's input buffer, Dovecot's login input
// stream: a window of MaxLine bytes over the connection that the
// pre-login protocols read their commands and SASL responses from
// (docs/loginsvc.md).
package input

import (
	"bytes"
	"errors"
	"io"
)

// MaxLine is the size of a client's input buffer in bytes (Dovecot's
// LOGIN_MAX_INBUF_SIZE, 1026): the longest POP3, submission or
// ManageSieve command line, CRLF included, and the longest piece of an
// IMAP command (tag, name, atom, quoted string, literal octets; a
// command with literals may be longer, up to 8192 bytes), before the
// client is dropped with "Input buffer full".
const MaxLine = 1026

// ErrFull: the input buffer holds MaxLine unconsumed bytes and the
// command needs more ("Input buffer full" in Dovecot).
var ErrFull = errors.New("input buffer full")

// ErrAuthTooLarge: an authentication response longer than a protocol
// allows (Dovecot's LOGIN_MAX_AUTH_BUF_SIZE); the client is dropped
// without a reply.
var ErrAuthTooLarge = errors.New("authentication response too large")

// Buffer is a client's input buffer: a window of MaxLine bytes over the
// connection. Readers look at the
// unconsumed bytes (data), consume what they have parsed (skip) and ask
// for more (fill); a command whose current piece does not fit in the
// window fails with ErrFull. The IMAP reader consumes a command
// piece by piece, so with literals a command may be longer than the
// window; the line protocols need a whole line in it (line).
//
// A Buffer is used by the client's serving goroutine only.
type Buffer struct {
	src io.Reader
	// out, if set, is flushed before each read from src: the client's
	// corked replies go out before the process waits for input.
	out  Flusher
	buf  []byte
	r, w int   // unconsumed bytes are buf[r:w]
	off  int64 // stream offset of buf[r]
	err  error // the first read error, returned by every Fill after it
}

// Flusher writes what is queued for the client (its corked replies).
type Flusher interface {
	// Flush writes the queued replies; its error is the write's.
	Flush() error
}

// New returns an input buffer reading from src; out, if not nil, is
// flushed before each read from src.
func New(src io.Reader, out Flusher) *Buffer {
	return &Buffer{src: src, out: out, buf: make([]byte, MaxLine)}
}

// Reset makes src the source of further input and forgets a read error
// (the TLS connection after STARTTLS, once the plaintext is discarded).
func (b *Buffer) Reset(src io.Reader) { b.src, b.err = src, nil }

// Data is the unconsumed input; it is valid until the next fill.
func (b *Buffer) Data() []byte { return b.buf[b.r:b.w] }

// Skip consumes n bytes of data.
func (b *Buffer) Skip(n int) {
	b.r += n
	b.off += int64(n)
}

// Fill reads more input: it returns once at least one more byte is in
// data, or with the read error (io.EOF, a deadline, ...) or out's, or
// with ErrFull if the window is full of unconsumed bytes. Offsets into
// data stay valid across fill (the unconsumed bytes move to the start).
//
// A read error stays: Fill returns it again without reading, so that
// whoever looks at the input first (a Session wrapping another, such as
// logintest's) does not change the error the next reader sees (a
// second read after a reset reports the end of stream instead).
func (b *Buffer) Fill() error {
	if b.r > 0 {
		copy(b.buf, b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	if b.w == len(b.buf) {
		return ErrFull
	}
	if b.out != nil {
		if err := b.out.Flush(); err != nil {
			return err
		}
	}
	if b.err != nil {
		return b.err
	}
	for range 100 {
		n, err := b.src.Read(b.buf[b.w:])
		b.w += n
		if n > 0 {
			return nil
		}
		if err != nil {
			b.err = err
			return err
		}
	}
	return io.ErrNoProgress
}

// Need makes data at least n bytes long (n <= the window).
func (b *Buffer) Need(n int) error {
	for b.w-b.r < n {
		if err := b.Fill(); err != nil {
			return err
		}
	}
	return nil
}

// Line consumes and returns the next line, LF included; it is valid
// until the next fill. A line longer than the window is ErrFull.
func (b *Buffer) Line() ([]byte, error) {
	for i := 0; ; {
		if j := bytes.IndexByte(b.buf[b.r+i:b.w], '\n'); j >= 0 {
			l := b.buf[b.r : b.r+i+j+1]
			b.Skip(i + j + 1)
			return l, nil
		}
		i = b.w - b.r // searched already
		if err := b.Fill(); err != nil {
			return nil, err
		}
	}
}

// Full reports whether the window is full of unconsumed bytes.
func (b *Buffer) Full() bool { return b.w-b.r == len(b.buf) }

// Discard drops the unconsumed input (plaintext pipelined after
// STARTTLS/STLS).
func (b *Buffer) Discard() { b.Skip(b.w - b.r) }

// Grow makes the window at least n bytes (an IMAP AUTHENTICATE line may
// be longer than MaxLine); Shrink undoes it.
func (b *Buffer) Grow(n int) {
	if len(b.buf) < n {
		nb := make([]byte, n)
		b.w = copy(nb, b.buf[b.r:b.w])
		b.r, b.buf = 0, nb
	}
}

// Shrink returns the window to MaxLine if what is unconsumed fits.
func (b *Buffer) Shrink() {
	if len(b.buf) > MaxLine && b.w-b.r <= MaxLine {
		nb := make([]byte, MaxLine)
		b.w = copy(nb, b.buf[b.r:b.w])
		b.r, b.buf = 0, nb
	}
}

// Offset is the stream offset of the first unconsumed byte.
func (b *Buffer) Offset() int64 { return b.off }

// MaxAuthLine is Dovecot's LOGIN_MAX_AUTH_BUF_SIZE (8192): the longest
// SASL response a client may send, its CR counted, its LF not.
const MaxAuthLine = 8192

// AuthResponse reads a SASL continuation line of the line protocols
// (POP3, submission) with AuthLine; cancel reports the client's "*".
func (b *Buffer) AuthResponse() (resp string, cancel bool, err error) {
	l, err := b.AuthLine()
	return l, err == nil && l == "*", err
}

// AuthLine consumes and returns the next line as a SASL response (POP3's
// and SMTP's AUTH initial response and continuation lines): without its
// LF and a CR before it, up to MaxAuthLine bytes; a longer one is
// ErrAuthTooLarge (the client is dropped without a reply, as Dovecot's
// client_auth_read_line does).
func (b *Buffer) AuthLine() (string, error) {
	b.Grow(MaxAuthLine + 1)
	defer b.Shrink()
	l, err := b.Line()
	if errors.Is(err, ErrFull) {
		return "", ErrAuthTooLarge
	}
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(bytes.TrimSuffix(l, []byte("\n")), []byte("\r"))), nil
}
