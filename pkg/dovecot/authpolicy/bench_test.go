package authpolicy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkAllow: one allow request over a keep-alive loopback connection,
// as Dovecot sends it, against 1 rule (ns/op is the round-trip latency
// with a sequential client).
func BenchmarkAllow(b *testing.B) {
	for _, tt := range []struct {
		name, remote, want string
	}{
		{"granted", "127.0.0.1", `{"status":0}`},
		{"denied", "127.0.0.2", `{"status":-1,"msg":"Access denied."}`},
	} {
		b.Run(tt.name, func(b *testing.B) {
			url := serve(b, &Server{Check: compile("", "imap: 127.0.0.2\n")}) + "?command=allow"
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			body := fmt.Sprintf(body24, "imap", tt.remote)
			for b.Loop() {
				resp, err := c.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(got) != tt.want {
					b.Fatalf("got %s", got)
				}
			}
		})
	}
}
