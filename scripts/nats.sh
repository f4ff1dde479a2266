#!/usr/bin/env bash
# A throwaway NATS server with JetStream for tests and development.
#
#   scripts/nats.sh start   DIR  start (create DIR on first use); the last
#                                line on stdout is the server's URL
#                                (progress goes to stderr)
#   scripts/nats.sh stop    DIR  graceful shutdown; the data is kept
#   scripts/nats.sh status  DIR  exit 0 and print the URL if running,
#                                else exit 3
#   scripts/nats.sh destroy DIR  stop and delete DIR
#
# Layout: DIR/data (JetStream store, -sd), DIR/log (server log), DIR/pid,
# DIR/port (kept so a restart serves the same URL). The server listens on
# 127.0.0.1 only, on a free port picked at random in 20000-40000 (the
# previous one when it is still free).
set -euo pipefail

MARKER=.eventloom-nats # marks a directory this script created (guards rm -rf)
TIMEOUT=30             # seconds to wait for start-up / shut-down

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'nats.sh: error: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,10s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

command -v nats-server >/dev/null ||
    die "nats-server not found; install it with scripts/deps.sh" \
        "(Debian package nats-server)"

resolve() {
    ARG=$1
    DIR=$(realpath -m -- "$1")
    [[ $DIR != / ]] || die "refusing to use / as the server directory"
    DATA=$DIR/data
    LOG=$DIR/log
    PIDFILE=$DIR/pid
    PORTFILE=$DIR/port
}

url() { printf 'nats://127.0.0.1:%s\n' "$(<"$PORTFILE")"; }

# The server's pid when it runs, else nothing.
server_pid() {
    local pid
    [[ -f $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A recycled pid: only a nats-server counts.
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == nats-server ]] || return 1
    printf '%s\n' "$pid"
}

port_free() {
    local p=$1
    if command -v ss >/dev/null; then
        [[ -z $(ss -Htln "sport = :$p") ]]
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            return 1
        fi
    fi
}

pick_port() {
    local p i
    if [[ -f $PORTFILE ]]; then
        p=$(<"$PORTFILE")
        if [[ $p =~ ^[0-9]+$ ]] && port_free "$p"; then
            PORT=$p
            return
        fi
    fi
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 20001))
        if port_free "$p"; then
            PORT=$p
            return
        fi
    done
    die "no free TCP port found in 20000-40000"
}

# Ready when the log says so for this run (JetStream is up by then).
wait_ready() {
    local pid=$1 offset=$2 i
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if tail -c +"$((offset + 1))" -- "$LOG" 2>/dev/null |
            grep -q 'Server is ready'; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

cmd_start() {
    local attempt offset pid
    if [[ -e $DIR && ! -e $DIR/$MARKER ]] && [[ -n $(ls -A -- "$DIR") ]]; then
        die "$DIR exists and is not a server directory of this script;" \
            "use another DIR or remove it"
    fi
    mkdir -p -- "$DATA"
    touch -- "$DIR/$MARKER"
    if pid=$(server_pid); then
        say "nats-server already running in $ARG (pid $pid)"
        url
        return 0
    fi
    for attempt in 1 2 3; do
        pick_port
        printf '%s\n' "$PORT" >"$PORTFILE"
        offset=$(stat -c %s -- "$LOG" 2>/dev/null || echo 0)
        say "starting nats-server with JetStream in $ARG (port $PORT)"
        # setsid: the server must not die with the caller's terminal or
        # process group; stdout closed so $(nats.sh start) returns.
        setsid nats-server -js -sd "$DATA" -a 127.0.0.1 -p "$PORT" \
            -P "$PIDFILE" -l "$LOG" </dev/null >/dev/null 2>&1 &
        pid=$!
        if wait_ready "$pid" "$offset"; then
            url
            return 0
        fi
        kill "$pid" 2>/dev/null || true
        if ((attempt < 3)) && tail -c +"$((offset + 1))" -- "$LOG" 2>/dev/null |
            grep -q 'address already in use'; then
            say "port $PORT was taken meanwhile; retrying with another"
            rm -f -- "$PORTFILE"
            continue
        fi
        break
    done
    echo "---- last lines of $LOG ----" >&2
    tail -n 30 -- "$LOG" >&2 || true
    echo "----" >&2
    die "nats-server failed to start within ${TIMEOUT}s (log: $LOG)"
}

cmd_stop() {
    local pid i
    if ! pid=$(server_pid); then
        say "nats-server in $ARG is not running"
        return 0
    fi
    say "stopping nats-server in $ARG (pid $pid)"
    kill -TERM "$pid"
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "nats-server did not stop within ${TIMEOUT}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_status() {
    if server_pid >/dev/null && [[ -f $PORTFILE ]]; then
        url
        return 0
    fi
    say "nats-server in $ARG is not running"
    return 3
}

cmd_destroy() {
    cmd_stop
    if [[ -e $DIR ]]; then
        [[ -e $DIR/$MARKER ]] ||
            die "$DIR was not created by this script; not deleting it"
        say "deleting $ARG"
        rm -rf -- "$DIR"
    fi
}

(($# == 2)) || usage
cmd=$1
resolve "$2"
case $cmd in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
destroy) cmd_destroy ;;
*) usage ;;
esac
