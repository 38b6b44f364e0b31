// Command nullresponder is an access-check service that answers "1\n" to
// every request without evaluating anything and closes the passed fd at
// once: the floor against which tcpwrapd is measured.
//
// Usage:
//
//	nullresponder --listen PATH [--socket-mode 0600] [--raw [--threads 4]]
//
// By default it serves with the standard net package (one goroutine per
// connection), as an idiomatic Go service would; --raw uses blocking system
// calls on a few threads instead. It runs until SIGINT or SIGTERM and then
// removes the socket.
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
	"strconv"
	"syscall"

	"github.com/tcpwrapd/tcpwrapd/bench/internal/accessbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("nullresponder", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("listen", "", "unix socket path to create (required)")
	modeText := fs.String("socket-mode", "0600", "permissions of the socket (octal)")
	raw := fs.Bool("raw", false, "serve with blocking system calls instead of the net package")
	threads := fs.Int("threads", 4, "with --raw: accepting threads")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	mode, err := strconv.ParseUint(*modeText, 8, 32)
	if *path == "" || fs.NArg() != 0 || err != nil {
		fmt.Fprintln(stderr, "nullresponder: usage: nullresponder --listen PATH [--socket-mode 0600] [--raw]")
		return 2
	}
	if err := serve(ctx, *path, os.FileMode(mode), *raw, *threads); err != nil {
		fmt.Fprintf(stderr, "nullresponder: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, path string, mode os.FileMode, raw bool, threads int) error {
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		os.Remove(path) // stale socket from an earlier run
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return err
	}
	if !raw {
		return accessbench.ServeNull(ctx, ln)
	}
	// Hand a blocking dup of the listening fd to the raw server; the
	// net.UnixListener stays open only to unlink the socket at the end.
	defer ln.Close()
	f, err := ln.File()
	if err != nil {
		return err
	}
	lfd := int(f.Fd()) // Fd puts the fd in blocking mode
	nfd, err := syscall.Dup(lfd)
	f.Close()
	if err != nil {
		return err
	}
	return accessbench.ServeNullRaw(ctx, nfd, threads)
}
