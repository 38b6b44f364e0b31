package lint

import "testing"

// TestParseNetgroupNames: lint knows the netgroups the rules engine
// reads: defined with members, continued lines, the first line of a
// group; a group with no members is unknown.
func TestParseNetgroupNames(t *testing.T) {
	db := ParseNetgroupNames([]byte("# comment\ntrusted (mx1,,) \\\n (mx2,,)\nempty\nnested trusted\ntrusted (other,,)\n"))
	for group, want := range map[string]bool{"trusted": true, "nested": true, "empty": false, "missing": false, "Trusted": false} {
		if got := db.Exists(group); got != want {
			t.Errorf("Exists(%q) = %v, want %v", group, got, want)
		}
	}
}
