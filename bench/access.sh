#!/usr/bin/env bash
# bench/access.sh: tcpwrapd vs Dovecot's own tcpwrap vs a null responder.
#
# Usage: sudo bench/access.sh [options]      (see bench/README.md)
#
#   --sizes "1 1000 10000 100000"  hosts.deny line counts         (SIZES)
#   --duration 5s                  per run, null and tcpwrapd      (DURATION)
#   --dovecot-duration 4s          per run, Dovecot's tcpwrap      (DOVECOT_DURATION)
#   --dovecot-count N              instead: N checks per run       (DOVECOT_COUNT)
#   --workers 4                    concurrent clients              (WORKERS)
#   --targets "null tcpwrapd dovecot managed"                      (TARGETS)
#   --out FILE                     keep the JSON result lines      (OUT)
#   -h, --help
#
# More environment knobs: WARMUP (500ms), SRC (client address, 127.0.0.1),
# STYLE (all: "ALL: 198.18.x.y" lines | sshd: "sshd: 198.18.x.y"),
# NULL_MODE (net | raw), FRESH (1: new TCP conn per check), TCPWRAPD_FLAGS
# (extra flags for tcpwrapd), DOVECOT_PROCESS_LIMIT (100), KEEP (1: keep the
# temp dir), MANAGED_CLIENT_LIMIT (100: client_limit of the managed target).
#
# Target "managed": tcpwrapd run by a second lab Dovecot master as its
# tcpwrap service (executable = tcpwrapd --dovecot ..., client_limit =
# MANAGED_CLIENT_LIMIT, process_min_avail = 1, vsz_limit = 1G), i.e. one
# resident process that reloads the rules when they change.
#
# Every target is driven by the same client (bench/cmd/accessbench). The rule
# files are private copies in a temp dir; Dovecot's tcpwrap sees them through
# bind mounts in a private mount namespace, so /etc is never modified.
# Needs root for the Dovecot target (unshare -m, mount, dovecot master).
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

SIZES=${SIZES:-"1 1000 10000 100000"}
DURATION=${DURATION:-5s}
DOVECOT_DURATION=${DOVECOT_DURATION:-4s}
DOVECOT_COUNT=${DOVECOT_COUNT:-0}
WORKERS=${WORKERS:-4}
TARGETS=${TARGETS:-"null tcpwrapd dovecot managed"}
OUT=${OUT:-${TMPDIR:-/tmp}/accessbench-results.jsonl}
WARMUP=${WARMUP:-500ms}
SRC=${SRC:-127.0.0.1}
SENTINEL=127.0.0.2
STYLE=${STYLE:-all}
NULL_MODE=${NULL_MODE:-net}
FRESH=${FRESH:-0}
TCPWRAPD_FLAGS=${TCPWRAPD_FLAGS:-}
DOVECOT_PROCESS_LIMIT=${DOVECOT_PROCESS_LIMIT:-100}
KEEP=${KEEP:-0}
MANAGED_CLIENT_LIMIT=${MANAGED_CLIENT_LIMIT:-100}

die() { echo "access.sh: $*" >&2; exit 2; }
say() { echo "== $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
    --sizes) SIZES=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --dovecot-duration) DOVECOT_DURATION=$2; shift ;;
    --dovecot-count) DOVECOT_COUNT=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

want() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }
for t in $TARGETS; do
    case "$t" in null|tcpwrapd|dovecot|managed) ;; *) die "unknown target $t (null, tcpwrapd, dovecot, managed)" ;; esac
done
case "$STYLE" in all) DAEMON=ALL ;; sshd) DAEMON=sshd ;; *) die "STYLE must be all or sshd" ;; esac
[ "$SRC" != "$SENTINEL" ] || die "SRC must not be $SENTINEL (the sentinel rule denies it)"
command -v go >/dev/null || die "go not found on PATH"

if want managed; then
    [ "$(id -u)" = 0 ] || die "the managed target needs root (a Dovecot master). Run: sudo $0 ..."
    [ -x /usr/sbin/dovecot ] || die "/usr/sbin/dovecot not found (apt-get install dovecot-core)"
fi
if want dovecot; then
    if [ "$(id -u)" != 0 ]; then
        die "the dovecot target needs root (private mount namespace + a Dovecot master).
  Run: sudo $0 ...   or without Dovecot: TARGETS=\"null tcpwrapd\" $0"
    fi
    [ -x /usr/sbin/dovecot ] || die "/usr/sbin/dovecot not found (apt-get install dovecot-core)"
    [ -x /usr/lib/dovecot/tcpwrap ] || die "/usr/lib/dovecot/tcpwrap not found (dovecot-core 2.3)"
    command -v unshare >/dev/null || die "unshare not found (util-linux)"
    unshare -m --propagation private true 2>/dev/null || die "unshare -m failed: no CAP_SYS_ADMIN here"
