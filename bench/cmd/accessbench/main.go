// Command accessbench drives a Dovecot 2.3 login access-check socket
// (Dovecot's tcpwrap, tcpwrapd, or nullresponder) the way imap-login does
// and reports checks per second and latency percentiles.
//
// Usage:
//
//	accessbench run -socket PATH [-target NAME] [-rules N] [-workers 4]
//	    [-duration 5s] [-count N] [-warmup 500ms] [-src 127.0.0.1]
//	    [-fresh] [-name imap] [-wait 10s] [-expect allow|deny] [-server-pid PID]
//	accessbench report [FILE...]
//
// "run" prints one human line on stderr and one JSON line (a Result, see
// bench/internal/accessbench) on stdout. With -expect it exits 1 unless
// every check got that verdict. "report" reads JSON lines (files or stdin)
// and prints the side-by-side tables. Exit status: 0 ok, 1 failure, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/bench/internal/accessbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "report" {
		return report(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("accessbench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg accessbench.Config
	fs.StringVar(&cfg.Socket, "socket", "", "access socket path (required)")
	fs.StringVar(&cfg.Target, "target", "", "target label for the result (tcpwrapd, dovecot, null)")
	fs.IntVar(&cfg.Rules, "rules", 0, "rule-size label for the result (hosts.deny lines)")
	fs.StringVar(&cfg.Name, "name", "imap", "protocol name sent as the request")
	fs.IntVar(&cfg.Workers, "workers", 4, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measured duration (0: only -count)")
	fs.Int64Var(&cfg.Count, "count", 0, "stop after this many measured checks (0: only -duration)")
	fs.DurationVar(&cfg.Warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up before measuring")
	src := fs.String("src", "127.0.0.1", "client address of the passed TCP sockets (loopback)")
	fs.BoolVar(&cfg.Fresh, "fresh", false, "dial a new TCP connection for every check (not timed) instead of reusing one per worker")
	fs.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "reply timeout per check")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "report this process's CPU time (plus its reaped children's) per check")
	wait := fs.Duration("wait", 0, "first wait up to this long for the socket to answer")
	expect := fs.String("expect", "", "exit 1 unless every check got this verdict (allow or deny)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.Socket == "" || fs.NArg() != 0 || (*expect != "" && *expect != "allow" && *expect != "deny") {
		fmt.Fprintln(stderr, "accessbench: usage: accessbench run -socket PATH [flags]; see -h")
		return 2
	}
	a, err := netip.ParseAddr(*src)
	if err != nil {
		fmt.Fprintf(stderr, "accessbench: -src: %v\n", err)
		return 2
	}
	cfg.Source = a
	if *wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, *wait)
		err := accessbench.WaitReady(wctx, cfg.Socket, cfg.Name)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "accessbench: %v\n", err)
			return 1
		}
	}
	res, err := accessbench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "accessbench: %v\n", err)
		return 1
	}
	return accessbench.Emit(stdout, stderr, "accessbench", res, accessbench.Counts{Allowed: res.Allowed, Denied: res.Denied, Errors: res.Errors}, *expect)
}

func report(files []string, stdout, stderr io.Writer) int {
	all, err := accessbench.ReadJSONFiles[accessbench.Result](files, os.Stdin)
	if err == nil {
		err = accessbench.Report(stdout, all)
	}
	if err != nil {
		fmt.Fprintf(stderr, "accessbench: %v\n", err)
		return 1
	}
	return 0
}
