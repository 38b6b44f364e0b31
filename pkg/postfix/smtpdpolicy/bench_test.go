package smtpdpolicy

import (
	"bufio"
	"context"
	"net"
	"testing"
)

// BenchmarkRequest: one request as Postfix 3.7 sends it (30 attributes)
// over a persistent loopback connection, against 1 rule and against a
// null responder that reads the block and answers DUNNO (the floor). With
// a sequential client ns/op is the round-trip latency.
func BenchmarkRequest(b *testing.B) {
	for _, tt := range []struct {
		name, client, want string
		null               bool
	}{
		{"granted", "127.0.0.1", "action=DUNNO\n\n", false},
		{"denied", "127.0.0.2", "action=REJECT Access denied\n\n", false},
		{"null-responder", "127.0.0.1", "action=DUNNO\n\n", true},
	} {
		b.Run(tt.name, func(b *testing.B) {
			var addr string
			if tt.null {
				addr = nullResponder(b)
			} else {
				addr = serve(b, &Server{Check: compile("", "smtpd: 127.0.0.2\n")})
			}
			c := dialPolicy(b, "tcp", addr)
			req := rcpt(b, tt.client, "unknown", "unknown")
			b.ReportAllocs()
			for b.Loop() {
				if got, err := c.ask(req); err != nil || got != tt.want {
					b.Fatalf("got %q, %v", got, err)
				}
			}
		})
	}
}

// nullResponder answers every block with action=DUNNO, reading it the
// way a minimal policy server does.
func nullResponder(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() { cancel(); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			context.AfterFunc(ctx, func() { c.Close() })
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) == 1 {
						if _, err := c.Write([]byte("action=DUNNO\n\n")); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
