#!/usr/bin/env python3
"""Summarises scripts/bench runs: a table on stdout, a JSON summary on disk.

Input: a TSV with one line per pgbench run:
    round  side(with|without)  scenario  tps  latency_ms  transactions
and (optional) a TSV of side facts about runs:
    round  side  scenario  key  value
and (optional) a TSV of callgrind instruction counts (single-user backend):
    side  scenario  transactions  instructions
The very last line printed is worst_ratio=<x.xxx>, the lowest with/without
throughput ratio among scenarios 1-4 (scenario 6 has its own target). A ratio
is the median over rounds of with / without within one round.
"""
import argparse
import datetime
import json
import statistics
import sys

THROUGHPUT = [
    # id, key, description, ratio target
    ("1", "s1_select", "non-agent, select-only (pgbench -S)", 0.99),
    ("2", "s2_tpcb", "non-agent, TPC-B-like (pgbench default)", 0.99),
    ("3", "s3_agent_sel", "agent, select-only (pgbench -S)", 0.97),
    ("4", "s4_agent_wr", "agent, INSERT+UPDATE own tables", 0.97),
]
TOKEN_ADDED_MS_TARGET = 1.0
SEEDED_RATIO_TARGET = 1.10
AUDIT_RATIO_TARGET = 0.90


def stats(values):
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def rows(path):
    """The tab-separated fields of each non-empty line of a file ('' or a
    missing path: none)."""
    if not path:
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def load(path):
    return [{"round": int(rnd), "side": side, "scenario": scen,
             "tps": float(tps), "latency_ms": float(lat), "transactions": int(xacts)}
            for rnd, side, scen, tps, lat, xacts in rows(path)]


def pick(runs, scen, side, field):
    return [r[field] for r in runs if r["scenario"] == scen and r["side"] == side]


def load_facts(path):
    return [{"round": int(rnd), "side": side, "scenario": scen, "key": key, "value": float(value)}
            for rnd, side, scen, key, value in rows(path)]


def load_instructions(path):
    """side, scenario, transactions, instructions -> {(scenario, side): per transaction}"""
    return {(scen, side): int(count) / int(xacts) for side, scen, xacts, count in rows(path)}


def fact_values(facts, scen, key):
    return [f["value"] for f in facts if f["scenario"] == scen and f["key"] == key]


def per_round(runs, a, b, field, combine):
    """combine(a's value, b's value) for each round that has both runs; a and b
    are (scenario, side)."""
    by_round = {}
    for r in runs:
        for i, (scen, side) in enumerate((a, b)):
            if r["scenario"] == scen and r["side"] == side:
                by_round.setdefault(r["round"], {})[i] = r[field]
    return [combine(v[0], v[1]) for _, v in sorted(by_round.items()) if len(v) == 2]


def ratio_of_rounds(paired, fallback):
    """The ratio reported: the median of the per-round ratios. A round's two
    runs share the machine's conditions (run at the same time, or one right
    after the other), which runs of different rounds do not."""
    return statistics.median(paired) if paired else fallback


def audit_facts(facts, scen):
    """What the audit cost beyond a with-side run of scen: events, log bytes,
    the writer's backlog."""
    xacts = sum(fact_values(facts, scen, "transactions"))
    spooled = sum(fact_values(facts, scen, "events_spooled"))
    log_bytes = sum(fact_values(facts, scen, "server_log_bytes"))
    return {
        "transactions": int(xacts),
        "events_spooled": int(spooled),
        "events_dropped": int(sum(fact_values(facts, scen, "events_dropped"))),
        "events_per_transaction": round(spooled / xacts, 3) if xacts else None,
        "server_log_bytes": int(log_bytes),
        "server_log_bytes_per_transaction": round(log_bytes / xacts, 1) if xacts else None,
        "backlog_after_run": stats(fact_values(facts, scen, "backlog_after_run")),
        "drain_s": stats(fact_values(facts, scen, "drain_s")),
        "left_after_drain": stats(fact_values(facts, scen, "left_after_drain")),
    }


