package smtpdpolicy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

func TestReadRequest(t *testing.T) {
	const head = "request=smtpd_access_policy\n"
	tests := []struct {
		name    string
		in      string
		lim     Limits
		want    *Request
		wantErr error
	}{
		{"minimal", head + "client_address=192.0.2.1\n\n", Limits{}, &Request{Request: RequestType, ClientAddress: "192.0.2.1"}, nil},
		{"crlf and = in value", head + "client_address=192.0.2.1\r\nsender=a=b@x\r\n\r\n", Limits{}, &Request{Request: RequestType, ClientAddress: "192.0.2.1", Sender: "a=b@x"}, nil},
		{"last duplicate wins", head + "client_address=192.0.2.1\nclient_address=192.0.2.2\n\n", Limits{}, &Request{Request: RequestType, ClientAddress: "192.0.2.2"}, nil},
		{"unknown attributes ignored", head + "ccert_subject=x\nfoo=bar\n\n", Limits{}, &Request{Request: RequestType}, nil},
		{"empty value", head + "policy_context=\n\n", Limits{}, &Request{Request: RequestType}, nil},
		{"eof between requests", "", Limits{}, nil, io.EOF},
		{"eof inside a request", head + "client_address=192.0.2.1\n", Limits{}, nil, io.ErrUnexpectedEOF},
		{"eof inside a line", head + "client_addr", Limits{}, nil, io.ErrUnexpectedEOF},
		{"no =", head + "client_address\n\n", Limits{}, nil, ErrMalformed},
		{"empty name", head + "=x\n\n", Limits{}, nil, ErrMalformed},
		{"no request attribute", "client_address=192.0.2.1\n\n", Limits{}, nil, ErrMalformed},
		{"other request", "request=junk\n\n", Limits{}, nil, ErrMalformed},
		{"too many attributes", head + strings.Repeat("x=y\n", 3) + "\n", Limits{MaxAttributes: 3}, nil, ErrTooLarge},
		{"attributes at the limit", head + strings.Repeat("x=y\n", 2) + "\n", Limits{MaxAttributes: 3}, &Request{Request: RequestType}, nil},
		{"too many bytes", head + "sender=" + strings.Repeat("a", 100) + "\n\n", Limits{MaxBytes: 100}, nil, ErrTooLarge},
		{"line over the buffer", head + "sender=" + strings.Repeat("a", 10000) + "\n\n", Limits{MaxBytes: 20000}, &Request{Request: RequestType, Sender: strings.Repeat("a", 10000)}, nil},
		{"endless line", head + "sender=" + strings.Repeat("a", 70000), Limits{}, nil, ErrTooLarge},
	}
	// The block is read line by line from the reader (an empty buffer),
	// parsed in the buffer (all of it there, as Postfix writes a block),
	// or begun in the buffer and read on (one byte per read).
	readers := []struct {
		name string
		r    func(string) *bufio.Reader
	}{
		{"read", func(in string) *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(in), 4096) }},
		{"buffered", func(in string) *bufio.Reader {
			r := bufio.NewReaderSize(strings.NewReader(in), 4096)
			r.Peek(len(in))
			return r
		}},
		{"bytewise", func(in string) *bufio.Reader {
			r := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 4096)
			r.Peek(1)
			return r
		}},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				got, err := ReadRequest(rd.r(tt.in), tt.lim)
				if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestReadRequestAllocs: a block in the buffer is decoded with one
