package lint

import (
	"fmt"
	"io"
)

// WriteText prints the report for people: one "file:line:col: severity:
// message [code]" line per diagnostic, an indented hint line where there
// is one, and a summary line.
func (r *Report) WriteText(w io.Writer) error {
	for _, d := range r.Diagnostics {
		if _, err := fmt.Fprintln(w, d.String()); err != nil {
			return err
		}
		if d.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", d.Hint)
		}
	}
	rules := 0
	for _, f := range r.Files {
		rules += f.Rules
	}
	_, err := fmt.Fprintf(w, "%s, %s, %s (%s in %s)\n",
		plural(r.Errors, "error"), plural(r.Warnings, "warning"), plural(r.Infos, "note"),
		plural(rules, "rule"), plural(len(r.Files), "file"))
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
