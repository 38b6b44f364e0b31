package config

import (
	"crypto/tls"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseCurveList: OpenSSL's group list syntax as ssl_curve_list
// takes it; want nil with an error wanted.
func TestParseCurveList(t *testing.T) {
	for _, tc := range []struct {
		list    string
		want    []tls.CurveID
		wantErr bool
	}{
		{"", nil, false},
		{"  ", nil, false},
		{"X25519", []tls.CurveID{tls.X25519}, false},
		{"x25519:P-256:prime256v1", []tls.CurveID{tls.X25519, tls.CurveP256}, false},
		{"?X448:secp384r1", []tls.CurveID{tls.CurveP384}, false},
		// The prefixes in either order (OpenSSL 3.5).
		{"?*X448:*?X25519MLKEM768:X25519", []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, false},
		{"*?X448:X25519", []tls.CurveID{tls.X25519}, false},
		{"*X448:X25519", nil, true},
		{"X25519 / secp256r1", []tls.CurveID{tls.X25519, tls.CurveP256}, false},
		{"X25519::P-256", nil, true},
		{"X25519:", nil, true},
		{"?X448", nil, true},
		{"brainpoolP256r1", nil, true},
	} {
		got, err := parseCurveList(tc.list)
		if (err != nil) != tc.wantErr || !cmp.Equal(got, tc.want) {
			t.Errorf("parseCurveList(%q) = %v, %v; want %v, error %v", tc.list, got, err, tc.want, tc.wantErr)
		}
	}
}
