package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/postfix/smtpdpolicy"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// listenSpec is one --policy-listen or --postfix-listen value:
//
//	ADDR[,user=USER][,group=GROUP][,mode=OCTAL][,daemon=NAME][,reject=CODE]
//
// ADDR is HOST:PORT on loopback or an absolute socket path; user, group
// and mode apply to a socket path (default root, 0600); daemon and
// reject are the Postfix front end's Daemon and RejectCode.
type listenSpec struct {
	addr               string
	uid, gid           int
	mode               os.FileMode
	daemon, rejectCode string
}

// parseListenSpec parses v; postfix allows daemon= and reject=.
func parseListenSpec(flag, v string, postfix bool) (listenSpec, error) {
	parts := strings.Split(v, ",")
	s := listenSpec{addr: parts[0], uid: -1, gid: -1, mode: accessd.DefaultSocketMode}
	if s.addr == "" {
		return s, fmt.Errorf("--%s %q: no address", flag, v)
	}
	path := strings.HasPrefix(s.addr, "/")
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok || val == "" {
			return s, fmt.Errorf("--%s %q: %q: want NAME=VALUE", flag, v, p)
		}
		var err error
		switch {
		case k == "user" && path:
			s.uid, err = accessd.LookupUser(val)
		case k == "group" && path:
			s.gid, err = accessd.LookupGroup(val)
		case k == "mode" && path:
			var m uint64
			if m, err = strconv.ParseUint(val, 8, 32); err == nil && m > 0o777 {
				err = fmt.Errorf("%q is not a mode", val)
			}
			s.mode = os.FileMode(m)
		case k == "daemon" && postfix:
			s.daemon, err = val, wrapopts.CheckPlainName(val)
		case k == "reject" && postfix:
			s.rejectCode, err = val, smtpdpolicy.CheckRejectCode(val)
		default:
			what := "user, group, mode (for a socket path)"
			if postfix {
				what += ", daemon, reject"
			}
			return s, fmt.Errorf("--%s %q: unknown option %q (want %s)", flag, v, k, what)
		}
		if err != nil {
			return s, fmt.Errorf("--%s %q: %s: %w", flag, v, k, err)
		}
	}
	return s, nil
}

// policyListeners parses the --policy-listen and --postfix-listen values
// and creates their listeners (accessd.ListenPolicy), adding them to the
// ones socket activation passed. A bad value is a usage error; on any
// error the listeners created so far are closed.
func policyListeners(policy, postfix []string, activated accessd.ActivatedSockets) (auth []net.Listener, pf []accessd.PostfixListener, err error) {
	var specs []listenSpec
	for i, v := range append(append([]string(nil), policy...), postfix...) {
		isPostfix := i >= len(policy)
		flag := "policy-listen"
		if isPostfix {
			flag = "postfix-listen"
		}
		s, err := parseListenSpec(flag, v, isPostfix)
		if err != nil {
			return nil, nil, usageError{err}
		}
		specs = append(specs, s)
	}
	auth = append(auth, activated.AuthPolicy...)
	for _, ln := range activated.Postfix {
		pf = append(pf, accessd.PostfixListener{Listener: ln})
	}
	for i, s := range specs {
		ln, lerr := accessd.ListenPolicy(s.addr, s.mode, s.uid, s.gid)
		if lerr != nil {
			for _, ln := range auth {
				ln.Close()
			}
			for _, p := range pf {
				p.Listener.Close()
			}
			return nil, nil, fmt.Errorf("listen %s: %w", s.addr, lerr)
		}
		if i < len(policy) {
			auth = append(auth, ln)
		} else {
			pf = append(pf, accessd.PostfixListener{Listener: ln, Daemon: s.daemon, RejectCode: s.rejectCode})
		}
	}
	return auth, pf, nil
}
