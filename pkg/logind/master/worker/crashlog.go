package worker

import "bytes"

// CrashLines is how many lines of a login process's crash output are
// logged, from its "fatal error:" or "panic:" line on (see crashTrim).
const CrashLines = 50

// crashTrim bounds what the supervisor logs of a dying login process's
// crash output. GOTRACEBACK=none (ExecRunner sets it) keeps a panic's
// stacks out of the log, but a runtime throw ("fatal error: out of
// memory", "fatal error: runtime: ...") always prints every goroutine's
// stack, whatever GOTRACEBACK or debug.SetTraceback say: the runtime
// raises the traceback level for its own throws. A high-performance
// process that dies out of memory with thousands of clients would put
// some 180,000 lines into the log. The first CrashLines lines (the error
// and the failing goroutine's stack) are logged; the rest is read and
// counted, and summary tells how many were left out.
type crashTrim struct {
	crashed bool
	lines   int // lines since the crash began
}

// keep reports whether line is logged.
func (c *crashTrim) keep(line []byte) bool {
	if !c.crashed && (bytes.HasPrefix(line, []byte("fatal error:")) || bytes.HasPrefix(line, []byte("panic:"))) {
		c.crashed = true
	}
	if !c.crashed {
		return true
	}
	c.lines++
	return c.lines <= CrashLines
}

// dropped is the number of lines keep left out.
func (c *crashTrim) dropped() int { return max(0, c.lines-CrashLines) }