def span(values, fmt="{:.3f}"):
    return "-" if not values else f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def against_pgaudit(runs, scenarios, rows, ours, key, n, label, role, pgaudit_log):
    """Scenario <n>p (pgAudit against the same load without logging) and
    <n>:<n>p (ours against pgAudit's in the same round, >= 1: ours costs no
    more); ours' own target becomes pgAudit's ratio in the same run.
    Returns the <n>:<n>p ratio."""
    sp, sp_ratio, row = throughput(runs, key, f"{n}p", label, None, a=(key, "pgaudit"), b=(key, "without"))
    sp.update({"role": role, "setting": f"ALTER ROLE {role} SET pgaudit.log = '{pgaudit_log}'"})
    scenarios.append(sp)
    rows.append(row)
    svp, svp_ratio, row = throughput(runs, key, f"{n}:{n}p", f"ours ({n}) / pgAudit ({n}p)", 1.0,
                                     a=(key, "with"), b=(key, "pgaudit"), target_text=f">= 1 ({n}p)")
    scenarios.append(svp)
    rows.append(row)
    ours["target"] = f"ratio >= {n}p's ratio (pgAudit), same run"
    ours["meets_target"] = svp_ratio >= 1.0
    for j, r in enumerate(rows):
        if r[0] == n:
            rows[j] = r[:8] + (f">= {n}p {sp_ratio:.3f}", "ok" if svp_ratio >= 1.0 else "BELOW")
    return svp_ratio


