package main

import (
	"bytes"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/version"
)

func TestMainVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		t.Run(arg, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run([]string{"loginsvc", arg}, &out, &errb); code != exitOK {
				t.Fatalf("exit %d, stderr %q", code, errb.String())
			}
			if want := "loginsvc version " + version.Version + "\n"; out.String() != want {
				t.Errorf("stdout %q, want %q", out.String(), want)
			}
			if errb.Len() != 0 {
				t.Errorf("stderr %q", errb.String())
			}
		})
	}
}
