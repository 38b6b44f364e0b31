package logind

import (
	"bytes"
	"errors"
	"io"
)

// errInputFull: the input buffer holds MaxInputLine unconsumed bytes and
// the command needs more ("Input buffer full" in Dovecot).
var errInputFull = errors.New("input buffer full")

// inbuf is a client's input buffer, Dovecot's login input stream: a
// window of MaxInputLine bytes over the connection. Readers look at the
// unconsumed bytes (data), consume what they have parsed (skip) and ask
// for more (fill); a command whose current piece does not fit in the
// window fails with errInputFull. The IMAP reader consumes a command
// piece by piece, so with literals a command may be longer than the
// window; the line protocols need a whole line in it (line).
//
// An inbuf is used by the client's serving goroutine only.
type inbuf struct {
	src io.Reader
	// out, if set, is flushed before each read from src: the client's
	// corked replies go out before the process waits for input.
	out  interface{ flush() error }
	buf  []byte
	r, w int   // unconsumed bytes are buf[r:w]
	off  int64 // stream offset of buf[r]
}

func newInbuf(src io.Reader) *inbuf {
	return &inbuf{src: src, buf: make([]byte, MaxInputLine)}
}

// data is the unconsumed input; it is valid until the next fill.
func (b *inbuf) data() []byte { return b.buf[b.r:b.w] }

// skip consumes n bytes of data.
func (b *inbuf) skip(n int) {
	b.r += n
	b.off += int64(n)
}

// fill reads more input: it returns once at least one more byte is in
// data, or with the read error (io.EOF, a deadline, ...) or out's, or
// with errInputFull if the window is full of unconsumed bytes. Offsets into
// data stay valid across fill (the unconsumed bytes move to the start).
func (b *inbuf) fill() error {
	if b.r > 0 {
		copy(b.buf, b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	if b.w == len(b.buf) {
		return errInputFull
	}
	if b.out != nil {
		if err := b.out.flush(); err != nil {
			return err
		}
	}
	for range 100 {
		n, err := b.src.Read(b.buf[b.w:])
		b.w += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// need makes data at least n bytes long (n <= the window).
func (b *inbuf) need(n int) error {
	for b.w-b.r < n {
		if err := b.fill(); err != nil {
			return err
		}
	}
	return nil
}

// line consumes and returns the next line, LF included; it is valid
// until the next fill. A line longer than the window is errInputFull.
func (b *inbuf) line() ([]byte, error) {
	for i := 0; ; {
		if j := bytes.IndexByte(b.buf[b.r+i:b.w], '\n'); j >= 0 {
			l := b.buf[b.r : b.r+i+j+1]
			b.skip(i + j + 1)
			return l, nil
		}
		i = b.w - b.r // searched already
		if err := b.fill(); err != nil {
			return nil, err
		}
	}
}

// full reports whether the window is full of unconsumed bytes.
func (b *inbuf) full() bool { return b.w-b.r == len(b.buf) }

// discard drops the unconsumed input (plaintext pipelined after
// STARTTLS/STLS).
func (b *inbuf) discard() { b.skip(b.w - b.r) }

// grow makes the window at least n bytes (an IMAP AUTHENTICATE line may
// be longer than MaxInputLine); shrink returns it to MaxInputLine if
// what is unconsumed fits.
func (b *inbuf) grow(n int) {
	if len(b.buf) < n {
		nb := make([]byte, n)
		b.w = copy(nb, b.buf[b.r:b.w])
		b.r, b.buf = 0, nb
	}
}

func (b *inbuf) shrink() {
	if len(b.buf) > MaxInputLine && b.w-b.r <= MaxInputLine {
		nb := make([]byte, MaxInputLine)
		b.w = copy(nb, b.buf[b.r:b.w])
		b.r, b.buf = 0, nb
	}
}
