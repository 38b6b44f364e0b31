#!/bin/sh
# Login front-end benchmark: Dovecot 2.3's imap-login (the lab's
# configuration from ../shared/labs/dovecot-login, its paths in the temp
# dir, on 127.0.0.1:D_PORT) and loginsvc (127.0.0.1:31143) side by side,
# up at once, one Go driver (bench/loginbench), each mode:
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
#               else; what loopback TCP itself costs here (seq-raw, par-raw
#               only; on 127.0.0.1:F_PORT)
# Each row measures the round's targets in turns, TURNS runs each in the
# order A B C, C B A, ... (loginbench -also), so that a load that comes
# and goes on the shared machine weighs on all alike.
# Tests: seq N_SEQ (connect, greeting, LOGOUT, one at a time, Go net
# client), seq-raw N_SEQ (the same with blocking system calls on one
# thread: no Go scheduler between the client and the server), par-raw
# N_SEQ (PAR such clients at once: throughput), each with the service's
# and the driver's CPU time per connection; conc N_CONC (all at once,
# held idle, processes and PSS measured; CONC_BURSTS bursts, the first
# of each target held and measured, the others in turns: the time until
# all are greeted is the median); hp-idle runs
# "loginbench idle N_IDLE" instead: N_IDLE connections from 127.0.0.1..SRC
# held idle, PSS of the login processes and of all loginsvc processes,
# then a NOOP on every connection (alive), then all closed. Root required.
# Login tests (TESTS contains "login"; modes hs and hp only): a Dovecot 2.3
# with its post-login imap, a passwd-file passdb (bench/benchpass), one
# message in bench's INBOX and TLS (a self-signed P-256 key), run from the
# temp dir, started afresh for every round. Both front ends are in front
# of that one Dovecot at once: its own imap-login listens on D_PORT
# (plaintext) and D_TLS_PORT (implicit TLS), loginsvc (base_dir =
# Dovecot's base_dir, so its login processes use Dovecot's auth socket
# login/login and its imap socket login/imap) on PORT and TLS_PORT.
# Tests: login N_LOGIN (LOGIN + SELECT INBOX + LOGOUT, one at a time),
# login with PAR clients, the same two over implicit TLS (AUTHENTICATE
# PLAIN with SASL-IR), each row in turns as above. Then sessions N_SESS
# over TLS, one run per front end (logged in, INBOX selected, held idle;
# PSS of the login processes, and apart of Dovecot's imap processes, per
# session).
# Env: LAB (default ../shared/labs/dovecot-login relative to the repo),
# N_SEQ (1000), N_CONC (500), N_IDLE (100000), SRC (8), MODES ("hs
# hs-prefork hp"; add hp-idle for the 100,000-connection run), TARGETS
# ("dovecot loginsvc floor"; add dovecot2, a control: Dovecot's front end
# measured again in turns with the others, under a label of its own, in
# the report's column "dovecot vs itself": the spread the machine's noise
# alone gives a ratio), PAR (4), OUT (/tmp/loginbench-results.jsonl),
# TESTS ("greet login": greet = the rows above, login = the rows through
# to Dovecot's imap; TESTS=login MODES="hs hp" runs the new rows alone),
# N_LOGIN (200), N_SESS (100), PORT (31143), TLS_PORT (31993), D_PORT
# (31144: Dovecot's imap-login in every test), D_TLS_PORT (31994),
# F_PORT (31145: the floor), TURNS (4: runs per target and row),
# CONC_BURSTS (5: per target and round), CURVES
# (X25519:prime256v1:secp384r1: the ssl_curve_list of both front ends in
# the login tests, so that both do the same key exchange, X25519, which is
# all Dovecot 2.3's OpenSSL 3.0 has to offer a Go client; CURVES= leaves
# each its default, loginsvc's being the X25519MLKEM768 hybrid), KEEP (1:
# keep the temp dir), LOGINSVC_BIN (a loginsvc binary to use instead of
# building this tree's), ROUNDS (1: how many times each mode's targets
# start afresh and run their rows, the order reversed every other round
# so that neither front end always runs first; the report gives each
# figure's median over the rounds).
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
TESTS=${TESTS:-"greet login"}
N_LOGIN=${N_LOGIN:-200}
N_SESS=${N_SESS:-100}
PORT=${PORT:-31143}
TLS_PORT=${TLS_PORT:-31993}
D_PORT=${D_PORT:-31144}
D_TLS_PORT=${D_TLS_PORT:-31994}
TURNS=${TURNS:-4}
CONC_BURSTS=${CONC_BURSTS:-5}
F_PORT=${F_PORT:-31145}
CONC_BURSTS=${CONC_BURSTS:-5}
CURVES=${CURVES-X25519:prime256v1:secp384r1}
ROUNDS=${ROUNDS:-1}
TMP=$(mktemp -d /tmp/loginbench.XXXXXX)
LPID=
FPID=
DPID=
trap 'stop_loginsvc; stop_backend; [ "${KEEP:-0}" = 1 ] && echo "kept $TMP" >&2 || rm -rf "$TMP"' EXIT