fi

TMP=$(mktemp -d /tmp/accessbench.XXXXXX)
chmod 755 "$TMP" # Dovecot's unprivileged services must traverse base_dir
NULL_PID= OURS_PID= DV_PID= MG_PID= # processes we started, stopped by PID in cleanup
etc_sums() { sha256sum /etc/hosts.allow /etc/hosts.deny 2>/dev/null || true; }
ETC_BEFORE=$(etc_sums)

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh" # stop_pid
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in $OURS_PID $NULL_PID $DV_PID $MG_PID; do stop_pid "$p"; done
    if [ "$(etc_sums)" != "$ETC_BEFORE" ]; then
        echo "access.sh: WARNING: /etc/hosts.allow or /etc/hosts.deny changed during the run (not by us)" >&2
    fi
    if [ "$KEEP" = 1 ]; then echo "access.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build -------------------------------------------------------------
say "building into $TMP/bin"
mkdir -p "$TMP/bin"
(cd "$ROOT" && go build -o "$TMP/bin/accessbench" ./bench/cmd/accessbench \
    && go build -o "$TMP/bin/nullresponder" ./bench/cmd/nullresponder)
if want tcpwrapd; then
    (cd "$ROOT" && go build -o "$TMP/bin/tcpwrapd" ./cmd/tcpwrapd)
fi
if want managed; then
    # As packaged for Dovecot: static, with the early vsz_limit check.
    (cd "$ROOT" && CGO_ENABLED=0 go build -ldflags=-E=main.vszEntry -o "$TMP/bin/dv/tcpwrapd" ./cmd/tcpwrapd)
fi
AB=$TMP/bin/accessbench

# ---- rule files --------------------------------------------------------
# hosts.deny of N lines: N-1 generated addresses in 198.18.0.0/15 (RFC 2544
# benchmark range) and, last, a sentinel "ALL: 127.0.0.2". The measured
# client ($SRC) is listed nowhere, so every check scans all N lines and is
# granted; a check from the sentinel address must be denied, which proves
# the target read the file to its end.
mkdir -p "$TMP/rules"
for n in $SIZES; do
    case "$n" in ''|*[!0-9]*) die "bad size $n" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 131072 ] || die "size $n out of range 1..131072"
    awk -v n="$n" -v d="$DAEMON" -v s="$SENTINEL" 'BEGIN {
        for (i = 1; i < n; i++)
            printf "%s: 198.%d.%d.%d\n", d, 18 + int(i / 65536), int(i / 256) % 256, i % 256
        printf "ALL: %s\n", s
    }' > "$TMP/rules/deny.$n"
done
: > "$TMP/hosts.allow"
: > "$TMP/hosts.deny"
chmod 644 "$TMP/hosts.allow" "$TMP/hosts.deny"

COMMON=(-workers "$WORKERS" -warmup "$WARMUP" -src "$SRC")
[ "$FRESH" = 1 ] && COMMON+=(-fresh)

: > "$TMP/results.jsonl"
measure() { # measure TARGET SIZE SOCKET PID [accessbench flags]
    local target=$1 size=$2 sock=$3 pid=$4
    shift 4
    "$AB" run -socket "$sock" -target "$target" -rules "$size" -server-pid "$pid" \
        -wait 30s "${COMMON[@]}" "$@" >> "$TMP/results.jsonl"
}
verify() { # verify TARGET SOCKET: the sentinel client must be denied
    if "$AB" run -socket "$2" -target "$1-verify" -src "$SENTINEL" -count 4 -workers 1 \
        -warmup 0 -duration 0 -expect deny > /dev/null 2> "$TMP/verify.err"; then
        say "$1: check from $SENTINEL denied by the last rule: rules read to the end"
    else
        say "$1: WARNING: check from $SENTINEL NOT denied (rules not evaluated?): $(tail -1 "$TMP/verify.err")"
        VERIFY_FAILED="$VERIFY_FAILED $1"
    fi
}
VERIFY_FAILED=

