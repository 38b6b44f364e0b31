package hostsrules

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/xgets"
)

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse feeds arbitrary table text to the parser and evaluator: they
// must never panic, every diagnostic must point inside the file, the
// lenient reader must see at least the rules the strict one sees, and the
// compiled table must keep exactly the rules the strict one reads.
func FuzzParse(f *testing.F) {
	for _, c := range loadOracle(f) {
		if c.HostsAllow != nil {
			f.Add(*c.HostsAllow, c.Daemon, c.Client)
		}
		if c.HostsDeny != nil {
			f.Add(*c.HostsDeny, c.Daemon, c.Client)
		}
	}
	f.Fuzz(func(t *testing.T, text, daemon, client string) {
		src := Source{Name: "hosts.deny", Data: []byte(text)}
		lines := strings.Count(text, "\n")
		strict, diags := ParseRules(src, false)
		lenient, _ := ParseRules(src, true)
		if len(lenient) < len(strict) {
			t.Fatalf("lenient reader found %d rules, strict %d", len(lenient), len(strict))
		}
		physical := lines // a last line without newline is a line too
		if text != "" && !strings.HasSuffix(text, "\n") {
			physical++
		}
		for _, d := range diags {
			if d.Line < 1 || d.Line > physical {
				t.Fatalf("diagnostic line %d outside 1..%d: %v", d.Line, physical, d)
			}
			if d.Code == "missing-newline" && d.LibwrapLine > d.Line {
				t.Fatalf("libwrap's line %d for true line %d: %v", d.LibwrapLine, d.Line, d)
			}
		}
		for _, r := range strict {
			if r.FirstLine > r.Line || r.Line > lines {
				t.Fatalf("rule lines %d..%d outside file of %d lines", r.FirstLine, r.Line, lines)
			}
			for _, tok := range append(r.Daemons, r.Clients...) {
				if tok.Col < 1 || !strings.HasPrefix(r.Text[tok.Col-1:], tok.Text) {
					t.Fatalf("token %q at column %d not found in %q", tok.Text, tok.Col, r.Text)
				}
			}
		}
		p := Compile(Source{Name: "hosts.allow", State: FileMissing}, src)
		// The compiled table keeps exactly the rules read.
		var want []keptRule
		for _, r := range strict {
			want = append(want, keptFromParsed(r))
		}
		if diff := cmp.Diff(want, keptRules(p.deny), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("kept rules differ from the parsed ones (-parsed +kept):\n%s", diff)
		}
		// The same text read as Load reads a file, a byte at a time.
		st := &table{name: "hosts.deny"}
		sdiags, slists := st.build(xgets.New(iotest.OneByteReader(strings.NewReader(text))), 0)
		ps := newPolicy(&table{name: "hosts.allow", state: FileMissing}, st, sdiags, slists)
		if diff := cmp.Diff(p.Diagnostics(), ps.Diagnostics(), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("streamed diagnostics differ (-whole +streamed):\n%s", diff)
		}
		req := Request{Daemon: daemon, Client: Endpoint{AddrText: client, Name: Unknown}, User: Unknown}
		if a, err := netip.ParseAddr(client); err == nil {
			req.Client = Endpoint{Addr: netip.AddrPortFrom(a, 1)}
		}
		d := p.Check(context.Background(), &req, &Env{})
		r2 := req
		if diff := cmp.Diff(d, ps.Check(context.Background(), &r2, &Env{}), cmp.Comparer(func(x, y error) bool { return (x == nil) == (y == nil) })); diff != "" {
			t.Fatalf("streamed policy decides differently (-whole +streamed):\n%s", diff)
		}
		if d.Verdict != Granted && d.Verdict != Denied {
			t.Fatalf("verdict %v", d.Verdict)
		}
		if d.Verdict == Denied && d.Reason == "default" {
			t.Fatalf("default decision must grant: %+v", d)
		}
	})
}
