# Shared machinery for scripts/demo, scripts/test and scripts/bench.
# Source it; it defines functions and sets no traps.
#
#   ensure_deps        apt packages, cargo-pgrx 0.18.1, `cargo pgrx init`, and
#                      the root of a major other than 15 (skips what is there)
#   install_extension  build (release) and install into the PostgreSQL of PG_MAJOR
#   cluster_start NAME PORT [--no-preload] [extra postgresql.conf lines...]
#   cluster_stop NAME  cluster_dir NAME   psql_as ROLE PORT DB [psql args...]
#   standby_start NAME PORT PRIMARY_PORT  a streaming standby (pg_basebackup -R)
#   pg_exec CMD...     run a server-side tool of PG_MAJOR (in its root for 17, 18)
#
# The major is AAS_PG (15, 17 or 18; default 15, the host's). 17 and 18 run
# in debootstrap roots (scripts/majors.sh) that share the host's /tmp.
# Clusters live in /tmp/aas-NAME, run as the postgres OS user on a private port,
# with their unix socket in /tmp, whatever the major.

set -euo pipefail

PGRX_VERSION=0.18.1
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/majors.sh
source "$REPO_ROOT/scripts/majors.sh"

PG_MAJOR=${AAS_PG:-15}
case "$PG_MAJOR" in
    15) PG_ROOT="" ;;
    17|18) PG_ROOT=$(root_dir "$PG_MAJOR") ;;
    *) echo "PostgreSQL $PG_MAJOR is not supported here: 15, 17 or 18" >&2; exit 2 ;;
esac
# Paths as the major's own tools see them (inside its root for 17 and 18);
# prefix $PG_ROOT to reach them from the host.
# AAS_PG_BIN points the host's 15 elsewhere (a private copy for day-to-day
# work while a full test run uses the system's).
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
[ "$PG_MAJOR" = 15 ] && [ -n "${AAS_PG_BIN:-}" ] && PG_BIN=$AAS_PG_BIN
PG_CONFIG=$PG_BIN/pg_config
# The build of each major has a target directory of its own.
PG_TARGET_DIR=$REPO_ROOT/target
[ "$PG_MAJOR" = 15 ] || PG_TARGET_DIR=$REPO_ROOT/target/pg$PG_MAJOR

# parse_majors USAGE_LINES ARGS...: sets MAJORS from `--pg N` (repeatable;
# default 15 17 18), for scripts/test and scripts/package; -h prints the
# calling script's header lines USAGE_LINES (e.g. 2,12).
parse_majors() {
    local usage=$1; shift
    MAJORS=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --pg) MAJORS+=("${2:?--pg needs a major: 15, 17 or 18}"); shift 2 ;;
            --pg=*) MAJORS+=("${1#--pg=}"); shift ;;
            -h|--help) sed -n "${usage}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) echo "unknown argument $1 (see $0 --help)" >&2; exit 2 ;;
        esac
    done
    [ ${#MAJORS[@]} -gt 0 ] || MAJORS=(15 17 18)
    local m
    for m in "${MAJORS[@]}"; do
        case "$m" in 15|17|18) ;; *) echo "PostgreSQL $m is not supported: 15, 17 or 18" >&2; exit 2 ;; esac
    done
}

pg_exec() {
    if [ -z "$PG_ROOT" ]; then "$@"; else in_root "$PG_MAJOR" "$@"; fi
}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

# A host program as postgres (PgBouncer: a host tool whatever the major).
host_as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# A server tool of PG_MAJOR as postgres (in its root for 17 and 18).
as_postgres() {
    if [ -n "$PG_ROOT" ]; then in_root_postgres "$PG_MAJOR" "$@"; else host_as_postgres "$@"; fi
}

