#!/usr/bin/env bash
# bench/policy.sh - policy front ends side by side: checks/s and latency
# over persistent connections, in one run.
#
#   bench/policy.sh [--sizes "1 100000"] [--workers "4 64"] [--duration 5s] [--targets "..."] [--out FILE]
#
# Dovecot's auth policy (HTTP/1.1 keep-alive, the request Dovecot 2.3 sends):
#   null      policybench null -proto authpolicy: net/http with tcpwrapd's
#             server settings, answers {"status":0} without looking
#   tcpwrapd  tcpwrapd --policy-listen 127.0.0.1:0 (a fresh process per size)
#   python    bench/policyserver.py: http.server, a thread per connection,
#             hosts.deny addresses in a set (the kind admins write)
# Postfix's policy service (persistent unix-socket connections, Postfix
# 3.7's RCPT attribute block):
#   null      policybench null -proto postfix: answers action=DUNNO
#   tcpwrapd  the same tcpwrapd process, --postfix-listen SOCKET
#
# hosts.deny of N lines: N-1 "ALL: 198.18.x.y" lines and last "ALL: 127.0.0.2".
# The measured client 127.0.0.1 is listed nowhere (granted after the whole
# file); before measuring, requests for 127.0.0.2 must be denied by
# tcpwrapd and the Python server (they read the file to its end).
# Needs no root; writes only into a temp dir; stops what it started by PID.
# Environment: SIZES WORKERS DURATION WARMUP TARGETS OUT KEEP=1 PYTHON TCPWRAPD_FLAGS,
# TCPWRAPD=BINARY (a tcpwrapd built elsewhere, e.g. from an older commit, instead of this tree's)
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

SIZES=${SIZES:-"1 100000"}
WORKERS=${WORKERS:-"4 64"}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-500ms}
TARGETS=${TARGETS:-"null tcpwrapd python"}
OUT=${OUT:-${TMPDIR:-/tmp}/policybench-results.jsonl}
KEEP=${KEEP:-0}
TCPWRAPD_FLAGS=${TCPWRAPD_FLAGS:-}
TCPWRAPD=${TCPWRAPD:-}
if [ -z "${PYTHON:-}" ]; then
    if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi

die() { echo "policy.sh: $*" >&2; exit 2; }
say() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --sizes) SIZES=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
want() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }
for t in $TARGETS; do
    case "$t" in null|tcpwrapd|python) ;; *) die "unknown target $t (null, tcpwrapd, python)" ;; esac
done
command -v go >/dev/null || die "go not found on PATH"
if want python; then command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON, or leave python out of TARGETS)"; fi

TMP=$(mktemp -d /tmp/policybench.XXXXXX)
PIDS=() # every process we started, stopped by PID in cleanup
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh" # stop_pid
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    if [ "$KEEP" = 1 ]; then echo "policy.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_file FILE: until FILE is not empty (30 s at most).
wait_file() {
    local i
    for i in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.1; done
    die "$1 not written in 30 s"
}

say "building into $TMP/bin"
mkdir -p "$TMP/bin"
(cd "$ROOT" && go build -o "$TMP/bin/policybench" ./bench/cmd/policybench)
if [ -n "$TCPWRAPD" ]; then
    [ -x "$TCPWRAPD" ] || die "TCPWRAPD=$TCPWRAPD is not an executable"
    cp "$TCPWRAPD" "$TMP/bin/tcpwrapd"
    say "tcpwrapd: $TCPWRAPD"
else
    (cd "$ROOT" && go build -o "$TMP/bin/tcpwrapd" ./cmd/tcpwrapd)
fi
PB=$TMP/bin/policybench

mkdir -p "$TMP/rules"
for n in $SIZES; do
    case "$n" in ''|*[!0-9]*) die "bad size $n" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 131072 ] || die "size $n out of range 1..131072"
    awk -v n="$n" 'BEGIN {
        for (i = 1; i < n; i++)
            printf "ALL: 198.%d.%d.%d\n", 18 + int(i / 65536), int(i / 256) % 256, i % 256
        printf "ALL: 127.0.0.2\n"
    }' > "$TMP/rules/deny.$n"
done
: > "$TMP/hosts.allow"

say "machine: $(nproc) CPUs, $(uname -r), $(go version | cut -d' ' -f3), $("$PYTHON" --version 2>&1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "repo: $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
say "targets: $TARGETS; sizes: $SIZES; clients: $WORKERS; $DURATION per run after $WARMUP warm-up"

