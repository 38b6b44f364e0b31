package resolve

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// behaviour says how the test server treats queries for one name.
type behaviour struct {
	rcode    int           // answer with this rcode (e.g. SERVFAIL) instead
	delay    time.Duration // sleep before answering (cut short when the server stops)
	gate     chan struct{} // if set, answer only once it is closed
	drop     bool          // never answer
	truncUDP bool          // over UDP, answer with TC set and no records
}

// testServer is an authoritative-and-recursive-looking DNS server on
// 127.0.0.1 (UDP and TCP on one port) serving a zone given in master-file
// lines. It follows CNAMEs inside the zone as a recursive resolver would,
// answers NXDOMAIN for names it has nothing for and NODATA for other
// types, adding negSOA to negative answers when set, and counts queries.
type testServer struct {
	Addr string

	mu      sync.Mutex
	rrs     map[string][]dns.RR // lower-case owner -> records
	behave  map[string]behaviour
	negSOA  dns.RR
	queries map[string]int // "name TYPE proto" and "name TYPE" -> count

	stop     chan struct{}
	handlers sync.WaitGroup
}

func startServer(t testing.TB, zone ...string) *testServer {
	t.Helper()
	ts := &testServer{
		rrs:     map[string][]dns.RR{},
		behave:  map[string]behaviour{},
		queries: map[string]int{},
		stop:    make(chan struct{}),
	}
	for _, line := range zone {
		ts.add(t, line)
	}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	ts.Addr = pc.LocalAddr().String()
	var served sync.WaitGroup
	t.Cleanup(served.Wait) // cleanups run last-in first-out: after both Shutdowns
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: ts}, {Listener: ln, Handler: ts}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		served.Add(1)
		go func() {
			defer served.Done()
			s.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	t.Cleanup(func() {
		close(ts.stop)
		ts.handlers.Wait()
	})
	return ts
}

func (ts *testServer) add(t testing.TB, line string) {
	t.Helper()
	rr, err := dns.NewRR(line)
	if err != nil {
		t.Fatalf("zone line %q: %v", line, err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	owner := strings.ToLower(rr.Header().Name)
	ts.rrs[owner] = append(ts.rrs[owner], rr)
}

// set changes how name (any case, with or without the final dot) is
// answered.
func (ts *testServer) set(name string, b behaviour) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.behave[strings.ToLower(dns.Fqdn(name))] = b
}

// count returns how many queries for name and type ("PTR", "A") arrived,
// over both protocols.
func (ts *testServer) count(name, typ string) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.queries[strings.ToLower(dns.Fqdn(name))+" "+typ]
}

// total returns the number of queries received.
func (ts *testServer) total() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := 0
	for k, v := range ts.queries {
		if strings.Count(k, " ") == 1 {
			n += v
		}
	}
	return n
}

func (ts *testServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	ts.handlers.Add(1)
	defer ts.handlers.Done()
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	proto := w.RemoteAddr().Network()
	ts.mu.Lock()
	typ := dns.TypeToString[q.Qtype]
	ts.queries[name+" "+typ]++
	ts.queries[name+" "+typ+" "+proto]++
	b := ts.behave[name]
	ts.mu.Unlock()

	if b.drop {
		return
	}
	if b.delay > 0 {
		select {
		case <-time.After(b.delay):
		case <-ts.stop:
			return
		}
	}
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-ts.stop:
			return
		}
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	switch {
	case b.rcode != 0:
		resp.Rcode = b.rcode
	case b.truncUDP && proto == "udp":
		resp.Truncated = true
	default:
		ts.answer(resp, name, q.Qtype)
	}
	w.WriteMsg(resp)
}

// answer fills resp as a recursive resolver would: the CNAME chain from
// name, then the records of the requested type at its end.
func (ts *testServer) answer(resp *dns.Msg, name string, qtype uint16) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for range 10 {
		rrs, ok := ts.rrs[name]
		if !ok {
			if len(resp.Answer) == 0 {
				resp.Rcode = dns.RcodeNameError
			}
			break
		}
		var cname *dns.CNAME
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				cname = c
			}
		}
		if cname != nil {
			resp.Answer = append(resp.Answer, dns.Copy(cname))
			name = strings.ToLower(cname.Target)
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype {
				resp.Answer = append(resp.Answer, dns.Copy(rr))
			}
		}
		break
	}
	if len(resp.Answer) == 0 && ts.negSOA != nil {
		resp.Ns = append(resp.Ns, dns.Copy(ts.negSOA))
	}
}

func ptrName(addr string) string {
	n, err := dns.ReverseAddr(addr)
	if err != nil {
		panic(fmt.Sprint(addr, err))
	}
	return n
}
