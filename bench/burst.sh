#!/bin/sh
# The high-performance 500-connection burst, Dovecot 2.3's imap-login
# against loginsvc, in pairs: both up at once on two ports, N_BURSTS
# rounds of one `loginbench conc N_CONC` burst each, the order swapped
# every round, so that the two bursts of a pair run a few seconds apart
# under the same load. bench/login.sh's conc row is one burst per
# target and round, minutes apart from the other target's: on a shared
# 2-CPU machine one burst of the same binary takes 0.04-0.08 s, which
# makes one round's ratio noise (bench/README.md, "hp burst").
# Mode hp on both: service_count = 0, client_limit = 1000,
# process_min_avail = 2, process_limit = 100, vsz_limit = 1G (Dovecot:
# the lab's mode-hp.conf and dovecot-base.conf, with its paths in the
# temp dir and its port DOVECOT_PORT; loginsvc: bench/login.sh's hp
# configuration on PORT).
# COLD=1 (default): both start afresh for every pair and are warmed up
# as bench/login.sh warms them (seq 20, seq-raw N_SEQ) before their
# burst, which is then their first: what bench/login.sh measures.
# COLD=0: one start, then the bursts back to back (warm processes).
# Env: PORT (31143), DOVECOT_PORT (31993), N_BURSTS (20), N_CONC (500),
# N_SEQ (1000), COLD (1), HOLD (300ms: how long each burst's
# connections are held), LAB, LOGINSVC_BIN, OUT
# (/tmp/burst-results.jsonl), KEEP. Root required (Dovecot). The summary
# is `loginbench bursts OUT`.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-$ROOT/../shared/labs/dovecot-login}
PORT=${PORT:-31143}
DOVECOT_PORT=${DOVECOT_PORT:-31993}
N_BURSTS=${N_BURSTS:-20}
N_CONC=${N_CONC:-500}
N_SEQ=${N_SEQ:-1000}
COLD=${COLD:-1}
HOLD=${HOLD:-300ms}
OUT=${OUT:-/tmp/burst-results.jsonl}
TMP=$(mktemp -d /tmp/burstbench.XXXXXX)
LPID=
DPID=
stop() {
	for p in $LPID $DPID; do stop_pid "$p"; done
	LPID= DPID=
}
trap 'stop; [ "${KEEP:-0}" = 1 ] && echo "kept $TMP" >&2 || rm -rf "$TMP"' EXIT

cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" # stop_pid, build_loginsvc, port_open, wait_for, login_mode_body, lab_dovecot_conf
build_loginsvc "$TMP/loginsvc" # as packaged, or LOGINSVC_BIN (bench/lib.sh)
go build -o "$TMP/loginbench" ./bench/loginbench
: > "$OUT"

for p in "$PORT" "$DOVECOT_PORT"; do
	if port_open "$p"; then echo "burst.sh: 127.0.0.1:$p is in use; set PORT/DOVECOT_PORT" >&2; exit 1; fi
done

# Dovecot: the lab's configuration, its /tmp/dovebench paths in TMP/dv.
chmod 755 "$TMP"
lab_dovecot_conf "$TMP/dv" "$DOVECOT_PORT" burstbench hp
cat > "$TMP/hp.conf" <<EOC
base_dir = $TMP/run-hp
login_socket_path =
login_prelogin_timeout = 10 mins
login_prelogin_ip_limit = 0
protocols = imap
listen = 127.0.0.1
service imap-login {
  inet_listener imap {
    port = $PORT
  }
  $(login_mode_body hp)
}
EOC

start() {
	/usr/sbin/dovecot -F -c "$TMP/dv/mode-hp.conf" 2>>"$TMP/dovecot.stderr" &
	DPID=$!
	(ulimit -n "$(ulimit -Hn)"; exec "$TMP/loginsvc" -F -c "$TMP/hp.conf") 2>>"$TMP/loginsvc.log" &
	LPID=$!
	wait_for "loginsvc on $PORT" port_open "$PORT"
	wait_for "Dovecot on $DOVECOT_PORT" port_open "$DOVECOT_PORT"
	sleep 1
	for t in "$PORT:$LPID" "$DOVECOT_PORT:$DPID"; do
		"$TMP/loginbench" -addr "127.0.0.1:${t%:*}" -master "${t#*:}" seq 20 >/dev/null
		"$TMP/loginbench" -addr "127.0.0.1:${t%:*}" -master "${t#*:}" seq-raw "$N_SEQ" >/dev/null
	done
}
burst() { # target
	if [ "$1" = loginsvc ]; then a=$PORT; m=$LPID; else a=$DOVECOT_PORT; m=$DPID; fi
	"$TMP/loginbench" -addr "127.0.0.1:$a" -master "$m" -hold "$HOLD" -target "$1" conc "$N_CONC" >> "$OUT"
}
[ "$COLD" = 1 ] || start
for i in $(seq "$N_BURSTS"); do
	[ "$COLD" = 0 ] || start
	if [ $((i % 2)) = 1 ]; then burst loginsvc; burst dovecot; else burst dovecot; burst loginsvc; fi
	[ "$COLD" = 0 ] || stop
done
stop
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$TMP/loginbench" bursts "$OUT"
echo "results in $OUT" >&2
