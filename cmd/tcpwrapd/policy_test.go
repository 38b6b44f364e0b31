package main

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseListenSpec(t *testing.T) {
	for _, tt := range []struct {
		v       string
		postfix bool
		want    listenSpec
		err     bool
	}{
		{v: "127.0.0.1:10043", want: listenSpec{addr: "127.0.0.1:10043", uid: -1, gid: -1, mode: 0o600}},
		{v: "/run/p,user=0,group=0,mode=0660", want: listenSpec{addr: "/run/p", uid: 0, gid: 0, mode: 0o660}},
		{v: "/s,daemon=submission,reject=521 5.7.1", postfix: true,
			want: listenSpec{addr: "/s", uid: -1, gid: -1, mode: 0o600, daemon: "submission", rejectCode: "521 5.7.1"}},
		{v: "/s,daemon=submission", err: true},          // not for the auth policy
		{v: "127.0.0.1:1,user=root", err: true},         // owner of a TCP listener
		{v: "/s,mode=0999", err: true},                  // not octal
		{v: "/s,mode=1777", err: true},                  // beyond 0777
		{v: "/s,reject=250", postfix: true, err: true},  // not a reject code
		{v: "/s,daemon=../x", postfix: true, err: true}, // not a plain name
		{v: "/s,user=no-such-user-here", err: true},     // unknown user
		{v: "/s,nonsense", err: true},                   // no NAME=VALUE
		{v: ",mode=0600", err: true},                    // no address
	} {
		got, err := parseListenSpec("x", tt.v, tt.postfix)
		if (err != nil) != tt.err {
			t.Errorf("%q: error %v, want error %v", tt.v, err, tt.err)
			continue
		}
		if err == nil {
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(listenSpec{}), cmp.Comparer(func(a, b os.FileMode) bool { return a == b })); diff != "" {
				t.Errorf("%q (-want +got):\n%s", tt.v, diff)
			}
		}
	}
}

// TestAPIHeaderRefused: an --policy-api-header with an empty name or
// value is a usage error before anything listens.
func TestAPIHeaderRefused(t *testing.T) {
	for _, h := range []string{" ", "X-Auth:", "X-Auth:   ", ": tok"} {
		if got := run([]string{"tcpwrapd", "--policy-listen", "127.0.0.1:0", "--policy-api-header", h}); got != 2 {
			t.Errorf("%q: exit %d, want 2", h, got)
		}
	}
}
