#!/usr/bin/env bash
# examples/demo.sh - build tcpwrapd and loginctl, serve the rules in
# examples/ on a private socket, and ask it as a Dovecot login process does:
# one check from 127.0.0.1 (granted) and one from 127.0.0.2 (refused).
# Everything lives in a temporary directory and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
tmp=$(mktemp -d /tmp/tcpwrapd-demo.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

echo "== building tcpwrapd and loginctl (the first time, Go downloads and compiles the modules: a minute or two)"
go build -o "$tmp/tcpwrapd" ./cmd/tcpwrapd
go build -o "$tmp/loginctl" ./cmd/loginctl
echo "   built"

echo "== what the rules say (loginctl check-host, like tcpdmatch)"
"$tmp/loginctl" check-host --allow-file examples/hosts.allow --deny-file examples/hosts.deny imap 127.0.0.2

echo "== starting tcpwrapd on $tmp/access"
"$tmp/tcpwrapd" --listen "$tmp/access" --allow-file examples/hosts.allow --deny-file examples/hosts.deny \
    2> "$tmp/tcpwrapd.log" &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/access" ] && break; sleep 0.05; done

echo "== live checks through the socket (loginctl query, as imap-login asks)"
"$tmp/loginctl" query --socket "$tmp/access" imap 127.0.0.1
"$tmp/loginctl" query --socket "$tmp/access" imap 127.0.0.2 || true

echo "== tcpwrapd's log"
kill -TERM "$pid"; wait "$pid" || true; pid=""
cat "$tmp/tcpwrapd.log"
