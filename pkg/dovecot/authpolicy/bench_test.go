package authpolicy

import (
	"bytes"
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

// BenchmarkServeHTTP measures the handler's own work per allow request,
// with no network and no net/http server: ServeHTTP on the request
// Dovecot 2.3 sends (its default attributes) for a client listed nowhere
// in a 1-line hosts.deny, next to a null handler that reads the body and
// answers {"status":0} (policybench's null responder).
func BenchmarkServeHTTP(b *testing.B) {
	body := []byte(fmt.Sprintf(body23, "127.0.0.1"))
	for _, tt := range []struct {
		name string
		h    http.Handler
	}{
		{"server", &Server{Check: compile("", "ALL: 127.0.0.2\n")}},
		{"null-handler", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":0}`))
		})},
	} {
		b.Run(tt.name, func(b *testing.B) {
			r, err := http.NewRequest(http.MethodPost, "/?command=allow", nil)
			if err != nil {
				b.Fatal(err)
			}
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("User-Agent", "dovecot/auth-policy-client")
			lb := &loopBody{}
			r.Body, r.ContentLength = lb, int64(len(body))
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				lb.Reset(body)
				clear(w.h)
				w.out = w.out[:0]
				tt.h.ServeHTTP(w, r)
				if string(w.out) != `{"status":0}` {
					b.Fatalf("reply %q", w.out)
				}
			}
		})
	}
}

// loopBody is a request body that can be read again after Reset.
type loopBody struct{ bytes.Reader }

func (*loopBody) Close() error { return nil }

// benchWriter is a ResponseWriter that keeps the body written.
type benchWriter struct {
	h    http.Header
	code int
	out  []byte
}

func (w *benchWriter) Header() http.Header  { return w.h }
func (w *benchWriter) WriteHeader(code int) { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) {
	w.out = append(w.out, p...)
	return len(p), nil
}
