package dovecotlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultStopGrace is how long [Process.Stop] waits after SIGTERM before
// it sends SIGKILL.
const DefaultStopGrace = 5 * time.Second

// Process is a child process started by the harness, with its stdout and
// stderr captured to a file.
//
// A Process is safe for concurrent use.
type Process struct {
	// Name is a short label used in messages ("dovecot", "tcpwrapd").
	Name string
	// OutputPath is the file that receives the process's stdout and stderr.
	OutputPath string
	// Grace is how long Stop waits after SIGTERM before it sends SIGKILL.
	// Zero means DefaultStopGrace.
	Grace time.Duration

	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// StartProcess starts cmd with stdout and stderr appended to outputPath,
// in a new process group, with SIGTERM as its parent-death signal (so a
// crashed test binary does not leave it running), and registers
// [Process.Stop] with t.Cleanup. Fields of cmd.SysProcAttr other than
// Setpgid and Pdeathsig are kept.
//
// It returns an error if the output file cannot be created or the process
// cannot be started.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd, outputPath string) (*Process, error) {
	t.Helper()
	out, err := os.OpenFile(outputPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer out.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, OutputPath: outputPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop %s: %v", name, err)
		}
	})
	return p, nil
}

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done returns a channel that is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and if so its wait error
// (nil for exit status 0).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Output returns what the process has written to stdout and stderr so
// far, or "" if the file cannot be read.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.OutputPath)
	return string(b)
}

// Signal sends sig to the process if it is still running.
func (p *Process) Signal(sig os.Signal) error {
	if done, _ := p.Exited(); done {
		return os.ErrProcessDone
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM to the process, waits up to Grace for it to exit,
// then sends SIGKILL to it and to every descendant and process-group
// member that is still alive (descendants are recorded before the SIGTERM,
// so processes re-parented to init are still found; each is identified by
// PID and start time, so a reused PID is never hit).
//
// Stop returns nil when the process exited after SIGTERM (whatever its
// exit status), or an error that says what had to be killed. Calling Stop
// again returns the first result. It is safe for concurrent use.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Process) stop() error {
	grace := p.Grace
	if grace <= 0 {
		grace = DefaultStopGrace
	}
	pid := p.PID()
	family := descendants(pid) // before SIGTERM: the tree still hangs together
	if done, _ := p.Exited(); !done {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	select {
	case <-p.done:
	case <-time.After(grace):
		errs = append(errs, fmt.Errorf("%s (pid %d) still running %v after SIGTERM; killed", p.Name, pid, grace))
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	// Children get a moment to follow their parent out.
	deadline := time.Now().Add(grace)
	for {
		family = append(family, groupMembers(pid)...)
		alive := aliveOnly(family)
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pr := range alive {
				pr.kill()
			}
			errs = append(errs, fmt.Errorf("%s: killed %d leftover process(es): %v", p.Name, len(alive), alive))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.Join(errs...)
}

// proc identifies a process by PID and start time (clock ticks since
// boot), which together are unique.
type proc struct {
	pid   int
	start uint64
	comm  string
}

func (pr proc) String() string { return fmt.Sprintf("%d(%s)", pr.pid, pr.comm) }

// kill sends SIGKILL if pr is still the same process.
func (pr proc) kill() {
	if st, err := readStat(pr.pid); err == nil && st.start == pr.start {
		_ = syscall.Kill(pr.pid, syscall.SIGKILL)
	}
}

type stat struct {
	proc
	state byte
	ppid  int
	pgid  int
}

// readStat parses /proc/PID/stat.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	s := string(b)
	lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if lp < 0 || rp < lp {
		return stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[rp+1:])
	// f[0]=state f[1]=ppid f[2]=pgrp ... f[19]=starttime (field 22)
	if len(f) < 20 {
		return stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	st := stat{proc: proc{pid: pid, comm: s[lp+1 : rp]}, state: f[0][0]}
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgid, _ = strconv.Atoi(f[2])
	st.start, _ = strconv.ParseUint(f[19], 10, 64)
	return st, nil
}

// allStats returns the stat of every process in /proc.
func allStats() []stat {
	ents, _ := os.ReadDir("/proc")
	var out []stat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// descendants returns the live descendants of pid (not pid itself).
func descendants(pid int) []proc {
	children := map[int][]stat{}
	for _, st := range allStats() {
		children[st.ppid] = append(children[st.ppid], st)
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if c.state != 'Z' {
				out = append(out, c.proc)
			}
			queue = append(queue, c.pid)
		}
	}
	return out
}

// groupMembers returns the live processes of process group pgid.
func groupMembers(pgid int) []proc {
	var out []proc
	for _, st := range allStats() {
		if st.pgid == pgid && st.state != 'Z' {
			out = append(out, st.proc)
		}
	}
	return out
}

// aliveOnly returns the processes of ps that still exist (same PID and
// start time, not a zombie), without duplicates.
func aliveOnly(ps []proc) []proc {
	seen := map[proc]bool{}
	var out []proc
	for _, pr := range ps {
		if seen[pr] {
			continue
		}
		seen[pr] = true
		st, err := readStat(pr.pid)
		if err != nil || st.start != pr.start || st.state == 'Z' {
			continue
		}
		out = append(out, pr)
	}
	return out
}