: > "$TMP/results.jsonl"
measure() { # measure PROTO TARGET SIZE ADDR PID WORKERS
    "$PB" run -proto "$1" -target "$2" -rules "$3" -addr "$4" -server-pid "$5" -workers "$6" \
        -duration "$DURATION" -warmup "$WARMUP" -wait 30s >> "$TMP/results.jsonl"
}
verify() { # verify PROTO TARGET ADDR: the sentinel client must be denied
    if "$PB" run -proto "$1" -target "$2-verify" -addr "$3" -client 127.0.0.2 -count 4 -workers 1 \
        -warmup 0 -duration 0 -expect deny > /dev/null 2> "$TMP/verify.err"; then
        say "$2 ($1): 127.0.0.2 denied by the last line: rules read to the end"
    else
        die "$2 ($1): 127.0.0.2 NOT denied: $(tail -1 "$TMP/verify.err")"
    fi
}

if want null; then
    "$PB" null -proto authpolicy -listen 127.0.0.1:0 -addr-file "$TMP/null-http.addr" 2> "$TMP/null-http.log" &
    NULL_HTTP_PID=$!; PIDS+=("$NULL_HTTP_PID")
    "$PB" null -proto postfix -listen "$TMP/null-postfix.sock" -addr-file "$TMP/null-postfix.addr" 2> "$TMP/null-postfix.log" &
    NULL_PF_PID=$!; PIDS+=("$NULL_PF_PID")
    wait_file "$TMP/null-http.addr"; wait_file "$TMP/null-postfix.addr"
    NULL_HTTP=$(cat "$TMP/null-http.addr")
fi

for n in $SIZES; do
    cp "$TMP/rules/deny.$n" "$TMP/hosts.deny"
    say "hosts.deny: $n lines ($(wc -c < "$TMP/hosts.deny") bytes)"
    OURS_PID= PY_PID=
    if want tcpwrapd; then
        rm -f "$TMP/tcpwrapd-postfix.sock"
        : > "$TMP/tcpwrapd.$n.log"
        # shellcheck disable=SC2086
        "$TMP/bin/tcpwrapd" --policy-listen 127.0.0.1:0 --postfix-listen "$TMP/tcpwrapd-postfix.sock" \
            --allow-file "$TMP/hosts.allow" --deny-file "$TMP/hosts.deny" $TCPWRAPD_FLAGS 2> "$TMP/tcpwrapd.$n.log" &
        OURS_PID=$!; PIDS+=("$OURS_PID")
        for i in $(seq 600); do
            [ "$(grep -c 'msg=listening' "$TMP/tcpwrapd.$n.log")" -ge 2 ] && break
            kill -0 "$OURS_PID" 2>/dev/null || die "tcpwrapd exited: $(tail -3 "$TMP/tcpwrapd.$n.log")"
            sleep 0.1
        done
        OURS_HTTP=$(sed -n 's/.*msg=listening front_end=authpolicy addr=\([^ ]*\).*/\1/p' "$TMP/tcpwrapd.$n.log" | head -1)
        [ -n "$OURS_HTTP" ] || die "tcpwrapd's auth policy address not in its log: $(cat "$TMP/tcpwrapd.$n.log")"
        verify authpolicy tcpwrapd "$OURS_HTTP"
        verify postfix tcpwrapd "$TMP/tcpwrapd-postfix.sock"
        say "tcpwrapd: RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$OURS_PID/status")"
    fi
    if want python; then
        rm -f "$TMP/python.port"
        "$PYTHON" "$HERE/policyserver.py" "$TMP/hosts.deny" "$TMP/python.port" 2> "$TMP/python.$n.log" &
        PY_PID=$!; PIDS+=("$PY_PID")
        wait_file "$TMP/python.port"
        PY_HTTP=127.0.0.1:$(cat "$TMP/python.port")
        verify authpolicy python "$PY_HTTP"
    fi
    for w in $WORKERS; do
        if want null; then measure authpolicy null "$n" "$NULL_HTTP" "$NULL_HTTP_PID" "$w"; fi
        if want tcpwrapd; then measure authpolicy tcpwrapd "$n" "$OURS_HTTP" "$OURS_PID" "$w"; fi
        if want python; then measure authpolicy python "$n" "$PY_HTTP" "$PY_PID" "$w"; fi
    done
    for w in $WORKERS; do
        if want null; then measure postfix null "$n" "$TMP/null-postfix.sock" "$NULL_PF_PID" "$w"; fi
        if want tcpwrapd; then measure postfix tcpwrapd "$n" "$TMP/tcpwrapd-postfix.sock" "$OURS_PID" "$w"; fi
    done
    [ -z "$OURS_PID" ] || stop_pid "$OURS_PID"
    [ -z "$PY_PID" ] || stop_pid "$PY_PID"
done

say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
cp "$TMP/results.jsonl" "$OUT"
say "JSON results: $OUT"
"$PB" report "$TMP/results.jsonl"