cd "$ROOT"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh" # stop_pid, build_loginsvc, port_open, wait_for, login_mode_body, lab_dovecot_conf
build_loginsvc "$TMP/loginsvc" # as packaged, or LOGINSVC_BIN (bench/lib.sh)
go build -o "$TMP/loginbench" ./bench/loginbench
go build -o "$TMP/floorgreeter" ./bench/cmd/floorgreeter
: > "$OUT"

stop_loginsvc() { # the floor and loginsvc, whichever runs
	for p in $FPID $LPID; do stop_pid "$p"; done
	FPID= LPID=
}

stop_backend() {
	[ -z "$DPID" ] || stop_pid "$DPID"
	DPID=
}

loginsvc_conf() { # mode
	case $1 in
	hs | hs-prefork | hp) body=$(login_mode_body "$1") ;;
	hp-idle) body="service_count = 0
  client_limit = ${IDLE_CLIENT_LIMIT:-19000}
  process_min_avail = ${IDLE_PROCS:-6}
  process_limit = ${IDLE_PROCS:-6}
  vsz_limit = 1G" ;;
	esac
	cat > "$TMP/$1.conf" <<EOC
base_dir = $TMP/run-$1
# no Dovecot behind these rows: authentication off (no auth connection,
# no error per process), as the greeting-only front end was measured
login_socket_path =
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


has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }

# round_targets R: the targets of round R (1, 2, ...): TARGETS in order in
# odd rounds, reversed in even ones.
round_targets() {
	if [ $(($1 % 2)) = 1 ]; then echo $TARGETS; else echo $TARGETS | tr ' ' '\n' | tac | tr '\n' ' '; fi
}

# control_last TARGETS...: the targets with dovecot2 after dovecot: the
# control measures Dovecot's processes again, after the dovecot target
# (whose memory figures must come from its own first run).
control_last() {
	echo "$@" | tr ' ' '\n' | awk 'NF { if ($0 == "dovecot2") c = 1; else print } END { if (c) print "dovecot2" }' | tr '\n' ' '
}

# gfe TARGET: loginbench's -also value for a greeting target
# (LABEL,ADDR,MASTER), the one started for this round.
gfe() {
	case $1 in
	dovecot | dovecot2) echo "$1/$mode,127.0.0.1:$D_PORT,$DPID" ;;
	loginsvc) echo "loginsvc/$mode,127.0.0.1:31143,$LPID" ;;
	floor) echo "floor/$mode,127.0.0.1:$F_PORT,$FPID" ;;
	esac
}

# turn_flags VALUE...: loginbench's flags for front ends given as -also
# values (LABEL,ADDR,MASTER[,BACKEND]): the first as -target, -addr,
# -master, -backend, the others as -also, measured in turns with it.
turn_flags() {
	v=$1; shift
	l=${v%%,*}; v=${v#*,}; a=${v%%,*}; v=${v#*,}; m=${v%%,*}
	printf -- '-target %s -addr %s -master %s' "$l" "$a" "$m"
	case $v in *,*) printf -- ' -backend %s' "${v#*,}" ;; esac
	for o in "$@"; do printf -- ' -also %s' "$o"; done
}

# greet_row TARGETS ARGS...: one greeting row, the targets (a
# space-separated list) in turns (TURNS each).
greet_row() {
	vs=
	for t in $1; do vs="$vs $(gfe "$t")"; done
	shift
	"$TMP/loginbench" $(turn_flags $vs) -turns "$TURNS" "$@" | tee -a "$OUT"
}

