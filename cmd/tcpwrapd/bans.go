package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/tcpwrapd/tcpwrapd/pkg/bans"
)

// banFlags are the options of failure-driven bans besides --bans.
var banFlags = []string{"ban-threshold", "ban-window", "ban-time", "ban-max-sources", "ban-ipv6-prefix", "ban-state"}

// banSet builds the failure-driven bans of --bans and the --ban-*
// options (nil without --bans), loading --ban-state. They need the auth
// policy front end (policy): its reports are their only feed. Bad
// values are usage errors.
func banSet(c *cli.Context, policy bool, log *slog.Logger) (*bans.Bans, error) {
	if !c.Bool("bans") {
		for _, f := range banFlags {
			if c.IsSet(f) {
				return nil, usageError{fmt.Errorf("--%s needs --bans", f)}
			}
		}
		return nil, nil
	}
	if !policy {
		return nil, usageError{errors.New("--bans needs the auth policy front end (--policy-listen, or a socket passed as authpolicy): bans learn from Dovecot's auth policy reports")}
	}
	cfg := bans.Config{
		Threshold: c.Int("ban-threshold"), Window: c.Duration("ban-window"), BanFor: c.Duration("ban-time"),
		MaxSources: c.Int("ban-max-sources"), IPv6Prefix: c.Int("ban-ipv6-prefix"),
		StateFile: c.String("ban-state"), Log: log,
	}
	if cfg.Threshold <= 0 || cfg.Window <= 0 || cfg.BanFor <= 0 || cfg.MaxSources <= 0 || cfg.IPv6Prefix <= 0 {
		return nil, usageError{errors.New("--ban-threshold, --ban-window, --ban-time, --ban-max-sources and --ban-ipv6-prefix must be positive")}
	}
	b, err := bans.New(cfg)
	if err != nil {
		return nil, usageError{err}
	}
	cfg = b.Config()
	log.Info("failure-driven bans on", "threshold", cfg.Threshold, "window", cfg.Window, "ban_time", cfg.BanFor,
		"max_sources", cfg.MaxSources, "ipv6_prefix", cfg.IPv6Prefix, "state_file", cfg.StateFile, "loaded", len(b.List()))
	return b, nil
}
