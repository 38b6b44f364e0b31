package login

import (
	"bytes"
	"errors"
	"io"
)

// ErrInputFull: the input buffer holds MaxInputLine unconsumed bytes and
// the command needs more ("Input buffer full" in Dovecot).
var ErrInputFull = errors.New("input buffer full")

// ErrAuthTooLarge: an authentication response longer than a protocol
// allows (Dovecot's LOGIN_MAX_AUTH_BUF_SIZE); the client is dropped
// without a reply.
var ErrAuthTooLarge = errors.New("authentication response too large")

// Input is a client's input buffer, Dovecot's login input stream: a
// window of MaxInputLine bytes over the connection. Readers look at the
// unconsumed bytes (data), consume what they have parsed (skip) and ask
// for more (fill); a command whose current piece does not fit in the
// window fails with ErrInputFull. The IMAP reader consumes a command
// piece by piece, so with literals a command may be longer than the
// window; the line protocols need a whole line in it (line).
//
// An Input is used by the client's serving goroutine only.
type Input struct {
	src io.Reader
	// out, if set, is flushed before each read from src: the client's
	// corked replies go out before the process waits for input.
	out  interface{ Flush() error }
	buf  []byte
	r, w int   // unconsumed bytes are buf[r:w]
	off  int64 // stream offset of buf[r]
	err  error // the first read error, returned by every Fill after it
}

// NewInput returns an input buffer reading from src.
func NewInput(src io.Reader) *Input {
	return &Input{src: src, buf: make([]byte, MaxInputLine)}
}

// Data is the unconsumed input; it is valid until the next fill.
func (b *Input) Data() []byte { return b.buf[b.r:b.w] }

// Skip consumes n bytes of data.
func (b *Input) Skip(n int) {
	b.r += n
	b.off += int64(n)
}

// Fill reads more input: it returns once at least one more byte is in
// data, or with the read error (io.EOF, a deadline, ...) or out's, or
// with ErrInputFull if the window is full of unconsumed bytes. Offsets into
// data stay valid across fill (the unconsumed bytes move to the start).
//
// A read error stays: Fill returns it again without reading, so that
// whoever looks at the input first (a Session wrapping another, such as
// logintest's) does not change the error the next reader sees (a
// second read after a reset reports the end of stream instead).
func (b *Input) Fill() error {
	if b.r > 0 {
		copy(b.buf, b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	if b.w == len(b.buf) {
		return ErrInputFull
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
func (b *Input) Need(n int) error {
	for b.w-b.r < n {
		if err := b.Fill(); err != nil {
			return err
		}
	}
	return nil
}

// Line consumes and returns the next line, LF included; it is valid
// until the next fill. A line longer than the window is ErrInputFull.
func (b *Input) Line() ([]byte, error) {
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
func (b *Input) Full() bool { return b.w-b.r == len(b.buf) }

// Discard drops the unconsumed input (plaintext pipelined after
// STARTTLS/STLS).
func (b *Input) Discard() { b.Skip(b.w - b.r) }

// Grow makes the window at least n bytes (an IMAP AUTHENTICATE line may
// be longer than MaxInputLine); Shrink undoes it.
func (b *Input) Grow(n int) {
	if len(b.buf) < n {
		nb := make([]byte, n)
		b.w = copy(nb, b.buf[b.r:b.w])
		b.r, b.buf = 0, nb
	}
}

// Shrink returns the window to MaxInputLine if what is unconsumed fits.
func (b *Input) Shrink() {
	if len(b.buf) > MaxInputLine && b.w-b.r <= MaxInputLine {
		nb := make([]byte, MaxInputLine)
		b.w = copy(nb, b.buf[b.r:b.w])
		b.r, b.buf = 0, nb
	}
}

// Offset is the stream offset of the first unconsumed byte.
func (b *Input) Offset() int64 { return b.off }

// MaxAuthLine is Dovecot's LOGIN_MAX_AUTH_BUF_SIZE (8192): the longest
// SASL response a client may send, its CR counted, its LF not.
const MaxAuthLine = 8192

// AuthLine consumes and returns the next line as a SASL response (POP3's
// and SMTP's AUTH initial response and continuation lines): without its
// LF and a CR before it, up to MaxAuthLine bytes; a longer one is
// ErrAuthTooLarge (the client is dropped without a reply, as Dovecot's
// client_auth_read_line does).
func (b *Input) AuthLine() (string, error) {
	b.Grow(MaxAuthLine + 1)
	defer b.Shrink()
	l, err := b.Line()
	if errors.Is(err, ErrInputFull) {
		return "", ErrAuthTooLarge
	}
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(bytes.TrimSuffix(l, []byte("\n")), []byte("\r"))), nil
}
