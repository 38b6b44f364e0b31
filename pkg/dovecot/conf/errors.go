package conf

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is a position in a configuration file: the file name as given to
// the parser (or as found by !include) and the 1-based line number.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.File == "" {
		return fmt.Sprintf("line %d", p.Line)
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Error is one configuration error at a position, printed as
// "FILE:LINE: MESSAGE" like doveconf's.
type Error struct {
	Pos Pos
	Msg string

	seq int // discovery order (Node.Errorf, the parser); see ErrorList.Sort
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrorList is every error found in one parse, in the order found (the
// parser does not stop at the first one, as go/scanner's ErrorList).
type ErrorList []*Error

func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Err returns l as an error, or nil if l is empty.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Sort puts l in the order the parser came upon the errors: the syntax
// errors of Parse and the errors a schema reported at nodes
// (Node.Errorf), each file's lines in order and an !include's lines where
// the !include is. Errors made otherwise go last, in their order.
func (l ErrorList) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i].seq, l[j].seq
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
}
