#!/usr/bin/env bash
# bench/memory.sh: tcpwrapd's memory with a big hosts.deny under Dovecot's
# vsz_limit, this tree and (optionally) another revision side by side.
#
# Usage: bench/memory.sh [--lines N] [--reloads N] [--base REV]
#
#   --lines 1000000   hosts.deny lines (LINES)
#   --reloads 5       rewrites of hosts.deny after the first load (RELOADS)
#   --base REV        also measure the tcpwrapd of git revision REV, e.g. main (BASE)
#   --vsz 1G          RLIMIT_AS, as Dovecot's vsz_limit sets it (VSZ)
#   --shape blocklist what each line is (SHAPE): blocklist (1,000 CIDR,
#                     1,000 IPv6 /64, then "ALL: a.b.c.d"), v6net
#                     ("imap: [2001:db8:x:y::z]/len"), names
#                     ("ALL: .hN-<hex>.example.com"), options
#                     ("ALL: 10.x.y.z: severity auth.info : setenv XN %a : deny")
#                     or multi (125 addresses a line)
#
# For each binary (built with CGO_ENABLED=0, as packaged for Dovecot), it
# starts tcpwrapd under prlimit --as=VSZ on a private socket, waits for its
# "rules loaded" log line, rewrites hosts.deny RELOADS times (atomically,
# with a new last line) and waits for each reload, then reads VmPeak, VmSize
# and VmRSS from /proc. It prints one line per binary. A binary that dies
# is reported as such with the last line of its log. Needs no root; never
# touches /etc.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
LINES=${LINES:-1000000}
RELOADS=${RELOADS:-5}
BASE=${BASE:-}
VSZ=${VSZ:-1G}
SHAPE=${SHAPE:-blocklist}

while [ $# -gt 0 ]; do
    case "$1" in
    --lines) LINES=$2; shift ;;
    --reloads) RELOADS=$2; shift ;;
    --base) BASE=$2; shift ;;
    --vsz) VSZ=$2; shift ;;
    --shape) SHAPE=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "memory.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
command -v prlimit >/dev/null || { echo "memory.sh: prlimit not found (util-linux)" >&2; exit 2; }
case "$VSZ" in
unlimited) AS=unlimited ;;
*) AS=$(numfmt --from=iec "$VSZ") || { echo "memory.sh: bad --vsz $VSZ" >&2; exit 2; } ;;
esac

TMP=$(mktemp -d /tmp/memorybench.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill "$PID"; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

build() { # build NAME DIR
    (cd "$2" && CGO_ENABLED=0 go build -o "$TMP/$1" ./cmd/tcpwrapd)
}
build ours "$ROOT"
BINS=(ours)
if [ -n "$BASE" ]; then
    mkdir "$TMP/base-src"
    git -C "$ROOT" archive "$BASE" | tar -x -C "$TMP/base-src"
    build base "$TMP/base-src"
    BINS=(base ours)
fi

# gen GEN: hosts.deny of LINES lines of SHAPE, the last one
# "ALL: 127.0.0.<GEN+2>", replaced atomically.
gen() {
    awk -v n="$LINES" -v g="$1" -v shape="$SHAPE" 'BEGIN {
        print "# generated " shape
        m = n - 1
        if (shape == "blocklist") {
            for (i = 0; i < 1000 && i < n - 1; i++) printf "ALL: 10.%d.%d.0/24\n", int(i / 256), i % 256
            for (i = 0; i < 1000 && i < n - 1001; i++) printf "ALL: [2001:db8:%x::]/64\n", i
            m = n - 2001
        }
        for (i = 0; i < m; i++) {
            a = 11 * 16777216 + i
            if (shape == "blocklist")
                printf "ALL: %d.%d.%d.%d\n", int(a / 16777216), int(a / 65536) % 256, int(a / 256) % 256, a % 256
            else if (shape == "v6net")
                printf "imap: [2001:db8:%x:%x::%x]/%d\n", int(i / 65536), i % 65536, i % 7 + 1, 64 + i % 65
            else if (shape == "names")
                printf "ALL: .h%d-%08x%08x.example.com\n", i, (i * 2654435761) % 4294967296, (i * 40503) % 4294967296
            else if (shape == "options")
                printf "ALL: 10.%d.%d.%d: severity auth.info : setenv X%d %%a : deny\n", int(i / 65536) % 256, int(i / 256) % 256, i % 256, i
            else if (shape == "multi") {
                printf "ALL:"
                for (j = 0; j < 125; j++) { a = 11 * 16777216 + i * 125 + j
                    printf " %d.%d.%d.%d", int(a / 16777216), int(a / 65536) % 256, int(a / 256) % 256, a % 256 }
                printf "\n"
            } else { print "memory.sh: unknown --shape " shape > "/dev/stderr"; exit 2 }
        }
        printf "ALL: 127.0.0.%d\n", g + 2
    }' > "$TMP/hosts.deny.tmp"
    mv "$TMP/hosts.deny.tmp" "$TMP/hosts.deny"
}
: > "$TMP/hosts.allow"

vm() { awk '/^Vm(Peak|Size|RSS)/ {printf "%s %d MiB  ", $1, $2 / 1024}' "/proc/$1/status"; }
loads() { grep -c 'msg="rules loaded"' "$1" 2>/dev/null || true; }
wait_loads() { # wait_loads LOG N: until N loads are logged or the process died
    local i
    for i in $(seq 1200); do
        [ "$(loads "$1")" -ge "$2" ] && return 0
        kill -0 "$PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

printf '== %s: %d lines (%s bytes), RLIMIT_AS %s, %d reloads, %s, %d CPUs, load %s\n' "$SHAPE" "$LINES" \
    "$(gen 0; wc -c < "$TMP/hosts.deny")" "$VSZ" "$RELOADS" "$(go version | cut -d' ' -f3)" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)"
for b in "${BINS[@]}"; do
    gen 0
    log=$TMP/$b.log
    rm -f "$TMP/sock"
    prlimit --as="$AS" "$TMP/$b" --listen "$TMP/sock" --allow-file "$TMP/hosts.allow" \
        --deny-file "$TMP/hosts.deny" --reload-interval 100ms 2> "$log" &
    PID=$!
    if ! wait_loads "$log" 1; then
        echo "$b: DIED on the first load: $(grep -m1 'fatal error\|out of memory' "$log" || tail -1 "$log")"
        PID=
        continue
    fi
    first="$(vm "$PID") load $(grep -m1 'msg="rules loaded"' "$log" | sed 's/.*took=//')"
    ok=1
    for k in $(seq "$RELOADS"); do
        gen "$k"
        if ! wait_loads "$log" $((k + 1)); then
            echo "$b: DIED on reload $k: $(grep -m1 'fatal error\|out of memory' "$log" || tail -1 "$log")"
            ok=0
            break
        fi
    done
    if [ "$ok" = 1 ]; then
        echo "$b: after the first load: $first"
        echo "$b: after $RELOADS reloads:  $(vm "$PID") last load $(grep 'msg="rules loaded"' "$log" | tail -1 | sed 's/.*took=//')"
    fi
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
done
