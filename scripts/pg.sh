#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for development, tests and benchmarks.
#
#   scripts/pg.sh start   DIR  create on first use, start, create database
#                              "loom"; the last line on stdout is the libpq
#                              connection string (progress goes to stderr)
#   scripts/pg.sh stop    DIR  fast shutdown; the data is kept
#   scripts/pg.sh crash   DIR  immediate shutdown, as a crash: no checkpoint,
#                              the next start recovers from the WAL
#   scripts/pg.sh status  DIR  exit 0 and print the connection string if
#                              running, else exit 3
#   scripts/pg.sh destroy DIR  stop and delete the cluster
#
# Layout: DIR/data (PGDATA), DIR/sock (Unix socket), DIR/log (server log),
# DIR/tls (throwaway TLS material, made with openssl on first start: ca.crt
# and ca.key, a test CA; server.crt and server.key, signed by it for the
# host name "localhost" only; other-ca.crt, a CA that signed nothing).
# Only loopback TCP and the socket are used; auth is "trust" for user loom.
# TCP connections may use TLS (ssl = on): connect with host=localhost
# sslmode=verify-full sslrootcert=DIR/tls/ca.crt.
#
# If DIR is unusable (Unix socket path too long, spaces or quotes in it, or,
# when root, not reachable by the unprivileged server user) the cluster is
# created in /tmp/loom-pg.XXXXXX instead and DIR.path records where.
set -euo pipefail

PG_USER=loom
PG_DB=loom
MARKER=.eventloom-pg # marks a directory this script created (guards rm -rf)
TIMEOUT=60           # seconds to wait for start-up / shut-down

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'pg.sh: error: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,12s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

# --- locating things --------------------------------------------------------

find_bindir() {
    BIN=/usr/lib/postgresql/15/bin
    if [[ ! -x $BIN/initdb ]] && command -v pg_config >/dev/null; then
        BIN=$(pg_config --bindir)
    fi
    [[ -x $BIN/initdb && -x $BIN/pg_ctl && -x $BIN/pg_isready ]] ||
        die "PostgreSQL server binaries not found in /usr/lib/postgresql/15/bin" \
            "or pg_config --bindir; install them with scripts/deps.sh" \
            "(Debian package postgresql-15)"
    MAJOR=$("$BIN/postgres" -V | awk '{ print $3 }' | cut -d. -f1)
}

# Sets DIR (absolute), ROOT (where the cluster really lives) and paths in it.
resolve() {
    ARG=$1
    DIR=$(realpath -m -- "$1")
    [[ $DIR != / ]] || die "refusing to use / as the cluster directory"
    PATHFILE=$DIR.path
    ROOT=$DIR
    if [[ -f $PATHFILE ]]; then
        ROOT=$(<"$PATHFILE")
    fi
    set_paths
}

set_paths() {
    DATA=$ROOT/data
    SOCK=$ROOT/sock
    LOG=$ROOT/log
    CONF=$DATA/eventloom.conf
    TLS=$ROOT/tls
    SHOWN=$ARG
    [[ $ROOT == "$DIR" ]] || SHOWN="$ARG (-> $ROOT)"
}

# The server must not run as root. As root we pick an unprivileged user: the
# owner of an existing cluster, else "postgres" (created by Debian's
# postgresql package), else a system user "eventloom" created on demand.
pick_user() {
    if ((EUID != 0)); then
        RUN_USER=$(id -un)
        if [[ -d $DATA && ! -O $DATA ]]; then
            die "$DATA belongs to $(stat -c %U "$DATA"), not $RUN_USER;" \
                "run as that user or use another DIR"
        fi
        return
    fi
    if [[ -d $DATA ]]; then
        RUN_USER=$(stat -c %U "$DATA")
        [[ $RUN_USER != root && $RUN_USER != UNKNOWN ]] ||
            die "$DATA is owned by $RUN_USER; remove it with: $0 destroy $ARG"
    elif id -u postgres >/dev/null 2>&1; then
        RUN_USER=postgres
    else
        if ! id -u eventloom >/dev/null 2>&1; then
            say "creating system user eventloom to run PostgreSQL"
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin eventloom ||
                die "could not create user eventloom (useradd failed)"
        fi
        RUN_USER=eventloom
    fi
}

