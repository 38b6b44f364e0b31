# bench/lib.sh - shell functions shared by the bench scripts (sourced).

# stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL; reaps PID.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$(basename "$0"): pid $pid did not stop; killing" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# port_open PORT: something accepts on 127.0.0.1:PORT.
port_open() { python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null; }

# wait_for WHAT COMMAND...: until COMMAND succeeds, up to 10 s, else
# exits saying that WHAT never came.
wait_for() {
    local what=$1 i; shift
    i=0
    until "$@"; do
        sleep 0.1; i=$((i+1)); [ $i -lt 100 ] || { echo "$(basename "$0"): no $what" >&2; exit 1; }
    done
}

# login_mode_body MODE: the login service's settings of bench mode MODE
# (hs, hs-prefork, hp), the same for loginsvc and Dovecot.
login_mode_body() {
    case $1 in
    hs) echo "service_count = 1
  process_min_avail = 0
  process_limit = 1024" ;;
    hs-prefork) echo "service_count = 1
  process_min_avail = 16
  process_limit = 1024" ;;
    hp) echo "service_count = 0
  client_limit = 1000
  process_min_avail = 2
  process_limit = 100
  vsz_limit = 1G" ;;
    esac
}

# lab_dovecot_conf DIR PORT NAME MODE: the lab's Dovecot 2.3 (LAB, its
# dovecot-base.conf and mode-MODE.conf: hs, hs-prefork, hp) with
# everything it keeps under DIR instead of /tmp/dovebench, listening on
# 127.0.0.1:PORT, as instance NAME; prepares DIR (users file, mail
# directory). Start it with: dovecot -F -c DIR/mode-MODE.conf
lab_dovecot_conf() {
    local dir=$1 port=$2 name=$3 mode=$4
    mkdir -p "$dir/run" "$dir/state" "$dir/log" "$dir/mail"
    chmod 755 "$dir" "$dir/run"
    echo 'bench:{PLAIN}benchpass' > "$dir/users"
    chown 65534:65534 "$dir/mail"
    sed -e "s#/tmp/dovebench#$dir#g" -e "s/port = 31143/port = $port/" \
        -e "s/instance_name = dovebench/instance_name = $name/" "$LAB/dovecot-base.conf" > "$dir/dovecot-base.conf"
    cp "$LAB/mode-$mode.conf" "$dir/mode-$mode.conf"
}

# build_loginsvc DEST: loginsvc as deploy/build-packages.sh builds it
# (static Go, not PIE: a cgo build links libc and ld.so, about 0.7 ms
# more CPU per high-security process start, and a PIE one has ld.so
# relocate its read-only data, 0.65 MB more private memory per login
# process; docs/loginsvc.md, "Memory"). LOGINSVC_BUILD_FLAGS overrides
# the build flags; LOGINSVC_BIN is a binary to copy instead (another
# revision's, say). Run from the repository's root.
build_loginsvc() {
    if [ -n "${LOGINSVC_BIN:-}" ]; then
        cp "$LOGINSVC_BIN" "$1"
    else
        CGO_ENABLED=0 go build ${LOGINSVC_BUILD_FLAGS:--buildmode=exe -trimpath} -o "$1" ./cmd/loginsvc
    fi
}
