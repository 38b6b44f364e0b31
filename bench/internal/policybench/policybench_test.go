package policybench

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// serve runs serve on a new listener (loopback TCP, or a unix socket
// when unix is set) until the test ends, and returns its address.
func serve(t *testing.T, unix bool, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	network, addr := "tcp", "127.0.0.1:0"
	if unix {
		network, addr = "unix", filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestRunNull drives both null responders: every request is answered,
// allowed, over the workers' persistent connections.
func TestRunNull(t *testing.T) {
	for _, tt := range []struct {
		proto string
		unix  bool
		serve func(context.Context, net.Listener) error
	}{
		{ProtoAuthPolicy, false, ServeNullHTTP},
		{ProtoPostfix, true, ServeNullPostfix},
		{ProtoPostfix, false, ServeNullPostfix},
	} {
		addr := serve(t, tt.unix, tt.serve)
		r, err := Run(context.Background(), Config{Proto: tt.proto, Addr: addr, Workers: 3, Count: 300, Target: "null", Rules: 1})
		if err != nil {
			t.Fatalf("%s %s: %v", tt.proto, addr, err)
		}
		got := [4]int64{r.Requests, r.Allowed, r.Denied, r.Errors}
		if diff := cmp.Diff([4]int64{300, 300, 0, 0}, got); diff != "" {
			t.Errorf("%s: requests, allowed, denied, errors (-want +got):\n%s\nfirst error: %s", tt.proto, diff, r.FirstError)
		}
		if r.P99US <= 0 || r.P50US > r.P99US || r.P99US > r.MaxUS {
			t.Errorf("%s: latencies p50 %v p99 %v max %v", tt.proto, r.P50US, r.P99US, r.MaxUS)
		}
	}
}

// TestRunVerdicts: denials are counted as such; a reply the client
// cannot use, or a server that closes the keep-alive connection, is an
// error.
func TestRunVerdicts(t *testing.T) {
	for _, tt := range []struct {
		name, proto string
		handler     http.HandlerFunc
		postfix     string
		want        [3]int64 // allowed, denied, errors
	}{
		{name: "http deny", proto: ProtoAuthPolicy, handler: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"status":-1,"msg":"no"}`)
		}, want: [3]int64{0, 5, 0}},
		{name: "http close", proto: ProtoAuthPolicy, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, `{"status":0}`)
		}, want: [3]int64{0, 0, 5}},
		{name: "http 500", proto: ProtoAuthPolicy, handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "x", http.StatusInternalServerError)
		}, want: [3]int64{0, 0, 5}},
		{name: "postfix reject", proto: ProtoPostfix, postfix: "action=REJECT no\n\n", want: [3]int64{0, 5, 0}},
		{name: "postfix 521", proto: ProtoPostfix, postfix: "action=521 5.7.1 no\n\n", want: [3]int64{0, 5, 0}},
		{name: "postfix OK", proto: ProtoPostfix, postfix: "action=OK\n\n", want: [3]int64{0, 0, 5}},
	} {
		var addr string
		if tt.handler != nil {
			addr = serve(t, false, func(ctx context.Context, ln net.Listener) error {
				hs := &http.Server{Handler: tt.handler}
				go func() { <-ctx.Done(); hs.Close() }()
				hs.Serve(ln)
				return nil
			})
		} else {
			addr = serve(t, true, func(ctx context.Context, ln net.Listener) error {
				go func() { <-ctx.Done(); ln.Close() }()
				for {
					c, err := ln.Accept()
					if err != nil {
						return nil
					}
					go func() {
						defer c.Close()
						buf := make([]byte, 4096)
						var got []byte
						for {
							n, err := c.Read(buf)
							if err != nil {
								return
							}
							if got = append(got, buf[:n]...); bytes.HasSuffix(got, []byte("\n\n")) {
								got = got[:0]
								io.WriteString(c, tt.postfix)
							}
						}
					}()
				}
			})
		}
		r, err := Run(context.Background(), Config{Proto: tt.proto, Addr: addr, Workers: 1, Count: 5, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, [3]int64{r.Allowed, r.Denied, r.Errors}); diff != "" {
			t.Errorf("%s: allowed, denied, errors (-want +got):\n%s\nfirst error: %s", tt.name, diff, r.FirstError)
		}
	}
}

// TestReport: the ratios to the null responder and the goal verdicts.
func TestReport(t *testing.T) {
	rs := []*Result{
		{Proto: ProtoAuthPolicy, Target: TargetNull, Rules: 1, Workers: 4, Rate: 1000, P99US: 500},
		{Proto: ProtoAuthPolicy, Target: TargetOurs, Rules: 1, Workers: 4, Rate: 950, P99US: 900},
		{Proto: ProtoAuthPolicy, Target: TargetPython, Rules: 1, Workers: 4, Rate: 95, P99US: 9000},
		{Proto: ProtoPostfix, Target: TargetNull, Rules: 1, Workers: 4, Rate: 1000, P99US: 500},
		{Proto: ProtoPostfix, Target: TargetOurs, Rules: 1, Workers: 4, Rate: 800, P99US: 900},
		{Proto: ProtoPostfix, Target: TargetNull, Rules: 1, Workers: 64, Rate: 1000, P99US: 5000},
		{Proto: ProtoPostfix, Target: TargetOurs, Rules: 1, Workers: 64, Rate: 950, P99US: 6000},
	}
	var b strings.Builder
	if err := Report(&b, rs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"authpolicy        1       4      0.95x          10x     900µs     500µs      0  PASS",
		"postfix           1       4      0.80x            -     900µs     500µs      0  FAIL",
		"postfix           1      64      0.95x            -    6.00ms    5.00ms      0  PASS", // p99 goal at 4 clients only
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestReadResults: JSON lines round-trip; other lines are skipped.
func TestReadResults(t *testing.T) {
	in := "policybench: a human line\n" + `{"schema":1,"proto":"postfix","target":"null","rules":1,"workers":4,"requests_per_sec":10}` + "\n"
	rs, err := ReadResults(strings.NewReader(in))
	if err != nil || len(rs) != 1 {
		t.Fatalf("%v, %v", rs, err)
	}
	if diff := cmp.Diff(&Result{Schema: 1, Proto: ProtoPostfix, Target: TargetNull, Rules: 1, Workers: 4, Rate: 10}, rs[0]); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
