// Command policybench drives a Dovecot auth policy server or a Postfix
// policy service over persistent connections, as Dovecot and Postfix
// talk to them, and reports requests per second and latency percentiles;
// it also runs the null responders it is compared against.
//
// Usage:
//
//	policybench run -proto authpolicy|postfix -addr ADDR [-target NAME] [-rules N]
//	    [-workers 4] [-duration 5s] [-count N] [-warmup 500ms] [-client 127.0.0.1]
//	    [-wait 10s] [-expect allow|deny] [-server-pid PID]
//	policybench null -proto authpolicy|postfix -listen ADDR [-addr-file FILE]
//	policybench report [FILE...]
//
// ADDR is HOST:PORT or a unix socket path. "run" prints one human line on
// stderr and one JSON line (a Result, see bench/internal/policybench) on
// stdout; with -expect it exits 1 unless every request got that verdict.
// "null" serves the null responder of the protocol (port 0: any; the
// address is written to -addr-file) until SIGINT or SIGTERM. "report"
// reads JSON lines (files or stdin) and prints the side-by-side tables.
// Exit status: 0 ok, 1 failure, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/bench/internal/accessbench"
	"github.com/tcpwrapd/tcpwrapd/bench/internal/policybench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "policybench: usage: policybench run|null|report ...")
		return 2
	}
	switch args[0] {
	case "run":
		return measure(ctx, args[1:], stdout, stderr)
	case "null":
		return null(ctx, args[1:], stderr)
	case "report":
		return report(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "policybench: unknown command %q (run, null, report)\n", args[0])
	return 2
}

func measure(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policybench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg policybench.Config
	fs.StringVar(&cfg.Proto, "proto", "", "authpolicy or postfix (required)")
	fs.StringVar(&cfg.Addr, "addr", "", "HOST:PORT or unix socket path (required)")
	fs.StringVar(&cfg.Target, "target", "", "target label for the result (tcpwrapd, null, python)")
	fs.IntVar(&cfg.Rules, "rules", 0, "rule-size label for the result (hosts.deny lines)")
	fs.IntVar(&cfg.Workers, "workers", 4, "concurrent clients, one connection each")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measured duration (0: only -count)")
	fs.Int64Var(&cfg.Count, "count", 0, "stop after this many measured requests (0: only -duration)")
	fs.DurationVar(&cfg.Warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up before measuring")
	fs.StringVar(&cfg.Client, "client", "127.0.0.1", "client address named in the requests")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "timeout per request")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "report this process's CPU time per request")
	wait := fs.Duration("wait", 0, "first wait up to this long for the service to answer")
	expect := fs.String("expect", "", "exit 1 unless every request got this verdict (allow or deny)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.Proto == "" || cfg.Addr == "" || fs.NArg() != 0 || (*expect != "" && *expect != "allow" && *expect != "deny") {
		fmt.Fprintln(stderr, "policybench: usage: policybench run -proto authpolicy|postfix -addr ADDR [flags]; see -h")
		return 2
	}
	if *wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, *wait)
		err := policybench.WaitReady(wctx, cfg)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "policybench: %v\n", err)
			return 1
		}
	}
	res, err := policybench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "policybench: %v\n", err)
		return 1
	}
	return accessbench.Emit(stdout, stderr, "policybench", res, accessbench.Counts{Allowed: res.Allowed, Denied: res.Denied, Errors: res.Errors}, *expect)
}

func null(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("policybench null", flag.ContinueOnError)
	fs.SetOutput(stderr)
	proto := fs.String("proto", "", "authpolicy or postfix (required)")
	listen := fs.String("listen", "", "HOST:PORT (port 0: any) or unix socket path (required)")
	addrFile := fs.String("addr-file", "", "write the listening address to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	serve := map[string]func(context.Context, net.Listener) error{
		policybench.ProtoAuthPolicy: policybench.ServeNullHTTP,
		policybench.ProtoPostfix:    policybench.ServeNullPostfix,
	}[*proto]
	if serve == nil || *listen == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "policybench: usage: policybench null -proto authpolicy|postfix -listen ADDR [-addr-file FILE]")
		return 2
	}
	network := "tcp"
	if strings.HasPrefix(*listen, "/") {
		network = "unix"
	}
	ln, err := net.Listen(network, *listen)
	if err != nil {
		fmt.Fprintf(stderr, "policybench: %v\n", err)
		return 1
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "policybench: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "policybench: null %s responder listening on %s\n", *proto, ln.Addr())
	if err := serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "policybench: %v\n", err)
		return 1
	}
	return 0
}

func report(files []string, stdout, stderr io.Writer) int {
	all, err := accessbench.ReadJSONFiles[policybench.Result](files, os.Stdin)
	if err == nil {
		err = policybench.Report(stdout, all)
	}
	if err != nil {
		fmt.Fprintf(stderr, "policybench: %v\n", err)
		return 1
	}
	return 0
}
