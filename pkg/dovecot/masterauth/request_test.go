package masterauth

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"
)

func TestLayoutSize(t *testing.T) {
	for _, tc := range []struct {
		l               Layout
		size, ports, fl int
	}{
		// 2.3: the observed 96 bytes; ports after two 20-byte ip_addrs.
		{Dovecot23, 96, 72, 76},
		// 2.4: struct ip_addr has a scope_id (24 bytes).
		{Dovecot24, 104, 80, 84},
	} {
		if got := tc.l.Size(); got != tc.size {
			t.Errorf("%v: Size = %d, want %d", tc.l, got, tc.size)
		}
		if got := tc.l.offPorts(); got != tc.ports {
			t.Errorf("%v: ports at %d, want %d", tc.l, got, tc.ports)
		}
		b, _ := (&Request{Flags: 0xa5a5a5a5}).MarshalBinary(tc.l)
		if got := binary.NativeEndian.Uint32(b[tc.fl:]); got != 0xa5a5a5a5 {
			t.Errorf("%v: flags at %d = %#x", tc.l, tc.fl, got)
		}
	}
	if Layout(0).Size() != 0 {
		t.Error("unknown layout has a size")
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, l := range []Layout{Dovecot23, Dovecot24} {
		for name, r := range map[string]Request{
			"ipv4": {
				Tag: 7, AuthPID: 100, AuthID: 3, ClientPID: 200, Cookie: [16]byte{1, 2, 3, 15: 16},
				LocalAddr: netip.MustParseAddrPort("127.0.0.1:143"), RemoteAddr: netip.MustParseAddrPort("192.0.2.7:50123"),
				Flags: FlagConnSecured | FlagImplicit, Ino: 1<<40 + 5,
				Data: Data("sess", IMAPPrefix(true, "a1"), []byte("b NOOP\r\n")),
			},
			"ipv6": {
				LocalAddr: netip.MustParseAddrPort("[::1]:993"), RemoteAddr: netip.MustParseAddrPort("[2001:db8::1]:1"),
				Data: []byte{},
			},
			"no addresses": {Data: []byte{}},
		} {
			b, err := r.MarshalBinary(l)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != l.Size()+len(r.Data) {
				t.Fatalf("%v %s: %d bytes", l, name, len(b))
			}
			got, err := ParseRequest(l, b)
			if err != nil {
				t.Fatalf("%v %s: %v", l, name, err)
			}
			if diff := cmp.Diff(r, got, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("%v %s: round trip (-want +got):\n%s", l, name, diff)
			}
		}
	}
	// IPv4-mapped addresses go out as IPv4, as Dovecot's net_ip2addr.
	r := Request{RemoteAddr: netip.MustParseAddrPort("[::ffff:192.0.2.1]:5")}
	b, _ := r.MarshalBinary(Dovecot23)
	if fam := binary.NativeEndian.Uint16(b[16+CookieSize+20:]); fam != afInet {
		t.Errorf("mapped address family %d, want AF_INET", fam)
	}
	if _, err := (&Request{Data: make([]byte, MaxDataSize+1)}).MarshalBinary(Dovecot23); !errors.Is(err, ErrDataTooLarge) {
		t.Errorf("oversized data: %v", err)
	}
}

func TestParseReply(t *testing.T) {
	enc := func(tag, status, pid uint32) []byte {
		b := make([]byte, 12)
		binary.NativeEndian.PutUint32(b, tag)
		binary.NativeEndian.PutUint32(b[4:], status)
		binary.NativeEndian.PutUint32(b[8:], pid)
		return b
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    Reply
		wantErr bool
	}{
		{"ok", enc(5, 0, 1234), Reply{5, StatusOK, 1234}, false},
		{"internal error", enc(5, 1, 0), Reply{5, StatusInternalError, 0}, false},
		{"unknown status", enc(5, 2, 0), Reply{}, true},
		{"short", enc(5, 0, 1)[:11], Reply{}, true},
		{"long", append(enc(5, 0, 1), 0), Reply{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReply(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseReply = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func FuzzParseReply(f *testing.F) {
	f.Add(make([]byte, 12))
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReply(b)
		if err != nil {
			return
		}
		out, _ := r.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip %x -> %+v -> %x", b, r, out)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	r := Request{LocalAddr: netip.MustParseAddrPort("127.0.0.1:1"), Data: Data("s", IMAPPrefix(false, "a"), nil)}
	for _, l := range []Layout{Dovecot23, Dovecot24} {
		b, _ := r.MarshalBinary(l)
		f.Add(int(l), b)
	}
	f.Fuzz(func(t *testing.T, li int, b []byte) {
		l := Dovecot23
		if li%2 == 0 {
			l = Dovecot24
		}
		req, err := ParseRequest(l, b)
		if err != nil {
			return
		}
		out, err := req.MarshalBinary(l)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseRequest(l, out)
		if err != nil || !cmp.Equal(req, again, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })) {
			t.Fatalf("re-parse: %v\n%+v\n%+v", err, req, again)
		}
	})
}

// fakeService is a stand-in post-login service on a unix socket: it reads
// one request with its fd as Dovecot's login-server does (one read for the
// struct with the fd, one for the data) and answers with answer.
func fakeService(t *testing.T, l Layout, answer func(req Request, fdIno uint64) []byte) (string, <-chan Request) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "imap")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan Request, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		hdr := make([]byte, l.Size())
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := c.ReadMsgUnix(hdr, oob)
		if err != nil || n != len(hdr) {
			t.Errorf("fake service: read %d: %v", n, err)
			return
		}
		var fdIno uint64
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
			if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
				var st unix.Stat_t
				_ = unix.Fstat(fds[0], &st)
				fdIno = st.Ino
				unix.Close(fds[0])
			}
		}
		size := binary.NativeEndian.Uint32(hdr[l.offPorts()+8:])
		data := make([]byte, size)
		if size > 0 {
			if n, err := c.Read(data); err != nil || n != int(size) {
				t.Errorf("fake service: data read %d of %d: %v", n, size, err)
			}
		}
		req, err := ParseRequest(l, append(hdr, data...))
		if err != nil {
			t.Errorf("fake service: %v", err)
			return
		}
		got <- req
		if b := answer(req, fdIno); b != nil {
			_, _ = c.Write(b)
		}
	}()
	return path, got
}

func clientFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestSend(t *testing.T) {
	reply := func(status Status) func(Request, uint64) []byte {
		return func(r Request, _ uint64) []byte {
			b, _ := Reply{Tag: r.Tag, Status: status, MailPID: 4242}.MarshalBinary()
			return b
		}
	}
	for _, tc := range []struct {
		name    string
		answer  func(Request, uint64) []byte
		opt     Options
		wantErr error
	}{
		{"ok", reply(StatusOK), Options{}, nil},
		{"internal error", reply(StatusInternalError), Options{}, ErrInternal},
		{"closed without reply", func(Request, uint64) []byte { return nil }, Options{}, ErrRemoteClosed},
		{"wrong tag", func(r Request, _ uint64) []byte {
			b, _ := Reply{Tag: r.Tag + 1}.MarshalBinary()
			return b
		}, Options{}, ErrTagMismatch},
		{"inode mismatch seen by the service", func(r Request, ino uint64) []byte {
			if ino != r.Ino {
				return nil
			}
			return reply(StatusOK)(r, ino)
		}, Options{}, nil},
	} {
		for _, l := range []Layout{Dovecot23, Dovecot24} {
			t.Run(tc.name+"/"+l.String(), func(t *testing.T) {
				path, got := fakeService(t, l, tc.answer)
				f := clientFile(t)
				req := &Request{AuthPID: 1, AuthID: 2, ClientPID: 3, Data: Data("s1", IMAPPrefix(false, "a"), []byte("b NOOP\r\n"))}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				rep, err := Send(ctx, path, l, req, f, tc.opt)
				if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
					t.Fatalf("Send = %+v, %v; want %v", rep, err, tc.wantErr)
				}
				if err == nil && rep.MailPID != 4242 {
					t.Errorf("mail pid %d", rep.MailPID)
				}
				r := <-got
				if !bytes.Equal(r.Data, req.Data) || r.Tag != req.Tag || r.Ino == 0 {
					t.Errorf("service got %+v, sent %+v", r, req)
				}
			})
		}
	}
}

func TestSendTimeout(t *testing.T) {
	path, _ := fakeService(t, Dovecot23, func(Request, uint64) []byte {
		time.Sleep(2 * time.Second) // never answers in time
		return nil
	})
	_, err := Send(context.Background(), path, Dovecot23, &Request{}, clientFile(t), Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Send = %v, want ErrTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	path, _ = fakeService(t, Dovecot23, func(Request, uint64) []byte {
		cancel() // the client went away while waiting
		time.Sleep(2 * time.Second)
		return nil
	})
	if _, err := Send(ctx, path, Dovecot23, &Request{}, clientFile(t), Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context = %v", err)
	}
	if _, err := Send(context.Background(), path, Dovecot23, &Request{Data: make([]byte, MaxDataSize+1)}, clientFile(t), Options{}); !errors.Is(err, ErrDataTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}