for mode in $MODES; do
	has "$TESTS" greet || break
	for r in $(seq "$ROUNDS"); do
		# this round's targets, all up at once on ports of their own
		targets=
		for t in $(round_targets "$r"); do
			if [ "$mode" = hp-idle ] && [ "$t" != loginsvc ]; then
				continue # the lab has no Dovecot configuration for it
			fi
			if [ "$t" = dovecot2 ] && ! has "$TARGETS" dovecot; then
				continue # the control is the dovecot target measured again
			fi
			if [ "$t" = floor ] && [ "$mode" != hp ]; then
				continue # one floor for all modes, measured with hp
			fi
			targets=$(control_last $targets $t)
			case $t in
			dovecot)
				lab_dovecot_conf "$TMP/lab" "$D_PORT" loginbenchlab "$mode"
				/usr/sbin/dovecot -F -c "$TMP/lab/mode-$mode.conf" 2>>"$TMP/lab-dovecot.stderr" &
				DPID=$!
				wait_for "Dovecot on $D_PORT" port_open "$D_PORT" ;;
			loginsvc)
				loginsvc_conf "$mode"
				# Login processes set RLIMIT_NOFILE to client_limit + 65
				# themselves; the supervisor gets the hard limit.
				(ulimit -n "$(ulimit -Hn)"; exec "$TMP/loginsvc" -F -c "$TMP/$mode.conf") 2>"$TMP/loginsvc-$mode.log" &
				LPID=$!
				wait_for "loginsvc on 31143" port_open 31143 ;;
			floor)
				"$TMP/floorgreeter" -addr "127.0.0.1:$F_PORT" -threads 2 &
				FPID=$!
				wait_for "floor greeter on $F_PORT" port_open "$F_PORT" ;;
			esac
		done
		[ -n "$targets" ] || continue
		sleep 1
		for t in $targets; do
			"$TMP/loginbench" $(turn_flags "$(gfe "$t")") seq 20 >/dev/null # warm-up
		done
		if [ "$mode" = hp-idle ]; then
			"$TMP/loginbench" -addr 127.0.0.1:31143 -master "$LPID" -src "$SRC" -hold 5s -target "loginsvc/$mode" idle "$N_IDLE" | tee -a "$OUT"
		else
			servers=$(echo $targets | tr ' ' '\n' | { grep -vx floor || true; } | tr '\n' ' ')
			[ -z "$servers" ] || greet_row "$servers" seq "$N_SEQ"
			greet_row "$targets" seq-raw "$N_SEQ"
			greet_row "$targets" -clients "$PAR" seq-raw "$N_SEQ"
			[ -z "$servers" ] || greet_row "$servers" -bursts "$CONC_BURSTS" conc "$N_CONC"
		fi
		stop_loginsvc
		stop_backend
		sleep 1
	done
done

# --- Login tests: through to Dovecot's post-login imap ---



# The Dovecot behind both front ends, prepared once: passdb, mailbox, key.
backend_prep() {
	chmod 755 "$TMP"
	mkdir -p "$TMP/tls" "$TMP/dv-state"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=localhost -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" 2>/dev/null
	chmod 600 "$TMP/tls/key.pem"
	echo 'bench:{PLAIN}benchpass' > "$TMP/users"
	install -d -o dovecot -g dovecot -m 700 "$TMP/home" "$TMP/home/bench" "$TMP/home/bench/Maildir" \
		"$TMP/home/bench/Maildir/cur" "$TMP/home/bench/Maildir/new" "$TMP/home/bench/Maildir/tmp"
	printf 'From: bench@example.org\r\nTo: bench@example.org\r\nSubject: bench\r\n\r\nhello\r\n' \
		> "$TMP/home/bench/Maildir/new/1700000000.M1P1.bench"
	chown dovecot:dovecot "$TMP/home/bench/Maildir/new/1700000000.M1P1.bench"
}

backend_conf() { # mode: the Dovecot behind both, its imap-login on D_PORT, D_TLS_PORT
	cat > "$TMP/dovecot-$1.conf" <<EOC
base_dir = $TMP/dv
state_dir = $TMP/dv-state
instance_name = loginbench
log_path = $TMP/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <$TMP/tls/cert.pem
ssl_key = <$TMP/tls/key.pem
ssl_curve_list = $CURVES
disable_plaintext_auth = no
auth_mechanisms = plain login
login_greeting = Dovecot bench ready.
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $TMP/users
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$TMP/home/%u
}
protocol imap {
  # the sessions test holds N_SESS sessions of one user from one address
  mail_max_userip_connections = 100000
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $D_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $D_TLS_PORT
    ssl = yes
  }
  $(login_mode_body "$1")
}
service imap {
  process_limit = 4096
}
service auth {
  client_limit = 4096
}
service anvil {
  client_limit = 4096
}
EOC
}

