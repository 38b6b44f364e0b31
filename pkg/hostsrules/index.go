package hostsrules

// tableIndex finds the first matching rule of a table.
type tableIndex struct {
	n int
}

func buildIndex(t *table) *tableIndex { return &tableIndex{n: len(t.rules)} }

// first returns the index of the first rule for which match is true.
func (ix *tableIndex) first(c *check, match func(int) bool) (int, bool) {
	for i := 0; i < ix.n; i++ {
		if match(i) {
			return i, true
		}
	}
	return 0, false
}
