package authpolicy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// errCounter counts Server.Error kinds.
type errCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *errCounter) add(kind string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[kind]++
}

func (e *errCounter) get(kind string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[kind]
}

// allowOnce sends one allow request on c and reads its reply.
func allowOnce(c net.Conn, r *bufio.Reader) (string, error) {
	body := fmt.Sprintf(body23, "127.0.0.1")
	if _, err := fmt.Fprintf(c, "POST /?command=allow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestIdleEviction: with every connection slot held by keep-alive
// connections idle after one request each, a new client's request is
// answered at once, and one idle connection was closed to make room.
func TestIdleEviction(t *testing.T) {
	const max = 8
	var errs errCounter
	url := serve(t, &Server{Check: compile("", ""), MaxConnections: max, Error: errs.add})
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	var held []net.Conn
	for i := range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if got, err := allowOnce(c, bufio.NewReader(c)); err != nil || got != `{"status":0}` {
			t.Fatalf("holder %d: %q, %v", i, got, err)
		}
		held = append(held, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(time.Second))
	if got, err := allowOnce(c, bufio.NewReader(c)); err != nil || got != `{"status":0}` {
		t.Fatalf("new client after %v: %q, %v (want an answer within 1s)", time.Since(start), got, err)
	}
	closed := 0
	for _, h := range held {
		h.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := h.Read(make([]byte, 1))
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed != 1 {
		t.Errorf("%d idle connections closed, want 1", closed)
	}
	if n := errs.get(ErrKindEvictedIdle); n != 1 {
		t.Errorf("%s counted %d times, want 1", ErrKindEvictedIdle, n)
	}
}

// TestAPIHeaderValidation: an API header with an empty name or value is
// refused before Serve accepts anything (an empty value would match a
// request without the header).
func TestAPIHeaderValidation(t *testing.T) {
	tests := []struct {
		setting string
		ok      bool
	}{
		{"", true},
		{"s3cret", true},
		{"X-Auth: tok", true},
		{"Authorization: Bearer tok", true},
		{" ", false},
		{"X-Auth:", false},
		{"X-Auth:   ", false},
		{": tok", false},
		{"Bad Name: tok", false},
		{"\t", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.setting), func(t *testing.T) {
			if err := CheckAPIHeader(tt.setting); (err == nil) != tt.ok {
				t.Fatalf("CheckAPIHeader: %v, want ok %v", err, tt.ok)
			}
			if tt.ok {
				return
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := &Server{Check: compile("", ""), APIHeader: tt.setting}
			done := make(chan error, 1)
			go func() { done <- s.Serve(t.Context(), ln) }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("Serve returned nil, want an error")
				}
			case <-time.After(10 * time.Second):
				ln.Close()
				t.Fatal("Serve accepted with an invalid API header")
			}
			if _, err := ln.Accept(); err == nil {
				t.Error("listener still open")
			}
		})
	}
}
