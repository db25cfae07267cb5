#!/usr/bin/env bash
# scripts/bench --recycle: what the recycle bin costs an agent's statement.
# One preloaded cluster ("benchrb", port 55459); two agent roles in one
# database, bench_rb_on (the bin on: its default 7 days) and bench_rb_off
# (ai_agent_safety.recycle_retention = 0 for the role); the same statement
# on tables of the same size, alternating on and off, ROUNDS times each;
# the median of psql's own \timing per statement.
#
#   drop N     DROP TABLE of a table of N rows (1,000 and 1,000,000), with
#              its primary key: kept means renamed and moved (a few catalog
#              updates, whatever N); not kept is PostgreSQL's drop (unlink)
#   truncate   TRUNCATE of a 1,000,000-row table: kept means its rows
#              copied first
#   delete N   DELETE of N rows (1, 1,000 and 100,000) of a 100,001-row
#              table, after one kept DELETE of it in the same session: kept
#              means each row copied into the table's store as it goes (the
#              BEFORE ROW trigger added in the query's memory); and a one-row
#              DELETE that is the session's first (the store made then)
#
# Prints one line per case (median ms on, off, and on/off), then the O(1)
# check: a kept DROP of 1,000,000 rows against a kept DROP of 1,000.
# Sourced by scripts/bench (lib.sh already loaded, REPO_ROOT set).
set -euo pipefail

RB_PORT=55459
RB_DB=bench_rb
RB_ROUNDS=${RB_ROUNDS:-5}
[ "${MODE:-default}" = smoke ] && RB_ROUNDS=1

rb_sql() { psql_as postgres "$RB_PORT" "$RB_DB" -tA "$@"; }

# The statement's own time (psql \timing), in ms, as role $1; $3, when
# given, runs first in the same session, untimed (a warm-up).
rb_time() {
    local role=$1 stmt=$2 warm=${3:-SELECT 1}
    psql_as "$role" "$RB_PORT" "$RB_DB" -tA -c "$warm" -c '\timing on' -c "$stmt" 2>&1 |
        sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}

# A table of $2 rows named $1, owned by both agents' group.
rb_table() {
    rb_sql -q -c "DROP TABLE IF EXISTS public.$1" \
        -c "CREATE TABLE public.$1 (id bigint PRIMARY KEY, note text)" \
        -c "INSERT INTO public.$1 SELECT g, 'row ' || g FROM generate_series(1, $2) g" \
        -c "ALTER TABLE public.$1 OWNER TO bench_rb_owners" \
        -c "VACUUM ANALYZE public.$1" >/dev/null 2>&1
}

median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.2f}')" "$@"; }

rb_case() {
    local label=$1 rows=$2 stmt_of=$3 warm=${5:-SELECT 1}
    local on=() off=()
    for _ in $(seq "$RB_ROUNDS"); do
        for side in on off; do
            rb_table rb_t "$rows"
            local t; t=$(rb_time "bench_rb_$side" "$($stmt_of)" "$warm")
            if [ "$side" = on ]; then on+=("$t"); else off+=("$t"); fi
            # Kept things would pile up: purge what this round kept.
            rb_sql -q -c "SELECT ai_agent_safety.purge_dropped(id) FROM ai_agent_safety.recycle_bin" >/dev/null
        done
    done
    local m_on m_off
    m_on=$(median "${on[@]}")
    m_off=$(median "${off[@]}")
    printf '   %-34s %10s %10s %8s\n' "$label" "$m_on" "$m_off" \
        "$(python3 -c "print(f'{$m_on / max($m_off, 0.001):.2f}')")"
    eval "RB_${4}=$m_on"
}

stmt_drop() { echo "DROP TABLE rb_t"; }
stmt_truncate() { echo "TRUNCATE rb_t"; }
stmt_delete_1() { echo "DELETE FROM rb_t WHERE id = 1"; }
stmt_delete_1000() { echo "DELETE FROM rb_t WHERE id <= 1000"; }
stmt_delete_100000() { echo "DELETE FROM rb_t WHERE id <= 100000"; }

run_recycle_bench() {
    say "recycle bin: an agent's DROP TABLE, TRUNCATE and DELETE, kept (bin on) vs not (bin off); cluster benchrb, port $RB_PORT"
    cluster_start benchrb "$RB_PORT"
    trap 'cluster_stop benchrb' EXIT
    local until; until=$(psql_as postgres "$RB_PORT" postgres -tA -c "SELECT now() + interval '1 day'")
    psql_as postgres "$RB_PORT" postgres -q -c "CREATE DATABASE $RB_DB" >/dev/null
    rb_sql -q -c "CREATE EXTENSION ai_agent_safety" \
        -c "CREATE ROLE bench_rb_owners NOLOGIN" \
        -c "CREATE ROLE bench_rb_on LOGIN IN ROLE ai_agent, bench_rb_owners VALID UNTIL '$until'" \
        -c "CREATE ROLE bench_rb_off LOGIN IN ROLE ai_agent, bench_rb_owners VALID UNTIL '$until'" \
        -c "ALTER ROLE bench_rb_off SET ai_agent_safety.recycle_retention = 0" \
        -c "GRANT ALL ON SCHEMA public TO bench_rb_owners" >/dev/null
    printf '   %-34s %10s %10s %8s\n' "case ($RB_ROUNDS rounds, median ms)" "bin on" "bin off" "on/off"
    local small=1000 big=1000000
    if [ "${MODE:-default}" = smoke ]; then big=100000; fi
    rb_case "DROP TABLE, $small rows" "$small" stmt_drop DROP_SMALL
    rb_case "DROP TABLE, $big rows" "$big" stmt_drop DROP_BIG
    rb_case "TRUNCATE, $big rows" "$big" stmt_truncate TRUNCATE_BIG
    # The first kept DELETE of a table makes its store (and a session's
    # first takes a block of entry numbers): measured once on its own; the
    # others run after one kept DELETE of the table in the same session.
    rb_case "DELETE, 1 row, first of session" 100001 stmt_delete_1 DELETE_FIRST
    for n in 1 1000 100000; do
        rb_case "DELETE, $n of 100000 rows" 100001 "stmt_delete_$n" "DELETE_$n" \
            "DELETE FROM rb_t WHERE id = 100001"
    done
    note "O(1): a kept DROP of $big rows took $(python3 -c "print(f'{$RB_DROP_BIG / max($RB_DROP_SMALL, 0.001):.2f}')") x a kept DROP of $small rows (a rename, not a copy)"
    cluster_stop benchrb
    trap - EXIT
}