login_loginsvc_conf() { # mode
	cat > "$TMP/loginsvc-login-$1.conf" <<EOC
base_dir = $TMP/dv
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <$TMP/tls/cert.pem
ssl_key = <$TMP/tls/key.pem
ssl_curve_list = $CURVES
service imap-login {
  inet_listener imap {
    port = $PORT
  }
  inet_listener imaps {
    port = $TLS_PORT
    ssl = yes
  }
  $(login_mode_body "$1")
}
EOC
}



# fe TARGET plain|tls: loginbench's -also value for that front end's
# plaintext or TLS listener in the login tests.
fe() {
	if [ "$1" != loginsvc ]; then # dovecot, dovecot2
		a=$D_PORT; [ "$2" = tls ] && a=$D_TLS_PORT
		echo "$1/$mode,127.0.0.1:$a,$DPID"
	else
		a=$PORT; [ "$2" = tls ] && a=$TLS_PORT
		echo "loginsvc/$mode,127.0.0.1:$a,$LPID,$DPID"
	fi
}

# login_row plain|tls ARGS...: one login row, the round's front ends in
# turns (TURNS each).
login_row() {
	k=$1; shift
	vs=
	for t in $targets; do vs="$vs $(fe "$t" "$k")"; done
	"$TMP/loginbench" $(turn_flags $vs) -turns "$TURNS" "$@" | tee -a "$OUT"
}

if has "$TESTS" login; then
	for p in "$PORT" "$TLS_PORT" "$D_PORT" "$D_TLS_PORT"; do
		if port_open "$p"; then echo "login.sh: 127.0.0.1:$p is in use; set PORT/TLS_PORT/D_PORT/D_TLS_PORT" >&2; exit 1; fi
	done
	backend_prep
	for mode in $MODES; do
		case $mode in hs | hp) ;; *) continue ;; esac
		for r in $(seq "$ROUNDS"); do
			targets=
			for t in $(round_targets "$r"); do
				case $t in dovecot | dovecot2 | loginsvc) targets=$(control_last $targets $t) ;; esac
			done
			[ -n "$targets" ] || continue
			backend_conf "$mode"
			/usr/sbin/dovecot -F -c "$TMP/dovecot-$mode.conf" 2>>"$TMP/dovecot.stderr" &
			DPID=$!
			wait_for "Dovecot imap-login on $D_PORT" port_open "$D_PORT"
			wait_for "Dovecot imap-login on $D_TLS_PORT" port_open "$D_TLS_PORT"
			wait_for "Dovecot auth and imap sockets" test -S "$TMP/dv/login/login" -a -S "$TMP/dv/login/imap"
			if has "$targets" loginsvc; then
				login_loginsvc_conf "$mode"
				"$TMP/loginsvc" -F -c "$TMP/loginsvc-login-$mode.conf" 2>"$TMP/loginsvc-login-$mode.log" &
				LPID=$!
				wait_for "loginsvc on $PORT" port_open "$PORT"
				wait_for "loginsvc on $TLS_PORT" port_open "$TLS_PORT"
			fi
			sleep 1
			for t in $targets; do
				"$TMP/loginbench" $(turn_flags "$(fe "$t" plain)") login 20 >/dev/null # warm-up
			done
			login_row plain login "$N_LOGIN"
			login_row plain -clients "$PAR" login "$N_LOGIN"
			login_row tls -tls login "$N_LOGIN"
			login_row tls -tls -clients "$PAR" login "$N_LOGIN"
			# sessions: one run each (a second run of the same processes
			# would find their memory grown already)
			for t in $targets; do
				"$TMP/loginbench" $(turn_flags "$(fe "$t" tls)") -tls sessions "$N_SESS" | tee -a "$OUT"
			done
			stop_loginsvc
			stop_backend
			sleep 1
		done
	done
fi
echo
"$TMP/loginbench" report "$OUT"
echo "results in $OUT" >&2
