package login

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/listenopt"
)

// greetProto is a protocol that greets and ends the session at its
// first command.
type greetProto struct{}

func (greetProto) Name() string               { return "imap" }
func (greetProto) NewSession(*Client) Session { return greetSession{} }
func (greetSession) Greeting() string         { return "* OK hi\r\n" }
func (greetSession) Notice(Notice) string     { return "" }
func (greetSession) Next(*input.Buffer) (string, Ending, error) {
	return "* BYE\r\n", Ending{Why: "Logged out", Reason: ipc.CloseNormal}, nil
}

type greetSession struct{}

// testCert is a self-signed P-256 certificate for 127.0.0.1.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAcceptReportsTLSClientOnce: a client a high-performance process
// accepted on an ssl = yes listener with no check to wait for is
// reported once, as logging in (lazily, it does not make the process
// full), not as checking and then at once again as logging in before
// its TLS handshake: one supervisor wake-up per TLS client fewer.
func TestAcceptReportsTLSClientOnce(t *testing.T) {
	rep, peer := reportPair(t, "")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lp := &loginProc{in: &ipc.Settings{PreloginTimeout: 30 * time.Second, ClientLimit: 10},
		rep: rep.lp.rep, clients: map[uint64]*Client{}, proto: greetProto{}, exit: make(chan int, 1),
		tls: serverTLSConfig(testCert(t), 0, nil), listen: listenopt.New([]string{ln.Addr().String()}, nil)}
	lp.listeners = nil
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := tls.Dial("tcp4", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "* OK hi\r\n" {
			t.Errorf("greeting %q, %v", buf[:n], err)
		}
	}()
	fd, remote := acceptFD(t, ln)
	const id = 1<<32 | 1
	lp.mu.Lock()
	lp.starting++
	lp.mu.Unlock()
	before := time.Now().UnixNano()
	lp.accept(id, fd, remote, nil, ipc.MsgAccepted)
	after := time.Now().UnixNano()
	<-done
	got := readPackets(t, peer)
	// The accept time is the one field the test cannot know: it is
	// checked for its bounds, then compared as known.
	var at int64
	if len(got) > 0 && len(got[0]) >= 1+ipc.ReportLen(ipc.MsgAccepted) {
		at = ipc.ReportAccept(got[0][1:]).At
		if at < before || at > after {
			t.Errorf("accept time %d, want within [%d, %d]", at, before, after)
		}
	}
	want := append([]byte{ipc.MsgBatch}, ipc.AppendReport(nil, ipc.MsgAccepted, id, uint8(ipc.StateLoggingIn), ipc.Accept{Remote: remote.AddrPort(), At: at})...)
	if len(got) == 0 || !bytes.HasPrefix(got[0], want) {
		t.Errorf("first report %x, want a batch starting with %x", got, want)
	}
	for _, pk := range got {
		if pk[0] == ipc.MsgState {
			t.Errorf("a state report of its own: %x", pk)
		}
	}
}
