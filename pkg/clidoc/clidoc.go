// Package clidoc writes man pages and shell completion scripts for a
// urfave/cli v2 application from its command definitions, so that the
// documentation installed by the packages always matches the binaries.
//
// Man pages come from (*cli.App).ToManWithSection (go-md2man). Fish
// completion comes from (*cli.App).ToFishCompletion. Bash and zsh
// completion scripts are static: they list each command's subcommands and
// flags and need nothing from the binary at completion time.
package clidoc

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Man returns the man page of app in section (roff).
func Man(app *cli.App, section int) (string, error) {
	app.Setup()
	return app.ToManWithSection(section)
}

// Fish returns a fish completion script for app.
func Fish(app *cli.App) (string, error) {
	app.Setup()
	return app.ToFishCompletion()
}

// words maps each command path ("" for the top level, "rules lint") to the
// words that may follow it: subcommand names and flags.
func words(app *cli.App) map[string][]string {
	app.Setup()
	out := map[string][]string{}
	var walk func(path string, cmds []*cli.Command, flags []cli.Flag)
	walk = func(path string, cmds []*cli.Command, flags []cli.Flag) {
		var w []string
		for _, c := range cmds {
			if c.Hidden {
				continue
			}
			w = append(w, c.Name)
			if c.Name == "help" {
				continue
			}
			w = append(w, c.Aliases...)
			p := strings.TrimSpace(path + " " + c.Name)
			walk(p, c.Subcommands, c.Flags)
		}
		for _, f := range flags {
			for _, n := range f.Names() {
				if len(n) == 1 {
					w = append(w, "-"+n)
				} else {
					w = append(w, "--"+n)
				}
			}
		}
		if path == "" || len(cmds) > 0 || len(flags) > 0 {
			w = append(w, "--help")
		}
		sort.Strings(w)
		out[path] = slices.Compact(w)
	}
	walk("", app.Commands, app.Flags)
	return out
}

// Bash returns a bash completion script for app: it completes the
// subcommands and flags of the command typed so far, and file names
// elsewhere.
func Bash(app *cli.App) string {
	name := app.Name
	fn := "_" + strings.ReplaceAll(name, "-", "_")
	w := words(app)
	paths := make([]string, 0, len(w))
	for p := range w {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %s (generated from its command definitions)\n", name)
	fmt.Fprintf(&b, "%s() {\n", fn)
	b.WriteString("    local cur path w i\n")
	b.WriteString("    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n")
	b.WriteString("    path=\"\"\n")
	b.WriteString("    for ((i = 1; i < COMP_CWORD; i++)); do\n")
	b.WriteString("        w=\"${COMP_WORDS[i]}\"\n")
	b.WriteString("        case \"$w\" in -*) continue ;; esac\n")
	b.WriteString("        case \"${path:+$path }$w\" in\n")
	for _, p := range paths {
		if p != "" {
			fmt.Fprintf(&b, "            %q) path=%q ;;\n", p, p)
		}
	}
	b.WriteString("        esac\n")
	b.WriteString("    done\n")
	b.WriteString("    local words\n")
	b.WriteString("    case \"$path\" in\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "        %q) words=%q ;;\n", p, strings.Join(w[p], " "))
	}
	b.WriteString("    esac\n")
	b.WriteString("    if [[ \"$cur\" == -* || -z \"$cur\" && \"$words\" != *\" \"* ]]; then\n")
	b.WriteString("        COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n")
	b.WriteString("    else\n")
	b.WriteString("        COMPREPLY=($(compgen -W \"$(printf '%s\\n' $words | grep -v '^-')\" -- \"$cur\") $(compgen -f -- \"$cur\"))\n")
	b.WriteString("    fi\n")
	b.WriteString("}\n")
	fmt.Fprintf(&b, "complete -o default -F %s %s\n", fn, name)
	return b.String()
}

// Zsh returns a zsh completion script for app, which runs the bash one
// through zsh's bashcompinit.
func Zsh(app *cli.App) string {
	return fmt.Sprintf("#compdef %s\n# zsh completion for %s (generated from its command definitions)\nautoload -U +X bashcompinit && bashcompinit\n%s",
		app.Name, app.Name, Bash(app))
}

// WriteAll writes, under dir, man/man<section>/NAME.<section>,
// completions/bash/NAME, completions/zsh/_NAME and
// completions/fish/NAME.fish, and returns the paths written.
func WriteAll(app *cli.App, section int, dir string) ([]string, error) {
	man, err := Man(app, section)
	if err != nil {
		return nil, fmt.Errorf("man page of %s: %w", app.Name, err)
	}
	fish, err := Fish(app)
	if err != nil {
		return nil, fmt.Errorf("fish completion of %s: %w", app.Name, err)
	}
	files := map[string]string{
		filepath.Join("man", fmt.Sprintf("man%d", section), fmt.Sprintf("%s.%d", app.Name, section)): man,
		filepath.Join("completions", "bash", app.Name):                                               Bash(app),
		filepath.Join("completions", "zsh", "_"+app.Name):                                            Zsh(app),
		filepath.Join("completions", "fish", app.Name+".fish"):                                       fish,
	}
	var written []string
	for rel, text := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	sort.Strings(written)
	return written, nil
}

// Command returns a hidden "generate" command that writes the man page or
// a completion script of the application it belongs to:
//
//	NAME generate man|bash|zsh|fish     print one to stdout
//	NAME generate docs DIR              write all of them under DIR (see WriteAll)
//
// section is the man section (8 for daemons and admin tools).
func Command(section int) *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Hidden:    true,
		Usage:     "print the man page or a shell completion script (for packaging)",
		ArgsUsage: "man|bash|zsh|fish | docs DIR",
		Action: func(cCtx *cli.Context) error {
			app := cCtx.App
			w := app.Writer
			var text string
			var err error
			switch what := cCtx.Args().First(); {
			case what == "docs" && cCtx.NArg() == 2:
				files, err := WriteAll(app, section, cCtx.Args().Get(1))
				for _, f := range files {
					fmt.Fprintln(w, f)
				}
				return err
			case what == "docs":
				return cli.Exit("generate docs: need the output directory: generate docs DIR", 2)
			case cCtx.NArg() != 1:
				return cli.Exit("generate: need one argument: man, bash, zsh, fish, or docs DIR", 2)
			case what == "man":
				text, err = Man(app, section)
			case what == "bash":
				text = Bash(app)
			case what == "zsh":
				text = Zsh(app)
			case what == "fish":
				text, err = Fish(app)
			default:
				return cli.Exit(fmt.Sprintf("generate: unknown kind %q: want man, bash, zsh, fish or docs", what), 2)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(w, text)
			return err
		},
	}
}
