package chunk

import (
	"slices"
	"strings"
)

// TextBlock is the size of the blocks Text keeps its strings in. An
// offset addresses a block with 16 bits, so a Text holds at most
// MaxTextBlocks of them (4 GiB).
const (
	TextBlock     = 64 << 10
	MaxTextBlocks = 1 << 16
)

// Text keeps strings (a table's rule lines) in blocks of TextBlock bytes
// rather than one allocation each. A string never crosses a block; a
// block only grows after the strings it holds, so they never change. The
// zero value is empty.
type Text struct {
	blocks []string
	b      strings.Builder
	// SizeHint, if set, bounds the first block: the size of the whole
	// text if known (a short table takes no 64 KiB).
	SizeHint int64
}

// Add copies s into the text and returns its offset: the block in the
// upper 16 bits, the position in it in the lower 16. It returns false
// when the text holds MaxTextBlocks blocks already. s must not be longer
// than TextBlock.
func (a *Text) Add(s string) (uint32, bool) {
	if a.b.Len()+len(s) > min(a.b.Cap(), TextBlock) {
		if len(a.blocks) == MaxTextBlocks {
			return 0, false
		}
		n := int64(TextBlock)
		if len(a.blocks) == 0 {
			n = min(n, max(a.SizeHint, 256))
		}
		a.b = strings.Builder{}
		a.b.Grow(max(int(n), len(s)))
		a.blocks = append(a.blocks, "")
	}
	off := uint32(len(a.blocks)-1)<<16 | uint32(a.b.Len())
	a.b.WriteString(s)
	a.blocks[len(a.blocks)-1] = a.b.String()
	return off, true
}

// From returns the text from offset off to the end of its block.
func (a *Text) From(off uint32) string { return a.blocks[off>>16][off&0xffff:] }

// Finish ends adding: it releases what only adding needs. Add must not
// be called after it.
func (a *Text) Finish() {
	a.b = strings.Builder{}
	a.blocks = slices.Clip(a.blocks)
}
