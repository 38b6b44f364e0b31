package relay

import (
	"io"
	"net"
	"testing"
)

// TestRun checks that bytes go both ways and that the end of either
// side ends the relay.
func TestRun(t *testing.T) {
	for _, tt := range []struct {
		name     string
		peerEnds bool
	}{{"client ends", false}, {"peer ends", true}} {
		t.Run(tt.name, func(t *testing.T) {
			client, clientFar := net.Pipe()
			peer, peerFar := net.Pipe()
			defer client.Close()
			defer clientFar.Close()
			defer peerFar.Close()
			done := make(chan struct{})
			go func() { Run(client, peer, nil); close(done) }()
			buf := make([]byte, 5)
			clientFar.Write([]byte("hello"))
			if _, err := io.ReadFull(peerFar, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("peer read %q, %v", buf, err)
			}
			peerFar.Write([]byte("world"))
			if _, err := io.ReadFull(clientFar, buf); err != nil || string(buf) != "world" {
				t.Fatalf("client read %q, %v", buf, err)
			}
			if tt.peerEnds {
				peerFar.Close()
			} else {
				clientFar.Close()
			}
			<-done // Run returns: a hang fails the test by its timeout
		})
	}
}
