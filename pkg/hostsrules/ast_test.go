package hostsrules

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRules(t *testing.T) {
	src := Source{Name: "hosts.allow", Data: []byte("# c\nimap, pop3 : 10.0.0.1 EXCEPT 10.0.0.2 : spawn echo\\\n hi\nno separator here\n\nsshd: ALL\n")}
	rules, diags := ParseRules(src, false)
	want := []Rule{
		{File: "hosts.allow", FirstLine: 2, Line: 3, Text: "imap, pop3 : 10.0.0.1 EXCEPT 10.0.0.2 : spawn echo hi",
			Daemons:    []Token{{"imap", 1}, {"pop3", 7}},
			Clients:    []Token{{"10.0.0.1", 14}, {"EXCEPT", 23}, {"10.0.0.2", 30}},
			HasOptions: true, Options: " spawn echo hi", OptionsCol: 40},
		{File: "hosts.allow", FirstLine: 6, Line: 6, Text: "sshd: ALL",
			Daemons: []Token{{"sshd", 1}}, Clients: []Token{{"ALL", 7}}},
	}
	if diff := cmp.Diff(want, rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	wantDiags := []Diagnostic{{File: "hosts.allow", Line: 4, Severity: Warning, Code: "missing-separator", Msg: `missing ":" separator`}}
	if diff := cmp.Diff(wantDiags, diags); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	if got := rules[0].Text[rules[0].OptionsCol-1:]; got != rules[0].Options {
		t.Errorf("OptionsCol points at %q, want %q", got, rules[0].Options)
	}
}

func TestParseRulesLenient(t *testing.T) {
	long := make([]byte, 2100)
	for i := range long {
		long[i] = 'x'
	}
	data := append([]byte("a: b\n"), long...)
	data = append(data, []byte(": y\nc: d\n")...)
	strict, _ := ParseRules(Source{Name: "f", Data: data}, false)
	lenient, diags := ParseRules(Source{Name: "f", Data: data}, true)
	if len(strict) != 1 || len(lenient) != 3 {
		t.Fatalf("strict %d rules, lenient %d rules; want 1 and 3", len(strict), len(lenient))
	}
	if diags[0].Code != "missing-newline" || diags[0].Line != 2 || diags[0].LibwrapLine != 1 {
		t.Errorf("first diagnostic %+v, want missing-newline at line 2 (libwrap's line 1)", diags[0])
	}
}