# The clusters' private ports (55430-55499) are kept out of the kernel's
# ephemeral range when this machine lets us (root, writable /proc/sys): a
# client connection given one of them as its local port would make a
# cluster's start fail with "Address already in use" (seen once in CI).
reserve_ports() {
    local f=/proc/sys/net/ipv4/ip_local_reserved_ports
    if [ -w "$f" ] && ! grep -q "55430-55499" "$f" 2>/dev/null; then
        local now; now=$(cat "$f" 2>/dev/null)
        echo "${now:+$now,}55430-55499" > "$f" 2>/dev/null || true
    fi
}

ensure_deps() {
    reserve_ports
    local missing=()
    # openssl, chromium and chromium-driver: the console's tests (console/tests).
    # postgresql-15-pgaudit: scripts/bench's pgAudit scenarios (6p, 7p).
    for p in postgresql-15 postgresql-server-dev-15 postgresql-client-15 postgresql-contrib postgresql-15-pgaudit libclang-dev clang sudo valgrind pgbouncer openssl chromium chromium-driver; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        note "installing apt packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        note "installing cargo-pgrx $PGRX_VERSION (about 4 minutes, once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
    fi
    if ! grep -qs "pg15" "$HOME/.pgrx/config.toml"; then
        note "cargo pgrx init --pg15 /usr/lib/postgresql/15/bin/pg_config"
        (cd "$REPO_ROOT" && cargo pgrx init --pg15 /usr/lib/postgresql/15/bin/pg_config >/dev/null)
    fi
    [ "$PG_MAJOR" = 15 ] || root_ensure "$PG_MAJOR"
}

install_extension() {
    local libdir; libdir=$(pg_exec "$PG_CONFIG" --pkglibdir)
    note "building and installing ai_agent_safety (release) into PostgreSQL $PG_MAJOR's $libdir"
    local log=/tmp/aas-install-$PG_MAJOR.log
    # Servers running the installed library keep it mapped: writing the new
    # one over the same file would change their code under them (a running
    # postmaster then dies of SIGILL). Moving the old file aside first gives
    # the new one a new inode, and running servers keep the old one.
    local so="$PG_ROOT$libdir/ai_agent_safety.so"
    [ -f "$so" ] && mv -f "$so" "$so.previous"
    if ! pg_exec sh -c "cd '$REPO_ROOT' && CARGO_TARGET_DIR='$PG_TARGET_DIR' cargo pgrx install --release --pg-config '$PG_CONFIG' --no-default-features --features pg$PG_MAJOR" >"$log" 2>&1; then
        [ -f "$so" ] || mv -f "$so.previous" "$so" 2>/dev/null || true
        cat "$log"
        echo "install failed (log above, also in $log)" >&2
        return 1
    fi
    # The install scripts of released versions (sql/ai_agent_safety--X.Y.Z.sql):
    # cargo pgrx installs the upgrade scripts from sql/ but not these, and
    # CREATE EXTENSION ... VERSION 'X.Y.Z' needs them.
    local sharedir f; sharedir=$(pg_exec "$PG_CONFIG" --sharedir)
    for f in "$REPO_ROOT"/sql/ai_agent_safety--*.sql; do
        case "$(basename "$f")" in
            ai_agent_safety--*--*.sql) ;;
            *) cp "$f" "$PG_ROOT$sharedir/extension/" ;;
        esac
    done
}

cluster_dir() { echo "/tmp/aas-$1"; }

