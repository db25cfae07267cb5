# Shared machinery for scripts/demo, scripts/test and scripts/bench.
# Source it; it defines functions and sets no traps.
#
#   ensure_deps        apt packages, cargo-pgrx 0.18.1, `cargo pgrx init` (skips what is there)
#   install_extension  build (release) and install into the system PostgreSQL 15
#   cluster_start NAME PORT [--no-preload] [extra postgresql.conf lines...]
#   cluster_stop NAME  cluster_dir NAME   psql_as ROLE PORT DB [psql args...]
#
# Clusters live in /tmp/aas-NAME, run as the postgres OS user on a private port,
# with their unix socket in /tmp.

set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

ensure_deps() {
    local missing=()
    # openssl, chromium and chromium-driver: the console's tests (console/tests).
    for p in postgresql-15 postgresql-server-dev-15 postgresql-client-15 postgresql-contrib libclang-dev clang sudo valgrind pgbouncer openssl chromium chromium-driver; do
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
        note "cargo pgrx init --pg15 $PG_CONFIG"
        (cd "$REPO_ROOT" && cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null)
    fi
}

install_extension() {
    note "building and installing ai_agent_safety (release) into $("$PG_CONFIG" --pkglibdir)"
    local log=/tmp/aas-install.log
    # Servers running the installed library keep it mapped: writing the new
    # one over the same file would change their code under them (a running
    # postmaster then dies of SIGILL). Moving the old file aside first gives
    # the new one a new inode, and running servers keep the old one.
    local so; so="$("$PG_CONFIG" --pkglibdir)/ai_agent_safety.so"
    [ -f "$so" ] && mv -f "$so" "$so.previous"
    if ! (cd "$REPO_ROOT" && cargo pgrx install --release --pg-config "$PG_CONFIG") >"$log" 2>&1; then
        [ -f "$so" ] || mv -f "$so.previous" "$so" 2>/dev/null || true
        cat "$log"
        echo "install failed (log above, also in $log)" >&2
        return 1
    fi
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
    as_postgres pgbouncer -d -q "$dir/pgbouncer.ini"
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

# psql_as ROLE PORT DB [args...]
psql_as() {
    local role=$1 port=$2 db=$3; shift 3
    psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$port" -U "$role" -d "$db" "$@"
}