# ---- header ------------------------------------------------------------
say "machine: $(nproc) CPUs, $(uname -r), $(go version | cut -d' ' -f3), load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ -x /usr/sbin/dovecot ] && say "dovecot $(/usr/sbin/dovecot --version 2>/dev/null)"
say "repo: $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null || echo unknown)"
say "engine (pkg/hostsrules): $(git -C "$ROOT" log -1 --format='%h %ad %s' --date=short -- pkg/hostsrules 2>/dev/null || echo unknown)"
if [ "$DOVECOT_COUNT" -gt 0 ]; then DV_RUN="$DOVECOT_COUNT checks"; else DV_RUN=$DOVECOT_DURATION; fi
if [ "$FRESH" = 1 ]; then FD_MODE="a fresh TCP conn per check"; else FD_MODE="one TCP conn per worker, reused"; fi
say "targets: $TARGETS; sizes: $SIZES; workers $WORKERS; $DURATION per run (dovecot: $DV_RUN); client $SRC; style $STYLE; passed fd: $FD_MODE"

# ---- null responder (one for the whole run) ----------------------------
if want null; then
    NULL_ARGS=(--listen "$TMP/null.sock")
    [ "$NULL_MODE" = raw ] && NULL_ARGS+=(--raw)
    "$TMP/bin/nullresponder" "${NULL_ARGS[@]}" 2> "$TMP/null.log" &
    NULL_PID=$!
fi

# ---- Dovecot master with its tcpwrap service (one for the whole run) ----
if want dovecot; then
    DV=$TMP/dovecot
    mkdir -p "$DV/run" "$DV/state"
    cat > "$DV/dovecot.conf" <<EOF
# accessbench lab instance: no protocols, no inet listeners
base_dir = $DV/run
state_dir = $DV/state
instance_name = accessbench
protocols =
listen = 127.0.0.1
log_path = $DV/dovecot.log
ssl = no
service tcpwrap {
  process_limit = $DOVECOT_PROCESS_LIMIT
  unix_listener login/tcpwrap {
    mode = 0666
  }
}
EOF
    if [ -e /etc/hosts.allow ] && [ -e /etc/hosts.deny ]; then
        # shellcheck disable=SC2016
        MOUNTS='mount --bind "$1/hosts.allow" /etc/hosts.allow && mount --bind "$1/hosts.deny" /etc/hosts.deny'
    else
        # No file to bind over: use a private copy of the whole /etc whose
        # hosts.allow/hosts.deny are links to ours (as oracle/gen.sh does).
        cp -a /etc "$TMP/etc" 2>/dev/null || true
        ln -sf "$TMP/hosts.allow" "$TMP/etc/hosts.allow"
        ln -sf "$TMP/hosts.deny" "$TMP/etc/hosts.deny"
        # shellcheck disable=SC2016
        MOUNTS='mount --bind "$1/etc" /etc'
    fi
    unshare -m --propagation private sh -c "$MOUNTS"' && shift && exec "$@"' sh "$TMP" \
        /usr/sbin/dovecot -F -c "$DV/dovecot.conf" > "$DV/master.out" 2>&1 &
    DV_PID=$!
    DV_SOCK=$DV/run/login/tcpwrap
fi

# ---- Dovecot master running tcpwrapd --dovecot (one for the whole run) --
if want managed; then
    MG=$TMP/managed
    mkdir -p "$MG/run" "$MG/state"
    cat > "$MG/dovecot.conf" <<EOF
# accessbench lab instance: tcpwrapd as the tcpwrap service
base_dir = $MG/run
state_dir = $MG/state
instance_name = accessbench-managed
protocols =
listen = 127.0.0.1
log_path = $MG/dovecot.log
ssl = no
service tcpwrap {
  executable = $TMP/bin/dv/tcpwrapd --dovecot --allow-file $TMP/hosts.allow --deny-file $TMP/hosts.deny --reload-interval 100ms
  client_limit = $MANAGED_CLIENT_LIMIT
  process_min_avail = 1
  vsz_limit = 1G
  unix_listener login/tcpwrap {
    mode = 0666
  }
}
EOF
    /usr/sbin/dovecot -F -c "$MG/dovecot.conf" > "$MG/master.out" 2>&1 &
    MG_PID=$!
    MG_SOCK=$MG/run/login/tcpwrap
fi
# managed_pid: the resident tcpwrapd child of the managed master.
managed_pid() { pgrep -P "$MG_PID" -x tcpwrapd | head -1; }
# wait_managed_rules N: until the resident process has logged a load of N deny rules.
wait_managed_rules() {
    local i
    for i in $(seq 300); do
        grep -q "rules loaded: .*deny_rules=$1 " "$MG/dovecot.log" 2>/dev/null && return 0
        sleep 0.1
    done
    die "managed tcpwrapd did not load $1 deny rules; log: $(tail -3 "$MG/dovecot.log")"
}

