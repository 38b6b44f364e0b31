package forward

import "testing"

// TestParseIP: forwarded addresses as Dovecot's net_addr2ip reads them
// (glibc's inet_aton for IPv4: Dovecot 2.3.19.1 took "10.1" as
// 10.0.0.1 in TestTrustedForwardingAsDovecot).
func TestParseIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7": "203.0.113.7", "10.1": "10.0.0.1", "10.1.2": "10.1.0.2", "167772161": "10.0.0.1",
		"0x7f.1": "127.0.0.1", "010.0.0.1": "8.0.0.1", "1.2.3.4 trailing": "1.2.3.4",
		"2001:db8::1": "2001:db8::1", "[2001:db8::1]": "2001:db8::1", "::ffff:1.2.3.4": "::ffff:1.2.3.4",
		"": "", "1.2.3.256": "", "1.2.3.4.5": "", "1..2": "", "0x": "", "08": "", "-1": "", "+1": "",
		"a.b.c.d": "", "fe80::1%eth0": "", "[1.2.3.4]": "", "4294967296": "", " 1.2.3.4": "",
	} {
		a, ok := ParseIP(in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("ParseIP(%q) = %q, want %q", in, got, want)
		}
	}
}