// allocation, the string of the kept values (the Server's Request is
// reused), however many attributes it has.
func TestReadRequestAllocs(t *testing.T) {
	b, err := os.ReadFile("testdata/postfix37-rcpt.txt")
	if err != nil {
		t.Fatal(err)
	}
	in := bytes.NewReader(b)
	br := bufio.NewReaderSize(in, 4096)
	var req Request
	allocs := testing.AllocsPerRun(100, func() {
		in.Reset(b)
		br.Reset(in)
		br.Peek(len(b))
		if err := readRequest(br, Limits{}, &req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("%v allocations per block, want at most 1", allocs)
	}
	if req.ClientAddress == "" || req.Recipient == "" {
		t.Errorf("attributes missing: %+v", req)
	}
}

// TestReadRequestPostfix37: the block a real Postfix 3.7 sent at RCPT TO,
// and two of them back to back on one connection.
func TestReadRequestPostfix37(t *testing.T) {
	b, err := os.ReadFile("testdata/postfix37-rcpt.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := &Request{Request: RequestType, ProtocolState: "RCPT", ClientAddress: "127.0.0.2", ClientPort: "57789",
		ClientName: "unknown", ReverseClientName: "unknown", ServerAddress: "127.0.0.1", ServerPort: "10025",
		Instance: "15d7.6b16a08a.98b5d.0", Sender: "a@x.test", Recipient: "b@example.test", HeloName: "[127.0.0.1]"}
	got, err := ParseRequest(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	r := bufio.NewReader(strings.NewReader(string(b) + string(b)))
	for i := range 2 {
		if _, err := ReadRequest(r, Limits{}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := ReadRequest(r, Limits{}); err != io.EOF {
		t.Fatalf("after two requests: %v, want EOF", err)
	}
	if _, err := ParseRequest(append(b, 'x'), Limits{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseRequest with trailing data: %v", err)
	}
	if _, err := ParseRequest(nil, Limits{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseRequest of nothing: %v", err)
	}
}

func TestHostsRequest(t *testing.T) {
	tests := []struct {
		name   string
		req    Request
		daemon string
		want   string // daemon client-addr-text client-name server
		bad    bool
	}{
		{"verified name", Request{ClientAddress: "192.0.2.1", ClientPort: "4000", ClientName: "mx.example.net", ReverseClientName: "mx.example.net", ServerAddress: "198.51.100.1", ServerPort: "25"}, "",
			"smtpd 192.0.2.1:4000 mx.example.net 198.51.100.1:25", false},
		{"reverse name that does not map back is paranoid", Request{ClientAddress: "192.0.2.1", ClientName: "unknown", ReverseClientName: "forged.example"}, "",
			"smtpd 192.0.2.1:0 paranoid invalid AddrPort", false},
		{"no reverse name is unknown", Request{ClientAddress: "192.0.2.1", ClientName: "unknown", ReverseClientName: "unknown"}, "",
			"smtpd 192.0.2.1:0 unknown invalid AddrPort", false},
		{"names absent: the checker decides", Request{ClientAddress: "192.0.2.1"}, "",
			"smtpd 192.0.2.1:0  invalid AddrPort", false},
		{"unknown address", Request{ClientAddress: "unknown", ClientName: "unknown"}, "",
			"smtpd invalid AddrPort(unknown) unknown invalid AddrPort", false},
		{"v4-mapped unmapped, IPv6", Request{ClientAddress: "::ffff:192.0.2.1", ServerAddress: "2001:db8::25", ServerPort: "587"}, "submission",
			"submission 192.0.2.1:0  [2001:db8::25]:587", false},
		{"policy_context beats the listener name", Request{ClientAddress: "192.0.2.1", PolicyContext: "smtps"}, "submission",
			"smtps 192.0.2.1:0  invalid AddrPort", false},
		{"bad policy_context", Request{ClientAddress: "192.0.2.1", PolicyContext: "../x"}, "", "", true},
		{"bad daemon", Request{ClientAddress: "192.0.2.1"}, "a/b", "", true},
		{"bad address", Request{ClientAddress: "192.0.2.300"}, "", "", true},
		{"zone", Request{ClientAddress: "fe80::1%eth0"}, "", "", true},
		{"bad port", Request{ClientAddress: "192.0.2.1", ClientPort: "65536"}, "", "", true},
		{"port without address", Request{ServerPort: "25"}, "", "", true},
		{"bad client_name", Request{ClientAddress: "192.0.2.1", ClientName: "a b"}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := tt.req.HostsRequest(tt.daemon)
			if tt.bad {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			addr := h.Client.Addr.String()
			if h.Client.AddrText != "" {
				addr += "(" + h.Client.AddrText + ")"
			}
			got := fmt.Sprintf("%s %s %s %v", h.Daemon, addr, h.Client.Name, h.Server.Addr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if h.User != hostsrules.Unknown {
				t.Errorf("user %q, want unknown", h.User)
			}
		})
	}
}

func TestCheckRejectCode(t *testing.T) {
	for code, ok := range map[string]bool{
		"": true, "521": true, "521 5.7.1": true, "554 5.7.1": true, "450 4.7.1": true, "421 4.7.0": true, "599 5.999.999": true,
		"REJECT": false, "200": false, "52": false, "5211": false, "521 4.7.1": false, "521 5.7": false, "521 5.7.1 text": false, "521  5.7.1": false, "6xx": false, "521 5.x.1": false,
	} {
		if err := CheckRejectCode(code); (err == nil) != ok {
			t.Errorf("CheckRejectCode(%q) = %v, want ok %v", code, err, ok)
		}
	}
}

func TestDenyAction(t *testing.T) {
	for _, tt := range []struct{ code, text, want string }{
		{"", "Go away", "REJECT Go away"},
		{"521 5.7.1", "Go away", "521 5.7.1 Go away"},
		{"", "été", "REJECT ?t?"},
		{"", strings.Repeat("x", 300), "REJECT " + strings.Repeat("x", maxText)},
	} {
		if got := denyAction(tt.code, tt.text); got != tt.want {
			t.Errorf("denyAction(%q, %q) = %q, want %q", tt.code, tt.text, got, tt.want)
		}
	}
}
