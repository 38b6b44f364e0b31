package policybench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// nullReply is the auth policy null responder's answer.
var nullReply = []byte(`{"status":0}`)

// NullHTTPHandler answers every request {"status":0} without looking at
// it (the body is read and discarded, as a keep-alive server must).
func NullHTTPHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Write(nullReply)
}

// ServeNullHTTP serves NullHTTPHandler on ln with the net/http server
// settings of tcpwrapd's auth policy front end (pkg/dovecot/authpolicy:
// 2 s read, header and write timeouts, 60 s idle timeout, 8 KiB headers,
// keep-alive) until ctx ends. It closes ln.
func ServeNullHTTP(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           http.HandlerFunc(NullHTTPHandler),
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       2 * time.Second,
		WriteTimeout:      2 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeNullPostfix answers every Postfix policy block on ln with
// "action=DUNNO" without looking at it, one goroutine and one
// bufio.Reader per connection as tcpwrapd's Postfix front end
// (pkg/postfix/smtpdpolicy), until ctx ends. It closes ln and every
// connection.
func ServeNullPostfix(ctx context.Context, ln net.Listener) error {
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			servePostfixConn(c)
		})
	}
}

var dunno = []byte("action=DUNNO\n\n")

func servePostfixConn(c net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(330 * time.Second))
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) == 1 {
				break
			}
		}
		if _, err := c.Write(dunno); err != nil {
			return
		}
	}
}