def throughput(runs, key, sid, desc, target, a=None, b=None, target_text=None):
    """a/b tps of one scenario, or exits when runs are missing; a and b are
    (scenario, side), by default key's with and without runs. The target is
    a ratio, shown as target_text when given."""
    a = a or (key, "with")
    b = b or (key, "without")
    w = stats(pick(runs, a[0], a[1], "tps"))
    wo = stats(pick(runs, b[0], b[1], "tps"))
    if not w or not wo:
        print(f"scenario {sid}: missing runs", file=sys.stderr)
        sys.exit(1)
    paired = per_round(runs, a, b, "tps", lambda x, y: x / y)
    ratio = ratio_of_rounds(paired, w["median"] / wo["median"])
    ok = target is None or ratio >= target
    scen = {
        "id": sid, "name": desc, "status": "measured", "metric": "tps",
        "with": w, "without": wo, "ratio": round(ratio, 4),
        "ratio_is": f"median of the per-round {a[0]} {a[1]} / {b[0]} {b[1]} ratios",
        "ratio_of_medians": round(w["median"] / wo["median"], 4),
        "paired_ratios": [round(x, 4) for x in paired],
        "latency_ms_with": stats(pick(runs, key, "with", "latency_ms")),
        "latency_ms_without": stats(pick(runs, key, "without", "latency_ms")),
        "target": (target_text or f"ratio >= {target}") if target is not None else None,
        "meets_target": ok if target is not None else None,
    }
    fmt = lambda v: f"{v:.1f}"
    row = (sid, desc, "tps", fmt(w["median"]), fmt(wo["median"]), f"{ratio:.3f}", span(paired),
           f"{fmt(w['min'])}-{fmt(w['max'])} | {fmt(wo['min'])}-{fmt(wo['max'])}",
           "(none)" if target is None else (target_text or f">= {target:.2f}"),
           "-" if target is None else ("ok" if ok else "BELOW"))
    return scen, ratio, row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--facts", default="")
    ap.add_argument("--instructions", default="")
    ap.add_argument("--token-rounds", type=int, default=0)
    ap.add_argument("--json", required=True)
    ap.add_argument("--mode", default="default")
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--duration", type=int, required=True)
    ap.add_argument("--token-duration", type=int, required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--pair-clients", type=int, default=0)
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--seed-rows", type=int, required=True)
    ap.add_argument("--audit-seed-rows", type=int, default=0)
    ap.add_argument("--pg-version", default="")
    ap.add_argument("--cpus", default="")
    ap.add_argument("--load-before", default="")
    ap.add_argument("--load-after", default="")
    a = ap.parse_args()

    runs = load(a.results)
    facts = load_facts(a.facts)
    ir = load_instructions(a.instructions)
    scenarios = []
    ratios = []
    rows = []

    for sid, key, desc, target in THROUGHPUT:
        scen, ratio, row = throughput(runs, key, sid, desc, target)
        ratios.append(ratio)
        scenarios.append(scen)
        rows.append(row)

    tok = stats(pick(runs, "s5_token", "with", "latency_ms"))
    plain = stats(pick(runs, "s5_plain", "with", "latency_ms"))
    seeded = stats(pick(runs, "s5_seeded", "with", "latency_ms"))
    if not tok or not plain or not seeded:
        print("scenario 5: missing runs", file=sys.stderr)
        sys.exit(1)
    added_rounds = per_round(runs, ("s5_token", "with"), ("s5_plain", "with"), "latency_ms", lambda x, y: x - y)
    added = ratio_of_rounds(added_rounds, tok["median"] - plain["median"])
    seeded_rounds = per_round(runs, ("s5_seeded", "with"), ("s5_token", "with"), "latency_ms", lambda x, y: x / y)
    seeded_ratio = ratio_of_rounds(seeded_rounds, seeded["median"] / tok["median"])
    audit_rows_empty = stats(fact_values(facts, "s5_token", "audit_log_rows"))
    audit_rows_seeded = stats(fact_values(facts, "s5_seeded", "audit_log_rows"))
    tokens_rows_empty = stats(fact_values(facts, "s5_token", "tokens_rows"))
    tokens_rows_seeded = stats(fact_values(facts, "s5_seeded", "tokens_rows"))
    rng = lambda st: "?" if not st else (f"{st['min']:,.0f}" if st["min"] == st["max"]
                                         else f"{st['min']:,.0f}-{st['max']:,.0f}")
    s5_ok = added < TOKEN_ADDED_MS_TARGET
    s5b_ok = seeded_ratio <= SEEDED_RATIO_TARGET
    scenarios.append({
        "id": "5", "name": "agent, token-approved one-row DELETE vs plain DELETE by a non-agent",
        "status": "measured", "metric": "latency_ms per transaction (extension loaded)",
        "database": "bench",
        "token_path": tok, "plain_delete": plain,
        "token_tps": stats(pick(runs, "s5_token", "with", "tps")),
        "plain_tps": stats(pick(runs, "s5_plain", "with", "tps")),
        "added_ms": round(added, 4),
        "target": f"token path adds < {TOKEN_ADDED_MS_TARGET} ms per statement", "meets_target": s5_ok,
        "tables_at_run_start": {
            "tokens_rows": tokens_rows_empty, "audit_log_rows": audit_rows_empty,
            "note": "tokens: only the run's own tokens; audit_log: only the events the bench itself "
                    "produced in database bench (token requests, grants and uses of earlier runs)",
        },
        "seeded": {
            "database": "bench_seeded",
            "tokens_rows_seeded": a.seed_rows, "audit_log_rows_seeded": a.audit_seed_rows,
            "seeding": f"{a.seed_rows} unrelated rows in ai_agent_safety.tokens before each run; "
                       f"{a.audit_seed_rows} rows in ai_agent_safety.audit_log once, in setup",
            "tables_at_run_start": {"tokens_rows": tokens_rows_seeded, "audit_log_rows": audit_rows_seeded},
            "token_path": seeded,
            "token_tps": stats(pick(runs, "s5_seeded", "with", "tps")),
            "ratio_to_empty": round(seeded_ratio, 4),
            "target": f"within 10% of the empty-table latency (ratio <= {SEEDED_RATIO_TARGET})",
            "meets_target": s5b_ok,
        },
        "note": "without the library no token is checked, so only the with-extension side is measured",
    })
    rows.append(("5", "agent, token DELETE vs plain DELETE", "ms/txn",
                 f"tok {tok['median']:.3f}", f"plain {plain['median']:.3f}", f"+{added:.3f}ms" if added >= 0 else f"{added:.3f}ms",
                 span(added_rounds, "{:+.3f}"),
                 f"{tok['min']:.3f}-{tok['max']:.3f} | {plain['min']:.3f}-{plain['max']:.3f}",
                 f"< {TOKEN_ADDED_MS_TARGET:g} ms", "ok" if s5_ok else "ABOVE"))
    rows.append(("5b", f"same, seeded tokens + audit_log", "ms/txn",
                 f"tok {seeded['median']:.3f}", f"empty {tok['median']:.3f}", f"{seeded_ratio:.3f}",
                 span(seeded_rounds),
                 f"{seeded['min']:.3f}-{seeded['max']:.3f} | {tok['min']:.3f}-{tok['max']:.3f}",
                 f"<= {SEEDED_RATIO_TARGET:.2f}x", "ok" if s5b_ok else "ABOVE"))
    capped = stats(pick(runs, "s5_capped", "with", "latency_ms"))
    if not capped:
        print("scenario 5c: missing runs", file=sys.stderr)
        sys.exit(1)
    capped_rounds = per_round(runs, ("s5_capped", "with"), ("s5_token", "with"), "latency_ms", lambda x, y: x / y)
    capped_ratio = ratio_of_rounds(capped_rounds, capped["median"] / tok["median"])
    capped_added_rounds = per_round(runs, ("s5_capped", "with"), ("s5_plain", "with"), "latency_ms", lambda x, y: x - y)
    capped_added = ratio_of_rounds(capped_added_rounds, capped["median"] - plain["median"])
    s5c_ok = capped_added < TOKEN_ADDED_MS_TARGET
    scenarios.append({
        "id": "5c", "name": "agent, token-approved one-row DELETE with a row cap (max_rows => 1)",
        "status": "measured", "metric": "latency_ms per transaction (extension loaded)",
        "database": "bench_capped",
        "token_path": capped,
        "token_tps": stats(pick(runs, "s5_capped", "with", "tps")),
        "ratio_to_uncapped": round(capped_ratio, 4),
        "added_ms_vs_plain": round(capped_added, 4),
        "target": f"capped token path adds < {TOKEN_ADDED_MS_TARGET} ms per statement", "meets_target": s5c_ok,
        "note": "run at the same time as 5 and 5b; the cap's cost is its ratio to 5",
    })
    rows.append(("5c", "same, token with a row cap", "ms/txn",
                 f"cap {capped['median']:.3f}", f"plain {plain['median']:.3f}",
                 f"+{capped_added:.3f}ms" if capped_added >= 0 else f"{capped_added:.3f}ms",
                 span(capped_added_rounds, "{:+.3f}"),
                 f"{capped['min']:.3f}-{capped['max']:.3f} | {plain['min']:.3f}-{plain['max']:.3f}",
                 f"< {TOKEN_ADDED_MS_TARGET:g} ms; {capped_ratio:.3f}x of 5", "ok" if s5c_ok else "ABOVE"))
    s6, s6_ratio, row = throughput(runs, "s6_audit_all", "6", "agent, audit_level = all, select-only",
                                   AUDIT_RATIO_TARGET)
    xacts = sum(fact_values(facts, "s6_audit_all", "transactions"))
    s6.update({
        "database": "bench_audit", "role": "bench_agent_all",
        "setting": "ALTER ROLE bench_agent_all SET ai_agent_safety.audit_level = 'all'",
        "audit_with_side": audit_facts(facts, "s6_audit_all"),
        "note": "the writer's backlog is loaded after each run, outside the measured time",
    })
    scenarios.append(s6)
    rows.append(row)
    ref = stats(pick(runs, "s6r_log_statement", "without", "tps"))
    if ref:
        base = s6["without"]["median"]
        ref_rounds = per_round(runs, ("s6r_log_statement", "without"), ("s6_audit_all", "without"), "tps",
                               lambda x, y: x / y)
        ref_ratio = ratio_of_rounds(ref_rounds, ref["median"] / base)
        scenarios.append({
            "id": "6r", "name": "reference: PostgreSQL's own log_statement = all, no extension, select-only",
            "status": "measured", "metric": "tps", "role": "bench_logged (non-agent)",
            "log_statement_all": ref, "plain": s6["without"], "ratio": round(ref_ratio, 4),
            "note": "both without ai_agent_safety loaded: what one server-log line per statement costs by itself",
        })
        rows.append(("6r", "reference: log_statement = all, no ext.", "tps", f"{ref['median']:.1f}",
                     f"{base:.1f}", f"{ref_ratio:.3f}", span(ref_rounds),
                     f"{ref['min']:.1f}-{ref['max']:.1f} | {s6['without']['min']:.1f}-{s6['without']['max']:.1f}",
                     "(none)", "-"))

    # 6t: destination table, against 6's run without the library.
    s6t, s6t_ratio, row = throughput(runs, "s6t_audit_table", "6t", "same, audit_destination = table",
                                     AUDIT_RATIO_TARGET, a=("s6t_audit_table", "with"),
                                     b=("s6_audit_all", "without"))
    s6t.update({"database": "bench_audit", "role": "bench_agent_table",
                "setting": "ALTER ROLE bench_agent_table SET ai_agent_safety.audit_destination = 'table'",
                "audit_with_side": audit_facts(facts, "s6t_audit_table")})
    scenarios.append(s6t)
    rows.append(row)
    s6vp_ratio = against_pgaudit(runs, scenarios, rows, s6, "s6_audit_all", "6",
                                 "pgAudit, pgaudit.log = all, select-only", "bench_agent_all", "all")
    s7, s7_ratio, row = throughput(runs, "s7_audit_writes", "7", "agent writes, audit_level = writes", 0.0)
    s7.update({"database": "bench_audit", "role": "bench_agent_wr",
               "setting": "ALTER ROLE bench_agent_wr SET ai_agent_safety.audit_level = 'writes'",
               "audit_with_side": audit_facts(facts, "s7_audit_writes")})
    scenarios.append(s7)
    rows.append(row)
    s7vp_ratio = against_pgaudit(runs, scenarios, rows, s7, "s7_audit_writes", "7",
                                 "pgAudit, pgaudit.log = write, writes", "bench_agent_wr", "write")

    ir_rows = []
    for scen in scenarios:
        key, side, base = {"1": ("s1_select", "with", "s1_select"), "2": ("s2_tpcb", "with", "s2_tpcb"),
                           "3": ("s3_agent_sel", "with", "s3_agent_sel"),
                           "4": ("s4_agent_wr", "with", "s4_agent_wr"),
                           "6": ("s6_audit_all", "with", "s6_audit_all"),
                           "6t": ("s6t_audit_table", "with", "s6_audit_all"),
                           "6p": ("s6_audit_all", "pgaudit", "s6_audit_all"),
                           "7": ("s7_audit_writes", "with", "s7_audit_writes"),
                           "7p": ("s7_audit_writes", "pgaudit", "s7_audit_writes")}.get(scen["id"], (None,) * 3)
        w, wo = ir.get((key, side)), ir.get((base, "without"))
        if w and wo:
            scen["instructions_per_txn"] = {"with": round(w), "without": round(wo),
                                            "added": round(w - wo), "ratio_without_over_with": round(wo / w, 4)}
            ir_rows.append((scen["id"], f"{w:,.0f}", f"{wo:,.0f}", f"{w - wo:+,.0f}", f"{wo / w:.4f}"))

    worst = min(ratios)
    header = ("#", "scenario", "metric", "with (median)", "without (median)", "ratio",
              "per round min-max", "spread min-max: with | without", "target", "result")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip()

    print(f"PostgreSQL {a.pg_version}, pgbench scale {a.scale}, {a.duration} s per run "
          f"({a.token_duration} s per token run), {a.rounds} round(s), two identical clusters swapping "
          f"with/without every round ({a.mode} mode)")
    print(f"Scenarios 1-4: both clusters at the same time, {a.pair_clients} client each; 5, 6-7p: one cluster at a "
          f"time, {a.clients} clients / {a.threads} threads"
          + (f"; scenario 5 in rounds 1-{a.token_rounds}" if a.token_rounds else ""))
    print(f"{a.cpus} CPUs; load average before {a.load_before}, after {a.load_after}")
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    if ir_rows:
        print()
        print("Instructions per transaction in one backend (callgrind, postgres --single; the same on every run):")
        ir_header = ("#", "with", "without", "added", "ratio without/with")
        iw = [max(len(str(r[i])) for r in ir_rows + [ir_header]) for i in range(len(ir_header))]
        iline = lambda r: "  ".join(str(c).ljust(iw[i]) for i, c in enumerate(r)).rstrip()
        print(iline(ir_header))
        print("  ".join("-" * w for w in iw))
        for r in ir_rows:
            print(iline(r))
        print("  (the backend's own work: not the kernel's write() calls, nor the audit writer's loading)")
    print()
    print("ratio = the median over rounds of with / without in the same round (the two runs of a round share the")
    print("  machine's conditions; the ratio of the two medians is in the JSON as ratio_of_medians). Each side's")
    print("  median tps and min-max are shown beside it. Scenario 5: per-transaction latency, extension loaded;")
    print("  'tok' = agent presents and consumes a granted token for a one-row DELETE, 'plain' = the same")
    print("  transaction shape by a non-agent. 5 runs in database bench: its tokens table holds only the")
    print(f"  run's tokens ({rng(tokens_rows_empty)} rows), its audit_log only the bench's own events "
          f"({rng(audit_rows_empty)} rows at run start).")
    print("  5c runs in database bench_capped at the same time as 5 and 5b: each token is granted with")
    print("  max_rows => 1, so every DELETE's rows are counted and held to the cap; 5c ratio = 5c latency / 5 latency.")
    print(f"  5b runs in database bench_seeded: {a.seed_rows:,} unrelated tokens rows seeded before each run, "
          f"{a.audit_seed_rows:,} audit_log rows")
    print(f"  seeded once in setup ({rng(tokens_rows_seeded)} tokens / {rng(audit_rows_seeded)} audit_log rows "
          "at run start); 5b ratio = 5b latency / 5 latency.")
    if ref:
        print("  6r: PostgreSQL's log_statement = all (a non-agent, library not loaded) against the same")
        print("  select-only run with no logging (6's 'without' column): the price of one server-log line per")
        print("  statement by itself, which audit_level = all pays too.")
    print("  6t: audit_level = all with audit_destination = table (no server-log line per statement) against")
    print("  6's run without the library. 6p, 7p: the same loads and roles with pgAudit preloaded instead")
    print("  (pgaudit.log = all, write), against the same runs without logging; 6:6p and 7:7p = ours / pgAudit's")
    print("  tps in the same round (>= 1: ours costs no more than pgAudit for the same job).")
    for sid, scen, role in (("6", "s6_audit_all", "bench_agent_all"), ("6t", "s6t_audit_table", "bench_agent_table"),
                            ("7", "s7_audit_writes", "bench_agent_wr")):
        af = audit_facts(facts, scen)
        if not af["transactions"]:
            continue
        print(f"Scenario {sid} (database bench_audit, role {role}): {af['events_per_transaction']:.2f} audit "
              f"events per transaction, server log +{af['server_log_bytes_per_transaction']:.0f} bytes per "
              f"transaction, {af['events_dropped']} dropped;")
        bl, dr = af["backlog_after_run"], af["drain_s"]
        print(f"  writer backlog at the end of a run {rng(bl)} events, loaded in "
              f"{dr['min']:.1f}-{dr['max']:.1f} s (between runs, not measured).")
    if a.load_before and a.cpus and float(a.load_before.split()[0]) > 0.5 * float(a.cpus):
        print(f"  The machine was busy before the run (load {a.load_before.split()[0]} on {a.cpus} CPUs): expect noise.")
    if a.mode != "default":
        print(f"  ({a.mode} mode: runs are short, figures are indicative only)")

    summary = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": a.mode,
        "config": {
            "postgresql": a.pg_version, "pgbench_scale": a.scale, "clients": a.clients,
            "threads": a.threads, "duration_s": a.duration, "token_duration_s": a.token_duration,
            "rounds_per_side": a.rounds, "token_rounds": a.token_rounds,
            "pair_clients": a.pair_clients,
            "order": "two identical clusters (B a copy of A after setup) swap with/without every round; "
                     "scenarios 1-4 run on both at the same time, 6, 6t, 6r, 6p, 7 and 7p one cluster "
                     "at a time (sides with, without, pgaudit in odd rounds, pgaudit, without, with in "
                     "even ones; pgaudit is the without cluster with only pgaudit preloaded), "
                     "5 on the with cluster",
            "protocol": "simple", "cpus": a.cpus,
            "load_average_before": a.load_before, "load_average_after": a.load_after,
        },
        "scenarios": scenarios,
        "worst_ratio": round(worst, 4),
        "worst_ratio_scenarios": "1-4",
        "audit_all_ratio": round(s6_ratio, 4),
        "audit_all_vs_pgaudit": round(s6vp_ratio, 4),
        "audit_table_ratio": round(s6t_ratio, 4),
        "audit_writes_vs_pgaudit": round(s7vp_ratio, 4),
        "runs": runs,
        "facts": facts,
        "instructions": [{"scenario": k[0], "side": k[1], "per_transaction": round(v, 1)}
                         for k, v in sorted(ir.items())],
    }
    with open(a.json, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(f"JSON summary: {a.json}")
    print(f"worst_ratio={worst:.3f}")


if __name__ == "__main__":
    main()