# ---- per size ----------------------------------------------------------
for n in $SIZES; do
    cat "$TMP/rules/deny.$n" > "$TMP/hosts.deny" # same inode: the bind mount sees it
    say "hosts.deny: $n lines ($(wc -c < "$TMP/hosts.deny") bytes)"
    if want null; then
        measure null "$n" "$TMP/null.sock" "$NULL_PID" -duration "$DURATION"
    fi
    if want tcpwrapd; then
        # A fresh tcpwrapd per size, reading the rules at start-up.
        rm -f "$TMP/tcpwrapd.sock"
        t0=$(date +%s%N)
        # shellcheck disable=SC2086
        "$TMP/bin/tcpwrapd" --listen "$TMP/tcpwrapd.sock" --socket-mode 0600 \
            --allow-file "$TMP/hosts.allow" --deny-file "$TMP/hosts.deny" \
            $TCPWRAPD_FLAGS 2>> "$TMP/tcpwrapd.log" &
        OURS_PID=$!
        "$AB" run -socket "$TMP/tcpwrapd.sock" -count 1 -workers 1 -warmup 0 -duration 0 \
            -wait 60s > /dev/null 2>&1 || die "tcpwrapd did not answer; log: $(tail -3 "$TMP/tcpwrapd.log")"
        say "tcpwrapd: first answer $(( ($(date +%s%N) - t0) / 1000000 )) ms after start, RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$OURS_PID/status")"
        verify tcpwrapd "$TMP/tcpwrapd.sock"
        measure tcpwrapd "$n" "$TMP/tcpwrapd.sock" "$OURS_PID" -duration "$DURATION"
        say "tcpwrapd: RSS after the run $(awk '/VmRSS/ {print $2, $3}' "/proc/$OURS_PID/status")"
        stop_pid "$OURS_PID"
        OURS_PID=
    fi
    if want managed; then
        kill -0 "$MG_PID" 2>/dev/null || die "managed dovecot master exited: $(tail -5 "$MG/master.out" "$MG/dovecot.log" 2>/dev/null)"
        "$AB" run -socket "$MG_SOCK" -count 1 -workers 1 -warmup 0 -duration 0 \
            -wait 60s > /dev/null 2>&1 || die "managed tcpwrapd did not answer; log: $(tail -3 "$MG/dovecot.log")"
        wait_managed_rules "$n"
        MPID=$(managed_pid)
        say "managed: resident tcpwrapd pid ${MPID:-?}, RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$MPID/status" 2>/dev/null)"
        verify managed "$MG_SOCK"
        measure managed "$n" "$MG_SOCK" "${MPID:-$MG_PID}" -duration "$DURATION"
        say "managed: tcpwrapd processes after the run: $(pgrep -P "$MG_PID" -x tcpwrapd | tr '\n' ' ')"
    fi
    if want dovecot; then
        kill -0 "$DV_PID" 2>/dev/null || die "dovecot master exited: $(tail -5 "$DV/master.out" "$DV/dovecot.log" 2>/dev/null)"
        verify dovecot "$DV_SOCK"
        if [ "$DOVECOT_COUNT" -gt 0 ]; then
            measure dovecot "$n" "$DV_SOCK" "$DV_PID" -count "$DOVECOT_COUNT" -duration 0
        else
            measure dovecot "$n" "$DV_SOCK" "$DV_PID" -duration "$DOVECOT_DURATION"
        fi
    fi
done

say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
cp "$TMP/results.jsonl" "$OUT"
say "JSON results: $OUT"
"$AB" report "$TMP/results.jsonl"
if [ -n "$VERIFY_FAILED" ]; then
    echo
    echo "WARNING: the sentinel check was not denied by:$VERIFY_FAILED (rule engine stub or not reading the file?)"
fi
if want managed && grep -q 'Error\|Fatal\|Panic' "$MG/dovecot.log" 2>/dev/null; then
    echo "WARNING: the managed Dovecot logged errors:" >&2
    grep 'Error\|Fatal\|Panic' "$MG/dovecot.log" | head -5 >&2
fi
if want dovecot && grep -q 'Error\|Fatal\|Panic' "$DV/dovecot.log" 2>/dev/null; then
    echo "WARNING: Dovecot logged errors:" >&2
    grep 'Error\|Fatal\|Panic' "$DV/dovecot.log" | head -5 >&2
fi
