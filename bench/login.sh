#!/bin/sh
# Login front-end benchmark: Dovecot 2.3's imap-login (lab master from
# ../shared/labs/dovecot-login) and loginsvc side by side, one Go driver
# (bench/loginbench), same port (127.0.0.1:31143), each mode:
#   hs          service_count = 1, process_min_avail = 0, process_limit = 1024
#   hs-prefork  the same with process_min_avail = 16
#   hp          service_count = 0, client_limit = 1000, process_min_avail = 2, process_limit = 100
#   hp-idle     loginsvc only: service_count = 0, client_limit = 19000,
#               process_limit = 6, process_min_avail = 6, login_prelogin_timeout = 10 mins
#               (client_limit + 65 must fit under the hard RLIMIT_NOFILE, 20000
#               in the VM, where root lacks CAP_SYS_RESOURCE; the driver uses
#               one worker process per 15,000 connections for the same reason)
#   floor       bench/cmd/floorgreeter, 2 threads: accept, greeting, read,
#               LOGOUT reply, close with blocking system calls and nothing
#               else; what loopback TCP itself costs here (seq-raw, par-raw only)
# Tests: seq N_SEQ (connect, greeting, LOGOUT, one at a time, Go net
# client), seq-raw N_SEQ (the same with blocking system calls on one
# thread: no Go scheduler between the client and the server), par-raw
# N_SEQ (PAR such clients at once: throughput), each with the service's
# and the driver's CPU time per connection; conc N_CONC (all at once,
# held idle, processes and PSS measured); hp-idle runs
# "loginbench idle N_IDLE" instead: N_IDLE connections from 127.0.0.1..SRC
# held idle, PSS of the login processes and of all loginsvc processes,
# then a NOOP on every connection (alive), then all closed. Root required.
# Env: LAB (default ../shared/labs/dovecot-login relative to the repo),
# N_SEQ (1000), N_CONC (500), N_IDLE (100000), SRC (8), MODES ("hs
# hs-prefork hp"; add hp-idle for the 100,000-connection run), TARGETS
# ("dovecot loginsvc floor"), PAR (4), OUT (/tmp/loginbench-results.jsonl).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-$ROOT/../shared/labs/dovecot-login}
N_SEQ=${N_SEQ:-1000}
N_CONC=${N_CONC:-500}
N_IDLE=${N_IDLE:-100000}
SRC=${SRC:-8}
MODES=${MODES:-"hs hs-prefork hp"}
TARGETS=${TARGETS:-"dovecot loginsvc floor"}
PAR=${PAR:-4}
OUT=${OUT:-/tmp/loginbench-results.jsonl}
TMP=$(mktemp -d /tmp/loginbench.XXXXXX)
LPID=
FPID=
trap 'stop_loginsvc; [ -x "$LAB/dovebench.sh" ] && "$LAB/dovebench.sh" stop >/dev/null 2>&1; rm -rf "$TMP"' EXIT

cd "$ROOT"
# loginsvc is built as deploy/build-packages.sh builds it (static Go, PIE):
# a cgo build links libc and ld.so, which costs ~0.7 ms more CPU per
# high-security process start. LOGINSVC_BUILD_FLAGS overrides.
CGO_ENABLED=0 go build ${LOGINSVC_BUILD_FLAGS:--buildmode=pie -trimpath} -o "$TMP/loginsvc" ./cmd/loginsvc
go build -o "$TMP/loginbench" ./bench/loginbench
go build -o "$TMP/floorgreeter" ./bench/cmd/floorgreeter
: > "$OUT"

stop_loginsvc() {
	if [ -n "$FPID" ]; then
		kill -TERM "$FPID" 2>/dev/null || true
		wait "$FPID" 2>/dev/null || true
		FPID=
	fi
	if [ -n "$LPID" ]; then
		kill -TERM "$LPID" 2>/dev/null || true
		i=0; while kill -0 "$LPID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
		LPID=
	fi
}

loginsvc_conf() { # mode
	case $1 in
	hs) body="service_count = 1
  process_min_avail = 0
  process_limit = 1024" ;;
	hs-prefork) body="service_count = 1
  process_min_avail = 16
  process_limit = 1024" ;;
	hp) body="service_count = 0
  client_limit = 1000
  process_min_avail = 2
  process_limit = 100
  vsz_limit = 1G" ;;
	hp-idle) body="service_count = 0
  client_limit = ${IDLE_CLIENT_LIMIT:-19000}
  process_min_avail = ${IDLE_PROCS:-6}
  process_limit = ${IDLE_PROCS:-6}
  vsz_limit = 1G" ;;
	esac
	cat > "$TMP/$1.conf" <<EOC
base_dir = $TMP/run-$1
login_prelogin_timeout = 10 mins
# the driver holds thousands of pre-login connections per address (hp-idle)
login_prelogin_ip_limit = 0
protocols = imap
listen = 127.0.0.1
service imap-login {
  inet_listener imap {
    port = 31143
  }
  $body
}
EOC
}

wait_port() {
	i=0
	until python3 -c 'import socket; socket.create_connection(("127.0.0.1",31143),0.2).close()' 2>/dev/null; do
		sleep 0.1; i=$((i+1)); [ $i -lt 100 ] || { echo "no listener" >&2; exit 1; }
	done
	sleep 1
}

for mode in $MODES; do
	for t in $TARGETS; do
		if [ "$mode" = hp-idle ] && [ "$t" != loginsvc ]; then
			continue # the lab has no Dovecot configuration for it
		fi
		if [ "$t" = floor ] && [ "$mode" != hp ]; then
			continue # one floor for all modes, measured with hp
		fi
		case $t in
		dovecot)
			"$LAB/dovebench.sh" start "mode-$mode.conf" >/dev/null
			pid=$(cat /tmp/dovebench/run/master.pid) ;;
		loginsvc)
			loginsvc_conf "$mode"
			# Login processes set RLIMIT_NOFILE to client_limit + 65
			# themselves; the supervisor gets the hard limit.
			(ulimit -n "$(ulimit -Hn)"; exec "$TMP/loginsvc" -F -c "$TMP/$mode.conf") 2>"$TMP/loginsvc-$mode.log" &
			LPID=$!; pid=$LPID
			wait_port ;;
		floor)
			"$TMP/floorgreeter" -addr 127.0.0.1:31143 -threads 2 &
			FPID=$!; pid=$FPID
			wait_port ;;
		esac
		"$TMP/loginbench" -addr 127.0.0.1:31143 -master "$pid" seq 20 >/dev/null # warm-up
		if [ "$mode" = hp-idle ]; then
			"$TMP/loginbench" -addr 127.0.0.1:31143 -master "$pid" -src "$SRC" -hold 5s -target "$t/$mode" idle "$N_IDLE" | tee -a "$OUT"
		else
			lb() { "$TMP/loginbench" -addr 127.0.0.1:31143 -master "$pid" -target "$t/$mode" "$@" | tee -a "$OUT"; }
			[ "$t" = floor ] || lb seq "$N_SEQ"
			lb seq-raw "$N_SEQ"
			lb -clients "$PAR" seq-raw "$N_SEQ"
			[ "$t" = floor ] || lb conc "$N_CONC"
		fi
		case $t in
		dovecot) "$LAB/dovebench.sh" stop ;;
		loginsvc | floor) stop_loginsvc ;;
		esac
		sleep 1
	done
done
echo
"$TMP/loginbench" report "$OUT"
echo "results in $OUT" >&2