# Run a command as the server user. cd / first: the caller's working
# directory (e.g. /root) may not be readable by that user.
as_server() {
    if ((EUID != 0)); then
        "$@"
    elif command -v runuser >/dev/null; then
        (cd / && runuser -u "$RUN_USER" -- "$@")
    else
        (cd / && su -s /bin/bash "$RUN_USER" -c "$(printf '%q ' "$@")")
    fi
}

# --- cluster creation -------------------------------------------------------

# Can a cluster live in $1? Creates it; sets WHY on failure.
dir_usable() {
    local d=$1
    if [[ $d =~ [[:space:]\'\"\\] ]]; then
        WHY="path contains spaces or quotes"
        return 1
    fi
    # sun_path holds 107 bytes; the socket is "$d/sock/.s.PGSQL.NNNNN".
    if ((${#d} + 20 > 107)); then
        WHY="path too long for a Unix socket"
        return 1
    fi
    mkdir -p -- "$d" || {
        WHY="cannot create it"
        return 1
    }
    if ((EUID == 0)); then
        chown "$RUN_USER:" "$d"
        chmod 755 "$d"
        # Fails if any parent directory is not traversable by RUN_USER.
        if ! as_server test -w "$d" -a -x "$d"; then
            WHY="not reachable by user $RUN_USER (a parent directory is not traversable)"
            return 1
        fi
    fi
}

is_ours_or_empty() {
    [[ ! -e $1 || -e $1/$MARKER ]] || [[ -d $1 && -z $(ls -A -- "$1") ]]
}

create_cluster() {
    # A stale DIR.path (e.g. /tmp was wiped): start over in DIR.
    if [[ -f $PATHFILE ]]; then
        rm -f -- "$PATHFILE"
        ROOT=$DIR
        set_paths
    fi
    is_ours_or_empty "$DIR" ||
        die "$DIR exists and is not an Eventloom cluster; use another DIR" \
            "or remove it"
    # Left over from an interrupted initdb, which needs an empty directory.
    rm -rf -- "$DATA"
    pick_user
    if ! dir_usable "$DIR"; then
        say "cannot use $ARG: $WHY; using a directory under /tmp instead"
        rmdir -- "$DIR" 2>/dev/null || true
        mkdir -p -- "$(dirname -- "$DIR")"
        ROOT=$(mktemp -d /tmp/loom-pg.XXXXXX)
        dir_usable "$ROOT" || die "cannot use $ROOT either: $WHY"
        printf '%s\n' "$ROOT" >"$PATHFILE"
        set_paths
    fi
    touch -- "$ROOT/$MARKER"

    say "initialising PostgreSQL $MAJOR cluster in $SHOWN (server user $RUN_USER)"
    local initlog=$ROOT/initdb.log
    local args=(-D "$DATA" -U "$PG_USER" --auth=trust -E UTF8)
    if ! as_server "$BIN/initdb" "${args[@]}" --locale=C.UTF-8 >"$initlog" 2>&1; then
        # Some systems lack the C.UTF-8 locale.
        rm -rf -- "$DATA"
        if ! as_server "$BIN/initdb" "${args[@]}" --locale=C >"$initlog" 2>&1; then
            tail -n 20 -- "$initlog" >&2
            die "initdb failed (full log: $initlog)"
        fi
    fi
    # Our settings live in a separate file, rewritten on every start.
    printf "\ninclude 'eventloom.conf'\n" >>"$DATA/postgresql.conf"
    mkdir -p -- "$SOCK"
    if ((EUID == 0)); then
        chown "$RUN_USER:" "$SOCK"
    fi
    chmod 755 "$SOCK" # clients running as other users must reach the socket
}

# --- ports and configuration ------------------------------------------------

conf_port() {
    sed -n 's/^port = \([0-9]\{1,\}\)$/\1/p' "$CONF" 2>/dev/null || true
}

port_free() {
    local p=$1
    if command -v ss >/dev/null; then
        [[ -z $(ss -Htln "sport = :$p") ]]
    else
        # Nothing listening if a connection attempt fails.
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            return 1
        fi
    fi
}

# Keep the previous port when possible so DSNs stay stable across restarts.
pick_port() {
    local p i
    p=$(conf_port)
    if [[ -n $p ]] && port_free "$p"; then
        PORT=$p
        return
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

# A key (EC P-256: fast to make) and a certificate for each of: the test
# CA, the server (CN and only subjectAltName "localhost", signed by the
# CA), and a second CA that signed nothing. Kept across restarts.
ensure_tls() {
    [[ -s $TLS/server.crt && -s $TLS/server.key && -s $TLS/other-ca.crt ]] &&
        return 0
    command -v openssl >/dev/null ||
        die "openssl not found: it makes the cluster's test certificates;" \
            "install it with scripts/deps.sh (Debian package openssl)"
    say "making a throwaway CA and server certificate in $TLS"
    rm -rf -- "$TLS"
    mkdir -p -- "$TLS"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    local ca=(-addext "basicConstraints=critical,CA:TRUE"
        -addext "keyUsage=critical,keyCertSign,cRLSign")
    (
        cd -- "$TLS"
        openssl req -x509 "${ec[@]}" "${ca[@]}" -days 3650 \
            -subj "/CN=Eventloom test CA" -keyout ca.key -out ca.crt
        openssl req -x509 "${ec[@]}" "${ca[@]}" -days 3650 \
            -subj "/CN=Eventloom unknown CA" -keyout other-ca.key \
            -out other-ca.crt
        openssl req -new "${ec[@]}" -subj "/CN=localhost" \
            -keyout server.key -out server.csr
        printf '%s\n' "subjectAltName=DNS:localhost" \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -days 3650 -extfile server.ext -out server.crt
        rm -f server.csr server.ext ca.srl
    ) >"$ROOT/tls.log" 2>&1 || {
        tail -n 20 -- "$ROOT/tls.log" >&2
        die "openssl failed to make the test certificates (log: $ROOT/tls.log)"
    }
    # The server refuses a key others can read; clients need the rest.
    chmod 755 "$TLS"
    chmod 644 "$TLS"/*.crt
    chmod 600 "$TLS"/*.key
    if ((EUID == 0)); then
        chown "$RUN_USER:" "$TLS/server.key"
    fi
}

write_conf() {
    cat >"$CONF" <<EOF
# Written by scripts/pg.sh on every start; edits here are overwritten.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 200
shared_buffers = 256MB
max_wal_size = 4GB
# Durable on purpose: benchmarks must measure real commit costs.
fsync = on
synchronous_commit = on
# pg_ctl -l sends the server's stderr to $LOG.
logging_collector = off
# TLS on TCP (the socket never uses it), with the certificates of $TLS.
ssl = on
ssl_cert_file = '$TLS/server.crt'
ssl_key_file = '$TLS/server.key'
EOF
    if ((EUID == 0)); then
        chown "$RUN_USER:" "$CONF"
    fi
}

dsn() {
    printf 'host=%s port=%s user=%s dbname=%s\n' "$SOCK" "$(conf_port)" \
        "$PG_USER" "$PG_DB"
}

# --- server control ---------------------------------------------------------

running() {
    [[ -f $DATA/PG_VERSION ]] &&
        as_server "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

wait_ready() {
    local port i
    port=$(conf_port)
    for ((i = 0; i < TIMEOUT * 2; i++)); do
        if "$BIN/pg_isready" -q -h "$SOCK" -p "$port" -U "$PG_USER" -d postgres; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

start_server() {
    local attempt offset
    ensure_tls
    for attempt in 1 2 3; do
        pick_port
        write_conf
        say "starting PostgreSQL $MAJOR in $SHOWN (port $PORT)"
        offset=$(stat -c %s -- "$LOG" 2>/dev/null || echo 0)
        # -l also detaches the server from our stdout, so $(pg.sh start)
        # returns instead of waiting for the server to close it.
        if as_server "$BIN/pg_ctl" start -D "$DATA" -l "$LOG" -w -t "$TIMEOUT" \
            -s >&2 && wait_ready; then
            return 0
        fi
        # Another process may have taken the port since we checked it.
        if ((attempt < 3)) && tail -c +"$((offset + 1))" -- "$LOG" 2>/dev/null |
            grep -q 'could not bind\|already in use'; then
            say "port $PORT was taken meanwhile; retrying with another"
            continue
        fi
        break
    done
    echo "---- last lines of $LOG ----" >&2
    tail -n 30 -- "$LOG" >&2 || true
    echo "----" >&2
    die "PostgreSQL failed to start or was not ready within ${TIMEOUT}s" \
        "(log: $LOG)." \
        "If the cluster is damaged: $0 destroy $ARG"
}

ensure_db() {
    local conn=(-h "$SOCK" -p "$(conf_port)" -U "$PG_USER")
    local exists
    exists=$("$BIN/psql" -X -A -t -q "${conn[@]}" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ||
        die "cannot query the server (log: $LOG)"
    if [[ $exists != 1 ]]; then
        say "creating database $PG_DB"
        "$BIN/createdb" "${conn[@]}" "$PG_DB" || die "createdb $PG_DB failed"
    fi
}

# --- commands ---------------------------------------------------------------

cmd_start() {
    if [[ ! -f $DATA/PG_VERSION ]]; then
        create_cluster
    fi
    local have
    have=$(<"$DATA/PG_VERSION")
    [[ $have == "$MAJOR" ]] ||
        die "$SHOWN holds a PostgreSQL $have cluster but the binaries are" \
            "version $MAJOR; recreate it: $0 destroy $ARG"
    pick_user
    if running; then
        say "PostgreSQL already running in $SHOWN (port $(conf_port))"
        wait_ready || die "server in $SHOWN is running but not accepting" \
            "connections (log: $LOG)"
    else
        start_server
    fi
    ensure_db
    dsn
}

cmd_stop() {
    if [[ ! -f $DATA/PG_VERSION ]]; then
        say "no cluster in $SHOWN"
        return 0
    fi
    pick_user
    if ! running; then
        say "PostgreSQL in $SHOWN is not running"
        return 0
    fi
    say "stopping PostgreSQL in $SHOWN"
    as_server "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t "$TIMEOUT" -s >&2 ||
        die "pg_ctl stop failed (log: $LOG)"
}

cmd_crash() {
    if [[ ! -f $DATA/PG_VERSION ]]; then
        die "no cluster in $SHOWN"
    fi
    pick_user
    if ! running; then
        say "PostgreSQL in $SHOWN is not running"
        return 0
    fi
    say "crashing PostgreSQL in $SHOWN (immediate shutdown)"
    as_server "$BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t "$TIMEOUT" -s >&2 ||
        die "pg_ctl stop -m immediate failed (log: $LOG)"
}

cmd_status() {
    if [[ -f $DATA/PG_VERSION ]]; then
        pick_user
        if running; then
            dsn
            return 0
        fi
    fi
    say "PostgreSQL in $SHOWN is not running"
    return 3
}

cmd_destroy() {
    cmd_stop
    is_ours_or_empty "$ROOT" ||
        die "$ROOT was not created by this script; not deleting it"
    if [[ -e $ROOT ]]; then
        say "deleting cluster in $SHOWN"
        rm -rf -- "$ROOT"
    fi
    if [[ $ROOT != "$DIR" ]]; then
        rm -f -- "$PATHFILE"
        # DIR may have been created (empty) before we fell back to /tmp.
        rmdir -- "$DIR" 2>/dev/null || true
    fi
}

(($# == 2)) || usage
cmd=$1
find_bindir
resolve "$2"
case $cmd in
start) cmd_start ;;
stop) cmd_stop ;;
crash) cmd_crash ;;
status) cmd_status ;;
destroy) cmd_destroy ;;
*) usage ;;
esac
