package clidoc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

func testApp() *cli.App {
	return &cli.App{
		Name: "demo", Usage: "demo tool", Version: "1",
		Flags: []cli.Flag{&cli.StringFlag{Name: "config"}},
		Commands: []*cli.Command{
			{Name: "rules", Usage: "rule files", Subcommands: []*cli.Command{
				{Name: "lint", Usage: "lint", Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}, &cli.BoolFlag{Name: "d"}}},
			}},
			Command(8),
		},
	}
}

func TestWords(t *testing.T) {
	got := words(testApp())
	want := map[string][]string{
		"":           {"--config", "--help", "--version", "-h", "-v", "help", "rules"},
		"rules":      {"--help", "lint"},
		"rules lint": {"--help", "--json", "-d"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestBashCompletion runs the generated script in bash and completes.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "demo")
	os.WriteFile(script, []byte(Bash(testApp())), 0o644)
	for _, tt := range []struct{ line, want string }{
		{"demo ", "rules"},
		{"demo rules ", "lint"},
		{"demo rules lint --j", "--json"},
		{"demo --c", "--config"},
	} {
		words := strings.Fields(tt.line)
		if strings.HasSuffix(tt.line, " ") {
			words = append(words, "")
		}
		prog := "source " + script + "\nCOMP_WORDS=(" + quoteAll(words) + ")\nCOMP_CWORD=" + itoa(len(words)-1) +
			"\n_demo\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tt.line, err, out)
		}
		if !strings.Contains("\n"+string(out), "\n"+tt.want+"\n") {
			t.Errorf("%q completes to %q, want %q among them", tt.line, out, tt.want)
		}
	}
}

func quoteAll(ws []string) string {
	var q []string
	for _, w := range ws {
		q = append(q, "'"+w+"'")
	}
	return strings.Join(q, " ")
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestManAndFish(t *testing.T) {
	man, err := Man(testApp(), 8)
	if err != nil || !strings.Contains(man, ".TH demo 8") || !strings.Contains(man, "lint") || strings.Contains(man, "generate") {
		t.Errorf("man (%v):\n%s", err, man)
	}
	fish, err := Fish(testApp())
	if err != nil || !strings.Contains(fish, "complete -c demo") {
		t.Errorf("fish (%v):\n%s", err, fish)
	}
	files, err := WriteAll(testApp(), 8, t.TempDir())
	if err != nil || len(files) != 4 {
		t.Errorf("WriteAll: %v %v", files, err)
	}
}