cluster_stop() {
    local dir; dir=$(cluster_dir "$1")
    if [ -f "$dir/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

# pgbouncer_start NAME PORT TARGET_PORT USERS [ini lines...]: PgBouncer in
# transaction pooling mode on 127.0.0.1:PORT in front of the cluster on
# TARGET_PORT (its /tmp socket), one server connection per pool so clients
# share it, trust for the comma-separated USERS (each logs in as itself).
pgbouncer_start() {
    local name=$1 port=$2 target=$3 users=$4; shift 4
    local dir=/tmp/aas-pgbouncer-$name
    pgbouncer_stop "$name"
    rm -rf "$dir"; mkdir -p "$dir"
    : > "$dir/users.txt"
    local u
    for u in ${users//,/ }; do echo "\"$u\" \"\"" >> "$dir/users.txt"; done
    {
        echo "[databases]"
        echo "* = host=/tmp port=$target"
        echo "[pgbouncer]"
        echo "listen_addr = 127.0.0.1"
        echo "listen_port = $port"
        echo "unix_socket_dir ="
        echo "auth_type = trust"
        echo "auth_file = $dir/users.txt"
        echo "pool_mode = transaction"
        echo "default_pool_size = 1"
        echo "max_client_conn = 100"
        echo "logfile = $dir/pgbouncer.log"
        echo "pidfile = $dir/pgbouncer.pid"
        for line in "$@"; do echo "$line"; done
    } > "$dir/pgbouncer.ini"
    chown -R postgres:postgres "$dir"
    host_as_postgres pgbouncer -d -q "$dir/pgbouncer.ini"
    local i
    for i in $(seq 1 100); do
        [ -s "$dir/pgbouncer.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    cat "$dir/pgbouncer.log" >&2
    echo "pgbouncer $name did not start on port $port" >&2
    return 1
}

pgbouncer_stop() {
    local pidfile=/tmp/aas-pgbouncer-$1/pgbouncer.pid
    if [ -s "$pidfile" ]; then
        local pid; pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        rm -f "$pidfile"
    fi
}

# cluster_start NAME PORT [--no-preload] [conf lines...]
# (Re)creates the cluster from scratch so every run starts clean.
cluster_start() {
    local name=$1 port=$2; shift 2
    local preload=yes
    if [ "${1:-}" = --no-preload ]; then preload=no; shift; fi
    local dir; dir=$(cluster_dir "$name")
    cluster_stop "$name"
    rm -rf "$dir"
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    as_postgres "$PG_BIN/initdb" -D "$dir" -A trust -U postgres --no-sync >/dev/null
    {
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '/tmp'"
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "max_connections = 200"
        echo "logging_collector = off"
        [ "$preload" = yes ] && echo "shared_preload_libraries = 'ai_agent_safety'"
        for line in "$@"; do echo "$line"; done
    } >> "$dir/postgresql.conf"
    # local: trust (tests connect as any role); TCP: password (SCRAM) so issued
    # credentials can be checked with a real password login.
    cat > "$dir/pg_hba.conf" <<HBA
local   all all                 trust
local   replication all         trust
host    all all 127.0.0.1/32    scram-sha-256
HBA
    chown postgres:postgres "$dir/postgresql.conf" "$dir/pg_hba.conf"
    # With RUST_BACKTRACE=full, the worst case: the extension itself must keep
    # Rust backtraces out of every error a client sees.
    if ! as_postgres env RUST_BACKTRACE=full "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null; then
        tail -20 "$dir/server.log" >&2
        echo "could not start cluster $name on port $port (is the port in use?)" >&2
        return 1
    fi
}

# standby_start NAME PORT PRIMARY_PORT: a streaming standby of the cluster
# on PRIMARY_PORT (pg_basebackup -R), recreated from scratch, on PORT.
standby_start() {
    local name=$1 port=$2 primary=$3
    local dir; dir=$(cluster_dir "$name")
    cluster_stop "$name"
    rm -rf "$dir"
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    as_postgres "$PG_BIN/pg_basebackup" -D "$dir" -h /tmp -p "$primary" -U postgres -R -X stream -c fast >/dev/null
    echo "port = $port" >> "$dir/postgresql.conf"
    chown postgres:postgres "$dir/postgresql.conf"
    rm -f "$dir/server.log" "$dir/postmaster.pid"
    if ! as_postgres env RUST_BACKTRACE=full "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null; then
        tail -20 "$dir/server.log" >&2
        echo "could not start standby $name on port $port" >&2
        return 1
    fi
}

# psql_as ROLE PORT DB [args...]
psql_as() {
    local role=$1 port=$2 db=$3; shift 3
    psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$port" -U "$role" -d "$db" "$@"
}
