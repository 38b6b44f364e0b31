package ctl

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// DefaultLoginControlSocket is loginsvc's control socket with the default
// base_dir (/run/loginsvc).
const DefaultLoginControlSocket = "/run/loginsvc/loginsvc.ctl"

// loginSocketFlags are --socket PATH and -c CONFIG: the control socket
// directly, or the base_dir of loginsvc's configuration file.
func loginSocketFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "socket", Value: DefaultLoginControlSocket, Usage: "loginsvc control socket `PATH` (base_dir/loginsvc.ctl)"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "find the control socket from base_dir in loginsvc's configuration `FILE` (e.g. /etc/loginsvc/loginsvc.conf)"},
	}
}

// loginControlSocket is the control socket the flags name: -c CONFIG's
// base_dir/loginsvc.ctl, else --socket.
func loginControlSocket(c *cli.Context) (string, error) {
	if f := c.String("config"); f != "" {
		if c.IsSet("socket") {
			return "", usagef("give --socket or -c, not both")
		}
		cfg, err := config.ParseFile(f)
		if err != nil {
			return "", fmt.Errorf("-c %s: %w", f, err)
		}
		return cfg.ControlSocket(), nil
	}
	return c.String("socket"), nil
}

func fetchLoginStatus(c *cli.Context) (*control.Status, error) {
	path, err := loginControlSocket(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	st, err := control.QueryStatus(ctx, path)
	if err != nil {
		return nil, loginSocketError(path, err)
	}
	return st, nil
}

// loginSocketError is err from loginsvc's control socket path, with a
// hint.
func loginSocketError(path string, err error) error {
	return fmt.Errorf("loginsvc control socket %s: %w (is loginsvc running? a base_dir other than /run/loginsvc moves the socket: give --socket PATH or -c CONFIG)", path, err)
}

// loginStatusAction fetches loginsvc's status and prints it as JSON with
// --json, else with text.
func loginStatusAction(text func(io.Writer, *control.Status) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		st, err := fetchLoginStatus(c)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return writeJSON(c.App.Writer, st)
		}
		return text(c.App.Writer, st)
	}
}

// procsCommand is `loginctl procs`: loginsvc's login processes.
func procsCommand() *cli.Command {
	return &cli.Command{
		Name:  "procs",
		Usage: "list loginsvc's login processes (pid, service, mode, clients by state, logins, age)",
		Description: `Asks loginsvc's control socket (root only). --json prints control.Status
(schema "version": 1) with every process.`,
		Flags: append(loginSocketFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}),
		Action: loginStatusAction(func(w io.Writer, st *control.Status) error {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PID\tSERVICE\tMODE\tGEN\tSTATE\tCHECKING\tLOGGING-IN\tPROXYING\tSERVED\tLOGINS\tAGE")
			now := time.Now()
			for _, s := range st.Services {
				for _, p := range s.Procs {
					state := "ready"
					if !p.Ready {
						state = "starting"
					}
					if p.Stopping != "" {
						state = "stopping(" + p.Stopping + ")"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", p.PID, s.Name, p.Mode, p.Generation, state,
						p.Checking, p.LoggingIn, p.Proxying, p.Served, p.Logins, now.Sub(p.Started).Round(time.Second))
				}
			}
			return tw.Flush()
		}),
	}
}

// loginStatusCommand is `loginctl login-status`: loginsvc's limits and
// counters per service.
func loginStatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "login-status",
		Usage: "show loginsvc's per-service limits and counters (accepted, refused, access errors, evicted, logins, failed authentications, proxying clients)",
		Flags: append(loginSocketFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}),
		Action: loginStatusAction(func(w io.Writer, st *control.Status) error {
			fmt.Fprintf(w, "loginsvc pid %d, up %s, configuration generation %d\n", st.PID, time.Since(st.Started).Round(time.Second), st.Generation)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tMODE\tPROCS\tLIMITS\tACCEPTED\t(DIRECT)\tREFUSED\tACCESS-ERR\tEVICTED\tDROPPED\tLOST\tCLOSED\tSPAWNED\tSPAWN-FAIL\tCRASHES\tTHROTTLES\tPENDING\tLOGINS\tAUTH-FAIL\tPROXYING")
			for _, s := range st.Services {
				ct := s.Counters
				proxying := 0
				for _, p := range s.Procs {
					proxying += p.Proxying
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\tproc=%d client=%d min=%d\t%d\t(%d)\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Mode, len(s.Procs),
					s.ProcessLimit, s.ClientLimit, s.ProcessMinAvail, ct.Accepted, ct.Direct, ct.Refused, ct.AccessErrors, ct.Evicted, ct.Dropped, ct.Lost, ct.Closed,
					ct.Spawned, ct.SpawnFailures, ct.Crashes, ct.Throttles, s.Pending, ct.Logins, ct.AuthFailures, proxying)
			}
			return tw.Flush()
		}),
	}
}
