package sandbox

import (
	"os"
	"testing"
)

func TestParseVmData(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want         uint64
	}{
		{"kernel 6", "Name:\tloginsvc\nVmPeak:\t 1266972 kB\nVmData:\t   73464 kB\nVmStk:\t     132 kB\n", 73464 << 10},
		{"last line, no newline", "Name:\tx\nVmData: 12 kB", 12 << 10},
		{"no unit", "VmData:\t7\n", 7 << 10},
		{"absent", "Name:\tx\nVmRSS:\t 100 kB\n", 0},
		{"not a number", "VmData:\t lots kB\n", 0},
		{"prefix of another field", "VmDataX:\t 5 kB\n", 0},
		{"empty", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseVmData([]byte(tc.status)); got != tc.want {
				t.Errorf("parseVmData(%q) = %d, want %d", tc.status, got, tc.want)
			}
		})
	}
}

// TestVmData reads this process's own VmData: it is there (the kernel
// writes it in every status file), and vmData finds it within the first
// statusMax bytes it reads.
func TestVmData(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	if len(b) > statusMax {
		b = b[:statusMax]
	}
	if parseVmData(b) == 0 {
		t.Fatalf("no VmData in the first %d bytes of /proc/self/status:\n%s", statusMax, b)
	}
	if got := vmData(); got == 0 {
		t.Error("vmData() = 0")
	}
}
