package ctl

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestCheckHostTrueLineWithoutFinalNewline: for a hosts.deny whose last
// line has no newline, check-host's own words (error:, matched:, --json,
// --explain) name the true line; libwrap itself would say one less.
func TestCheckHostTrueLineWithoutFinalNewline(t *testing.T) {
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("%d lines", n), func(t *testing.T) {
			var rules []string
			for i := 1; i <= n; i++ {
				rules = append(rules, fmt.Sprintf("imap: 10.0.0.%d", i))
			}
			_, allow, deny := tables(t, "", strings.Join(rules, "\n"))
			files := []string{"check-host", "--allow-file", allow, "--deny-file", deny}

			// The unterminated last line stops libwrap: a table error there.
			last := fmt.Sprintf("10.0.0.%d", n)
			out, _, _ := run(t, append(files, "imap", last)...)
			if want := fmt.Sprintf("error:    %s:%d: missing newline or line too long\n", deny, n); !strings.Contains(out, want) {
				t.Errorf("check-host imap %s:\n%s\nwant the line %q", last, out, want)
			}
			out, _, _ = run(t, append(files, "--json", "imap", last)...)
			var rep CheckHostReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if d := rep.Results[0].Decision; d.Line != n || !strings.Contains(out, fmt.Sprintf(`"error": "%s:%d: missing newline`, deny, n)) {
				t.Errorf("--json decision line %d, want %d:\n%s", d.Line, n, out)
			}
			if n > 1 {
				// An earlier, terminated rule is matched at its own line.
				out, _, _ = run(t, append(files, "--explain", "imap", "10.0.0.1")...)
				if !strings.Contains(out, fmt.Sprintf("matched:  %s line 1\n", deny)) {
					t.Errorf("check-host imap 10.0.0.1:\n%s\nwant matched: line 1", out)
				}
			}
		})
	}
}
