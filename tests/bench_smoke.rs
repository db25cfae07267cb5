//! Smoke test of the benchmark command: `scripts/bench --smoke` (1 round per
//! side, 1 s per run, every scenario) on its own cluster, then checks that every
//! scenario 1-6 (and the 6r reference, and the callgrind instruction counts)
//! produced numbers in the JSON summary (5b with its seeded tokens
//! and audit_log rows, 6 with the audit events it recorded), and the output
//! ends with `worst_ratio=<x.xxx>`. No timing assertions.
//!
//! The bench builds its own two clusters (names `bench-smoke` and
//! `bench-smoke-b`, ports 55451 and 55452 unless AAS_BENCH_SMOKE_PORT says
//! otherwise, within 55450-55458), so it never touches the integration cluster. It uses the installed extension: unless
//! AAS_BENCH_SKIP_INSTALL is set explicitly, it is set to 1 here (scripts/test
//! installs the extension before the integration tests).

use aas_integration::repo_root;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn bench_smoke_reports_every_scenario() {
    let root = repo_root();
    let json_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench_smoke.json");
    let _ = std::fs::remove_file(&json_path);
    let port = std::env::var("AAS_BENCH_SMOKE_PORT").unwrap_or_else(|_| "55451".into());
    let skip_install = std::env::var("AAS_BENCH_SKIP_INSTALL").unwrap_or_else(|_| "1".into());

    let out = Command::new(root.join("scripts/bench"))
        .args([
            "--smoke",
            "--port",
            &port,
            "--name",
            "bench-smoke",
            "--json",
        ])
        .arg(&json_path)
        .env("AAS_BENCH_SKIP_INSTALL", skip_install)
        .current_dir(&root)
        .output()
        .expect("run scripts/bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/bench --smoke failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );

    // The very last line: worst_ratio=<x.xxx>.
    let last = stdout.lines().last().unwrap_or("");
    let value = last
        .strip_prefix("worst_ratio=")
        .unwrap_or_else(|| panic!("last line is not worst_ratio=...: {last:?}\n{stdout}"));
    let (int, frac) = value
        .split_once('.')
        .unwrap_or_else(|| panic!("worst_ratio is not x.xxx: {value:?}"));
    assert!(
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.len() == 3
            && frac.bytes().all(|b| b.is_ascii_digit()),
        "worst_ratio is not x.xxx: {value:?}"
    );

    let text = std::fs::read_to_string(&json_path)
        .unwrap_or_else(|e| panic!("read {}: {e}\n{stdout}", json_path.display()));
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON summary: {e}\n{text}"));
    assert!(num(&doc, &["worst_ratio"]) > 0.0);

    let scenarios: BTreeMap<String, &Value> = match doc.get("scenarios") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| (string(s, &["id"]).to_string(), s))
            .collect(),
        other => panic!("scenarios is not an array: {other:?}"),
    };
    // "with" and "without" are the two sides each ratio compares: for 6p
    // and 7p pgAudit's run and the run without logging, for 6:6p and 7:7p
    // ours and pgAudit's.
    for id in [
        "1", "2", "3", "4", "6", "6t", "6p", "6:6p", "7", "7p", "7:7p",
    ] {
        let s = scenarios
            .get(id)
            .unwrap_or_else(|| panic!("scenario {id} missing"));
        assert_eq!(string(s, &["status"]), "measured", "scenario {id}");
        for path in [&["with", "median"][..], &["without", "median"], &["ratio"]] {
            assert!(
                num(s, path) > 0.0,
                "scenario {id}: {path:?} is not positive"
            );
        }
        for path in [
            &["with", "min"][..],
            &["with", "max"],
            &["without", "min"],
            &["without", "max"],
        ] {
            num(s, path);
        }
    }
    let s5 = scenarios.get("5").expect("scenario 5 missing");
    assert_eq!(string(s5, &["status"]), "measured");
    for path in [
        &["token_path", "median"][..],
        &["plain_delete", "median"],
        &["seeded", "token_path", "median"],
        &["seeded", "ratio_to_empty"],
    ] {
        assert!(num(s5, path) > 0.0, "scenario 5: {path:?} is not positive");
    }
    num(s5, &["added_ms"]);
    assert_eq!(num(s5, &["seeded", "tokens_rows_seeded"]), 100_000.0);
    assert_eq!(num(s5, &["seeded", "audit_log_rows_seeded"]), 1_000_000.0);
    assert!(
        num(
            s5,
            &["seeded", "tables_at_run_start", "audit_log_rows", "min"]
        ) >= 1_000_000.0,
        "scenario 5b ran without the seeded audit log"
    );
    assert!(
        num(s5, &["tables_at_run_start", "audit_log_rows", "max"]) < 1_000_000.0,
        "scenario 5's database has the seeded audit log"
    );

    // Scenario 5c: the token path with a row cap ran, every capped token
    // used (the bench checks that), and its cost is measured against 5.
    let s5c = scenarios.get("5c").expect("scenario 5c missing");
    assert_eq!(string(s5c, &["status"]), "measured");
    assert!(num(s5c, &["token_path", "median"]) > 0.0);
    assert!(num(s5c, &["ratio_to_uncapped"]) > 0.0);
    num(s5c, &["added_ms_vs_plain"]);

    // Scenario 6 (checked with 1-4 above for with/without/ratio): every
    // statement of the audit_level = all agent was recorded.
    let s6 = scenarios.get("6").expect("scenario 6 missing");
    let audit = lookup(s6, &["audit_with_side"]);
    assert!(num(audit, &["transactions"]) > 0.0);
    assert!(
        num(audit, &["events_per_transaction"]) >= 1.0,
        "scenario 6: fewer audit events than statements: {audit}"
    );
    assert_eq!(num(audit, &["events_dropped"]), 0.0, "scenario 6: {audit}");
    assert!(num(&doc, &["audit_all_ratio"]) > 0.0);
    // 6t (destination table) and 7 (audit_level = writes, two writes per
    // transaction) recorded every statement too; 6t wrote no log line per
    // statement.
    for (id, per) in [("6t", 1.0), ("7", 2.0)] {
        let audit = lookup(scenarios[id], &["audit_with_side"]);
        assert!(
            num(audit, &["events_per_transaction"]) >= per,
            "scenario {id}: fewer audit events than statements: {audit}"
        );
        assert_eq!(
            num(audit, &["events_dropped"]),
            0.0,
            "scenario {id}: {audit}"
        );
    }
    let t = lookup(scenarios["6t"], &["audit_with_side"]);
    assert!(
        num(t, &["server_log_bytes"]) < num(t, &["transactions"]),
        "scenario 6t (destination table) wrote server-log lines: {t}"
    );
    for key in [
        "audit_all_vs_pgaudit",
        "audit_table_ratio",
        "audit_writes_vs_pgaudit",
    ] {
        assert!(num(&doc, &[key]) > 0.0, "{key}");
    }

    // 6r, the log_statement = all reference, and the callgrind instruction
    // counts of scenarios 1-4 and 6 (single-user backend, with and without).
    let s6r = scenarios.get("6r").expect("scenario 6r missing");
    assert!(num(s6r, &["log_statement_all", "median"]) > 0.0);
    assert!(num(s6r, &["ratio"]) > 0.0);
    for id in ["1", "2", "3", "4", "6", "6t", "6p", "7", "7p"] {
        let s = scenarios[id];
        for side in ["with", "without"] {
            assert!(
                num(s, &["instructions_per_txn", side]) > 0.0,
                "scenario {id}: no instruction count {side} the library"
            );
        }
    }
}

