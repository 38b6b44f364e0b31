// Package xgets reads a table's logical lines exactly as Debian 12's
// libwrap 7.6.q does: its xgets over fgets(3) on a 2048-byte buffer, with
// backslash-newline continuations, strlen's view of NUL bytes and
// Debian's stop on a full buffer (fix_parsing_long_lines), counting
// physical lines as tcpd_context.line does.
package xgets

import "io"

// BufSize is libwrap's logical line buffer (BUFLEN 2048): a logical
// line holds at most 2046 characters plus its newline.
const BufSize = 2048

// ReadChunk is how much of a file a Reader over an io.Reader reads at a
// time.
const ReadChunk = 64 << 10

// Reader emulates libwrap's xgets over fgets on a 2048-byte buffer,
// including strlen's view of NUL bytes and Debian's stop on a full buffer.
// It reads from bytes in memory (FromBytes), or from an io.Reader through a
// window of ReadChunk bytes (New), so a table is never held in memory
// whole.
type Reader struct {
	data []byte
	pos  int
	line int // physical lines read so far (tcpd_context.line)
	// newlines is the count of newline bytes consumed (line counts only
	// those fgets's strlen sees), and pieceLine the true 1-based line of
	// the last piece read: where an unterminated or over-long line is.
	newlines, pieceLine int

	src  io.Reader
	win  []byte // the window data lives in when src is set
	err  error  // the first error of src (io.EOF at the end)
	read int64  // bytes read from src
}

// fill makes at least BufSize bytes available after pos, unless src
// has ended.
func (r *Reader) fill() {
	if r.src == nil || r.err != nil || len(r.data)-r.pos >= BufSize {
		return
	}
	if r.win == nil {
		r.win = make([]byte, ReadChunk)
	}
	n := copy(r.win, r.data[r.pos:])
	r.data, r.pos = r.win[:n], 0
	for len(r.data) < BufSize && r.err == nil {
		m, err := r.src.Read(r.win[len(r.data):])
		r.data = r.win[:len(r.data)+m]
		r.read += int64(m)
		r.err = err
	}
}

// Next returns the next logical line, or ok=false at the end of the table.
// The line is only valid until the next call.
func (r *Reader) Next() (buf []byte, ok bool) {
	room := BufSize
	for {
		r.fill()
		if r.pos >= len(r.data) {
			break
		}
		// fgets reads at most room-1 bytes, up to and including a newline.
		limit := room - 1
		if limit <= 0 {
			break
		}
		end := r.pos + limit
		if end > len(r.data) {
			end = len(r.data)
		}
		chunk := r.data[r.pos:end]
		if i := indexByte(chunk, '\n'); i >= 0 {
			chunk = chunk[:i+1]
		}
		r.pos += len(chunk)
		r.pieceLine = r.newlines + 1
		if chunk[len(chunk)-1] == '\n' {
			r.newlines++
		}
		// strlen: a NUL byte ends the string early.
		got := len(chunk)
		if i := indexByte(chunk, 0); i >= 0 {
			got = i
		}
		if got >= 1 && chunk[got-1] == '\n' {
			r.line++
			if got >= 2 && chunk[got-2] == '\\' {
				got -= 2 // continuation: drop backslash-newline, read on
			} else {
				if buf == nil {
					return chunk[:got], true // the common case: no copy
				}
				return append(buf, chunk[:got]...), true
			}
		}
		buf = append(buf, chunk[:got]...)
		room -= got
		if room <= 1 {
			break // buffer full (Debian fix_parsing_long_lines)
		}
	}
	if len(buf) == 0 {
		return nil, false
	}
	return buf, true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// FromBytes returns a Reader of data.
func FromBytes(data []byte) *Reader { return &Reader{data: data} }

// New returns a Reader of src, which it reads ReadChunk bytes at a time.
func New(src io.Reader) *Reader { return &Reader{src: src} }

// Line returns the number of physical lines read so far, as libwrap counts
// them (tcpd_context.line): the line a rule is reported at.
func (r *Reader) Line() int { return r.line }

// PieceLine returns the true 1-based line of the last piece read: where an
// unterminated or over-long line is.
func (r *Reader) PieceLine() int { return r.pieceLine }

// Err returns the first error of the io.Reader (io.EOF at its end), or nil.
func (r *Reader) Err() error { return r.err }

// BytesRead returns the number of bytes read from the io.Reader.
func (r *Reader) BytesRead() int64 { return r.read }
