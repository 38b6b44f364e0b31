package libwrapaddr

import "testing"

func TestMaskedMatch(t *testing.T) {
	tests := []struct {
		net, mask, addr string
		want            bool
	}{
		{"10.0.0.0", "255.255.255.0", "10.0.0.1", true},
		{"10.0.0.1", "255.255.255.0", "10.0.0.1", false}, // net not masked
		{"10.1.2.3", "8", "10.1.2.3", false},
		{"10.0.0.1", "32", "10.0.0.1", true},
		{"10.0.0.1", "255.255.255.255", "10.0.0.1", false}, // INADDR_NONE mask
		{"0.0.0.0", "0", "10.0.0.1", false},
		{"0.0.0.0", "0.0.0.0", "10.0.0.1", true},
		{"10.0.0.0", "8x", "10.1.2.3", true},
		{"010.0.0.0", "8", "8.1.2.3", true},
		{"0x0a.0.0.0", "8", "10.0.0.77", true},
		{"10.0.0.0", "255.0.255.0", "10.5.0.7", true},
		{"10.0.0", "24", "10.0.0.1", false},
		{"10.0.0.0", "8", "::ffff:10.1.2.3", true},
		{"[2001:db8::]", "32", "2001:db8::5", true},
		{"[2001:db8::]", "", "2001:db9::5", true},
		{"[2001:db8::]", "129", "2001:db8::5", false},
		{"[2001:db8::]", "64/", "2001:db8::5", true},
		{"[::ffff:0:0]", "96", "::ffff:10.1.2.3", false},
		{"[::]", "0", "10.1.2.3", false},
	}
	for _, tt := range tests {
		if got := MaskedMatch(tt.net, tt.mask, tt.addr); got != tt.want {
			t.Errorf("MaskedMatch(%q, %q, %q) = %v, want %v", tt.net, tt.mask, tt.addr, got, tt.want)
		}
	}
}

func TestInetAddr(t *testing.T) {
	tests := []struct {
		s    string
		want uint32
		ok   bool
	}{
		{"10.0.0.1", 0x0a000001, true},
		{"010.0.0.1", 0x08000001, true},
		{"0x0a.0.0.1", 0x0a000001, true},
		{"255.255.255.255", 0, false},
		{"1.2.3.256", 0, false},
		{"08.0.0.1", 0, false},
		{"1..2.3", 0, false},
		{"10", 10, true},
		{"0x", 0, false},
	}
	for _, tt := range tests {
		got, ok := InetAddr(tt.s)
		if got != tt.want || ok != tt.ok {
			t.Errorf("InetAddr(%q) = %#x, %v; want %#x, %v", tt.s, got, ok, tt.want, tt.ok)
		}
	}
}