fn lookup<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |cur, k| {
        cur.get(k)
            .unwrap_or_else(|| panic!("missing {k:?} (path {path:?}) in {cur}"))
    })
}

fn num(v: &Value, path: &[&str]) -> f64 {
    match lookup(v, path) {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => f,
            _ => panic!("{path:?} is not a finite number: {n}"),
        },
        other => panic!("{path:?} is not a number: {other}"),
    }
}

fn string<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    match lookup(v, path) {
        Value::String(s) => s,
        other => panic!("{path:?} is not a string: {other}"),
    }
}

/// `scripts/bench --recycle --smoke`: the recycle bin's cases (an agent's
/// DROP TABLE of two sizes, TRUNCATE and DELETE of three sizes, bin on
/// and off) each print a
/// median for both sides and a ratio, and the O(1) line. No timing
/// assertions. Its own cluster (benchrb, port 55459).
#[test]
fn bench_smoke_recycle_reports_every_case() {
    let root = repo_root();
    let skip_install = std::env::var("AAS_BENCH_SKIP_INSTALL").unwrap_or_else(|_| "1".into());
    let out = Command::new(root.join("scripts/bench"))
        .args(["--recycle", "--smoke"])
        .env("AAS_BENCH_SKIP_INSTALL", skip_install)
        .current_dir(&root)
        .output()
        .expect("run scripts/bench --recycle");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/bench --recycle --smoke failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for case in [
        "DROP TABLE, 1000 rows",
        "DROP TABLE, 100000 rows",
        "TRUNCATE, 100000 rows",
        "DELETE, 1 row, first of session",
        "DELETE, 1 of 100000 rows",
        "DELETE, 1000 of 100000 rows",
        "DELETE, 100000 of 100000 rows",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(case))
            .unwrap_or_else(|| panic!("no line for {case}:\n{stdout}"));
        let numbers: Vec<f64> = line[line.find(case).unwrap() + case.len()..]
            .split_whitespace()
            .map(|n| {
                n.parse()
                    .unwrap_or_else(|_| panic!("not a number in {line:?}"))
            })
            .collect();
        assert_eq!(numbers.len(), 3, "{line}");
        assert!(numbers.iter().all(|n| *n > 0.0), "{line}");
    }
    assert!(
        stdout.contains("O(1): a kept DROP of 100000 rows took"),
        "{stdout}"
    );
}
