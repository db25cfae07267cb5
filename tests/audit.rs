//! The agent audit log: every decision about an agent reaches
//! ai_agent_safety.audit_log of its database, quickly, exactly once, across
//! writer crashes and server restarts, and nobody can rewrite it.
//!
//! Events travel asynchronously (spool file, then the background writer), so
//! tests wait for them with bounded polling loops. To show that something was
//! *not* recorded, a test makes a later refusal as a marker: the spool is
//! loaded in order, so once the marker is in the table, everything before it
//! that was recorded is too.

use aas_integration::postgres::Client;
use aas_integration::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

fn exec(c: &mut Client, sql: &str) {
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

/// The outcome of a bounded wait for a count.
struct Waited {
    last: i64,
    /// The largest value seen while waiting (to catch overshoot: duplicates).
    max: i64,
    elapsed: Duration,
}

/// Polls the count `sql` until it equals `want` or `limit` has passed.
fn wait_count(c: &mut Client, sql: &str, want: i64, limit: Duration) -> Waited {
    let start = Instant::now();
    let mut max = i64::MIN;
    loop {
        let n = count(c, sql);
        max = max.max(n);
        let elapsed = start.elapsed();
        if n == want || elapsed >= limit {
            return Waited {
                last: n,
                max,
                elapsed,
            };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) for `sql` to count `want`, panicking with `what` otherwise.
fn expect_count(c: &mut Client, sql: &str, want: i64, limit: Duration, what: &str) -> Duration {
    let w = wait_count(c, sql, want, limit);
    assert_eq!(
        w.last, want,
        "{what}: expected {want} after {:?}, got {} (max seen {})",
        w.elapsed, w.last, w.max
    );
    w.elapsed
}

/// Events of one session user in a database, oldest first.
#[derive(Debug, Clone)]
struct Ev {
    source: String,
    event: String,
    decision: String,
    operation: Option<String>,
    object: Option<String>,
    statement: Option<String>,
    reason: Option<String>,
    task_id: Option<String>,
    token: Option<String>,
    session_user: Option<String>,
}

fn events_where(c: &mut Client, cond: &str) -> Vec<Ev> {
    let sql = format!(
        "SELECT source, event, decision, operation, object, statement, reason, task_id, token::text,
                session_user_name::text
           FROM ai_agent_safety.audit_log WHERE {cond} ORDER BY id"
    );
    c.query(&sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| Ev {
            source: r.get(0),
            event: r.get(1),
            decision: r.get(2),
            operation: r.get(3),
            object: r.get(4),
            statement: r.get(5),
            reason: r.get(6),
            task_id: r.get(7),
            token: r.get(8),
            session_user: r.get(9),
        })
        .collect()
}

fn events_of(c: &mut Client, user: &str) -> Vec<Ev> {
    events_where(c, &format!("session_user_name = '{user}'"))
}

fn refused_count_sql(user: &str) -> String {
    format!(
        "SELECT count(*) FROM ai_agent_safety.audit_log
          WHERE session_user_name = '{user}' AND event = 'refused'"
    )
}

/// Makes a refusal (DELETE in the protected database) as a marker and waits
/// until `want_refusals` refusals of the agent are in the table.
fn marker_refusal(w: &World, agent: &mut Client, want_refusals: i64) {
    assert_guard_refused(agent.batch_execute("DELETE FROM orders WHERE id = 10"));
    expect_count(
        &mut admin(&w.protected),
        &refused_count_sql(&w.agent),
        want_refusals,
        Duration::from_secs(10),
        "marker refusal",
    );
}

/// A human approver: a login role in ai_agent_approver, not an agent.
fn new_approver(tag: &str) -> String {
    let name = unique(&format!("{tag}_dba"));
    exec(
        &mut admin("postgres"),
        &format!("CREATE ROLE {name} LOGIN IN ROLE ai_agent_approver"),
    );
    name
}

/// The agent requests a token (as itself, in its session); returns its id.
fn request(c: &mut Client, op: &str, target: &str) -> String {
    c.query_one(
        "SELECT request_approval_token($1, COALESCE(NULLIF(current_setting('ai_agent_safety.task_id'), ''), 'audit-task'), $2, 'audit test')::text",
        &[&op, &target],
    )
    .unwrap_or_else(|e| panic!("request_approval_token({op}, {target}): {}", describe(&e)))
    .get(0)
}

fn grant(c: &mut Client, token: &str) {
    c.query_one(
        "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'ok by audit test')::text",
        &[&token],
    )
    .unwrap_or_else(|e| panic!("grant {token}: {}", describe(&e)));
}

/// Pids of the audit writer of a database (normally zero or one).
fn writer_pids(a: &mut Client, db: &str) -> Vec<i32> {
    a.query(
        "SELECT pid FROM pg_stat_activity
          WHERE backend_type = 'ai_agent_safety audit writer' AND datname = $1",
        &[&db],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// SIGTERM to a backend (never SIGKILL: that would crash-restart the cluster).
fn terminate(a: &mut Client, pid: i32) -> bool {
    a.query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0)
}

/// Waits (bounded) until a pid is gone from pg_stat_activity.
fn wait_gone(a: &mut Client, pid: i32) {
    expect_count(
        a,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
        0,
        Duration::from_secs(10),
        &format!("backend {pid} exits"),
    );
}

// ---------------------------------------------------------------- refusals

#[test]
fn refused_drop_is_in_the_table_within_a_second() {
    let w = World::new("aud_drop");
    let mut ag = w.agent_in(&w.protected);
    exec(&mut ag, "SET ai_agent_safety.task_id = 'task-drop-1'");
    exec(&mut ag, "BEGIN");
    let t0 = Instant::now();
    assert_guard_refused(ag.batch_execute("DROP TABLE orders"));
    exec(&mut ag, "ROLLBACK");
    let mut a = admin(&w.protected);
    let sql = refused_count_sql(&w.agent);
    let limit = Duration::from_secs(1);
    let mut arrived = None;
    while t0.elapsed() < limit {
        if count(&mut a, &sql) == 1 {
            arrived = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let arrived = arrived.unwrap_or_else(|| {
        panic!(
            "the refused DROP's event was not in audit_log within {limit:?} (count now {})",
            count(&mut a, &sql)
        )
    });
    eprintln!("refused DROP event arrived in audit_log after {arrived:?} (first event: writer started on demand)");
    assert!(arrived < limit);
    let ev = events_of(&mut a, &w.agent);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!(e.source, "guard");
    assert_eq!(e.event, "refused");
    assert_eq!(e.decision, "refuse");
    assert_eq!(e.operation.as_deref(), Some("DROP"), "{e:?}");
    assert_eq!(e.object.as_deref(), Some("public.orders"), "{e:?}");
    assert_eq!(e.statement.as_deref(), Some("DROP TABLE orders"), "{e:?}");
    assert_eq!(e.task_id.as_deref(), Some("task-drop-1"), "{e:?}");
    assert_eq!(e.token, None, "{e:?}");
    let reason = e.reason.as_deref().unwrap_or("");
    assert!(reason.contains("require_approval"), "{reason}");
    assert!(reason.contains("task-drop-1"), "{reason}");
    // The rolled-back transaction did not take the event with it, and the table is there.
    assert_eq!(count(&mut a, "SELECT count(*) FROM public.orders"), 10);
}

#[test]
fn refusal_with_a_wrong_token_records_the_token() {
    let w = World::new("aud_badtok");
    let dba = new_approver("aud_badtok");
    let mut ag = w.agent_in(&w.protected);
    exec(&mut ag, "SET ai_agent_safety.task_id = 'task-bad-token'");
    let token = request(&mut ag, "DELETE", "public.orders");
    grant(&mut connect(&dba, &w.protected), &token);
    exec(
        &mut ag,
        &format!("SET ai_agent_safety.approval_token = '{token}'"),
    );
    exec(&mut ag, "BEGIN");
    let t0 = Instant::now();
    assert_refused(ag.batch_execute("DROP TABLE orders"));
    exec(&mut ag, "ROLLBACK");
    let mut a = admin(&w.protected);
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        1,
        Duration::from_secs(1),
        "refused DROP with a DELETE token",
    );
    let arrived = t0.elapsed();
    eprintln!(
        "refused DROP (wrong token) event arrived after {arrived:?} (writer already running)"
    );
    assert!(arrived < Duration::from_secs(1), "{arrived:?}");
    let ev = events_where(
        &mut a,
        &format!("session_user_name = '{}' AND event = 'refused'", w.agent),
    );
    let e = &ev[0];
    assert_eq!(e.decision, "refuse");
    assert_eq!(e.operation.as_deref(), Some("DROP"), "{e:?}");
    assert_eq!(e.token.as_deref(), Some(token.as_str()), "{e:?}");
    assert_eq!(e.task_id.as_deref(), Some("task-bad-token"), "{e:?}");
    assert!(e.reason.as_deref().unwrap_or("").contains(&token), "{e:?}");
    // The token was not used up by the refused statement.
    assert_eq!(
        count(
            &mut a,
            &format!(
                "SELECT count(*) FROM ai_agent_safety.audit_log
                  WHERE token = '{token}' AND event = 'consumed'"
            )
        ),
        0
    );
}

// ---------------------------------------------------------------- mode and levels

#[test]
fn audit_mode_allows_and_records_would_refuse() {
    let w = World::with_settings("aud_mode", &[("ai_agent_safety.mode", "audit")]);
    let mut ag = w.agent_in(&w.protected);
    exec(&mut ag, "SET ai_agent_safety.task_id = 'shadow-1'");
    let n = ag
        .execute("DELETE FROM orders WHERE id <= 3", &[])
        .unwrap_or_else(|e| panic!("audit mode must allow the DELETE: {}", describe(&e)));
    assert_eq!(n, 3);
    let mut a = admin(&w.protected);
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM public.orders WHERE id <= 3"),
        0,
        "the rows are really gone"
    );
    expect_count(
        &mut a,
        &format!(
            "SELECT count(*) FROM ai_agent_safety.audit_log
              WHERE session_user_name = '{}' AND decision = 'would_refuse'",
            w.agent
        ),
        1,
        Duration::from_secs(5),
        "would_refuse event",
    );
    // (The recycle bin's record of the rows it kept is its own source.)
    let ev: Vec<_> = events_of(&mut a, &w.agent)
        .into_iter()
        .filter(|e| e.source != "recycle")
        .collect();
    assert_eq!(ev.len(), 1, "only the would_refuse event: {ev:?}");
    let e = &ev[0];
    assert_eq!(e.event, "would_refuse");
    assert_eq!(e.operation.as_deref(), Some("DELETE"));
    assert_eq!(e.task_id.as_deref(), Some("shadow-1"));
    let reason = e.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("require_approval") && reason.contains("refused"),
        "{reason}"
    );
}

#[test]
fn audit_level_decisions_records_only_decisions() {
    let w = World::with_settings("aud_lvl_d", &[("ai_agent_safety.audit_level", "decisions")]);
    let mut ag = w.agent_in(&w.protected);
    ag.simple_query("SELECT count(*) FROM orders").unwrap();
    exec(&mut ag, "INSERT INTO orders VALUES (100, 'new')");
    marker_refusal(&w, &mut ag, 1);
    let ev = events_of(&mut admin(&w.protected), &w.agent);
    assert_eq!(ev.len(), 1, "only the refusal: {ev:?}");
    assert_eq!(ev[0].event, "refused");
}

#[test]
fn audit_level_writes_records_writes_not_reads() {
    let w = World::with_settings("aud_lvl_w", &[("ai_agent_safety.audit_level", "writes")]);
    let mut ag = w.agent_in(&w.protected);
    ag.simple_query("SELECT count(*) FROM orders").unwrap();
    exec(&mut ag, "INSERT INTO orders VALUES (100, 'new')");
    marker_refusal(&w, &mut ag, 1);
    let ev = events_of(&mut admin(&w.protected), &w.agent);
    assert_eq!(ev.len(), 2, "the INSERT and the refusal: {ev:?}");
    assert_eq!(ev[0].event, "allowed", "{ev:?}");
    assert_eq!(ev[0].decision, "allow", "{ev:?}");
    assert_eq!(
        ev[0].statement.as_deref(),
        Some("INSERT INTO orders VALUES (100, 'new')")
    );
    assert_eq!(ev[1].event, "refused");
    assert!(
        !ev.iter()
            .any(|e| e.statement.as_deref().unwrap_or("").starts_with("SELECT")),
        "{ev:?}"
    );
}

/// An event names its table as it is named now: after a rename in another
/// session, a schema's rename, and with quote_all_identifiers (names are
/// cached per backend until one of these changes them).
#[test]
fn events_name_tables_as_they_are_named_now() {
    let w = World::with_settings("aud_names", &[("ai_agent_safety.audit_level", "writes")]);
    let mut dba = admin(&w.protected);
    exec(
        &mut dba,
        &format!(
            "CREATE SCHEMA s1; CREATE TABLE s1.t (id int); INSERT INTO s1.t VALUES (1);
             GRANT USAGE ON SCHEMA s1 TO {a}; GRANT SELECT, UPDATE ON s1.t TO {a}",
            a = w.agent
        ),
    );
    let mut ag = w.agent_in(&w.protected);
    exec(&mut ag, "UPDATE s1.t SET id = 2");
    exec(&mut dba, "ALTER TABLE s1.t RENAME TO t2");
    exec(&mut ag, "UPDATE s1.t2 SET id = 3");
    exec(&mut dba, "ALTER SCHEMA s1 RENAME TO s2");
    exec(&mut ag, "UPDATE s2.t2 SET id = 4");
    exec(&mut ag, "SET quote_all_identifiers = on");
    exec(&mut ag, "UPDATE s2.t2 SET id = 5");
    marker_refusal(&w, &mut ag, 1);
    let objects: Vec<Option<String>> = events_where(
        &mut dba,
        &format!(
            "session_user_name = '{}' AND operation = 'UPDATE' AND event = 'allowed'",
            w.agent
        ),
    )
    .into_iter()
    .map(|e| e.object)
    .collect();
    assert_eq!(
        objects,
        ["s1.t", "s1.t2", "s2.t2", "\"s2\".\"t2\""].map(|o| Some(o.to_string())),
    );
}

#[test]
fn audit_level_all_records_reads() {
    let w = World::with_settings("aud_lvl_a", &[("ai_agent_safety.audit_level", "all")]);
    let mut ag = w.agent_in(&w.protected);
    ag.simple_query("SELECT count(*) FROM orders").unwrap();
    exec(&mut ag, "INSERT INTO orders VALUES (100, 'new')");
    marker_refusal(&w, &mut ag, 1);
    let ev = events_of(&mut admin(&w.protected), &w.agent);
    let sel: Vec<&Ev> = ev
        .iter()
        .filter(|e| e.statement.as_deref() == Some("SELECT count(*) FROM orders"))
        .collect();
    assert_eq!(sel.len(), 1, "{ev:?}");
    assert_eq!(sel[0].event, "allowed");
    assert_eq!(sel[0].decision, "allow");
    assert!(
        ev.iter().any(|e| e.event == "allowed"
            && e.statement.as_deref() == Some("INSERT INTO orders VALUES (100, 'new')")),
        "{ev:?}"
    );
    assert_eq!(ev.last().unwrap().event, "refused", "{ev:?}");
}

/// A statement run in parallel is recorded once, by its leader: the
/// parallel workers that run parts of it record nothing again.
#[test]
fn audit_level_all_records_a_parallel_statement_once() {
    let w = World::with_settings("aud_par", &[("ai_agent_safety.audit_level", "all")]);
    let mut o = w.owner_in(&w.protected);
    exec(
        &mut o,
        &format!(
            "CREATE TABLE public.par AS SELECT g AS id FROM generate_series(1, 20000) g;
             ANALYZE public.par; GRANT SELECT ON public.par TO {}",
            w.agent
        ),
    );
    let mut ag = w.agent_in(&w.protected);
    let major = server_major(&mut ag);
    let force = if major >= 16 {
        "debug_parallel_query"
    } else {
        "force_parallel_mode"
    };
    exec(
        &mut ag,
        &format!(
            "SET {force} = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
             SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2"
        ),
    );
    // Worker slots are shared with the rest of the suite (the audit writers
    // of the databases other tests use, each kept a few idle seconds):
    // tried until a worker really ran the statement (bounded in time, as
    // all of the slots can be busy for a while).
    let mut launched = 0;
    let mut tries = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while launched == 0 && Instant::now() < deadline {
        if tries > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        tries += 1;
        let plan: Vec<String> = ag
            .query(
                &format!(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) \
                     SELECT count(*) FROM public.par WHERE id > {tries} /* par-{tries} */"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        launched = plan
            .iter()
            .find_map(|l| l.trim().strip_prefix("Workers Launched: "))
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0);
    }
    assert!(launched > 0, "no parallel worker in {tries} tries");
    marker_refusal(&w, &mut ag, 1);
    let mark = format!("/* par-{tries} */");
    let ev: Vec<Ev> = events_of(&mut admin(&w.protected), &w.agent)
        .into_iter()
        .filter(|e| {
            e.statement.as_deref().unwrap_or("").contains(&mark)
                && e.operation.as_deref() == Some("SELECT")
        })
        .collect();
    // (The EXPLAIN itself is an event of its own, not counted here.)
    assert_eq!(
        ev.len(),
        1,
        "one event for a query {launched} worker(s) helped run: {ev:?}"
    );
}

/// The server log's lines that name `who` (each event's JSON line names its
/// session user). The test cluster logs to server.log in its data directory.
/// Read as bytes: other tests' databases log in other encodings.
fn log_lines_of(who: &str) -> Vec<String> {
    let bytes: Vec<u8> = admin("postgres")
        .query_one(
            "SELECT pg_catalog.pg_read_binary_file(f) FROM pg_catalog.pg_ls_dir('.') f WHERE f = 'server.log'
             UNION ALL SELECT pg_catalog.pg_read_binary_file(pg_catalog.pg_current_logfile())
              WHERE pg_catalog.pg_current_logfile() IS NOT NULL LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| l.contains("ai_agent_safety: {") && l.contains(&format!("\"{who}\"")))
        .map(str::to_string)
        .collect()
}

/// `audit_destination` routes the allowed statements `audit_level` adds:
/// `table` writes them to the audit table and no log line, `log` to the
/// log and not the table, `both` to both. A refusal goes to both under
/// every destination.
#[test]
fn audit_destination_routes_allowed_statements_and_never_refusals() {
    let w = World::with_settings("aud_dest", &[("ai_agent_safety.audit_level", "all")]);
    let mut a = admin(&w.protected);
    let mut refusals = 0;
    for dest in ["both", "table", "log"] {
        admin("postgres")
            .batch_execute(&format!(
                "ALTER DATABASE {} SET ai_agent_safety.audit_destination = '{dest}'",
                w.protected
            ))
            .unwrap();
        let mut ag = w.agent_in(&w.protected);
        let marker = format!("SELECT 'read under {dest}'");
        ag.simple_query(&marker).unwrap();
        refusals += 1;
        // The refusal comes after the read: once it is in the table, so is
        // the read if it was spooled (one writer, in order).
        marker_refusal(&w, &mut ag, refusals);
        let in_table = count(
            &mut a,
            &format!(
                "SELECT count(*) FROM ai_agent_safety.audit_log WHERE statement = $${marker}$$"
            ),
        );
        let log = log_lines_of(&w.agent);
        let in_log = log.iter().filter(|l| l.contains(&marker)).count();
        let refusals_in_log = log
            .iter()
            .filter(|l| l.contains("\"event\":\"refused\""))
            .count() as i64;
        let want = match dest {
            "both" => (1, 1),
            "table" => (1, 0),
            _ => (0, 1),
        };
        assert_eq!((in_table, in_log), want, "{dest}: (table, log) {log:#?}");
        assert_eq!(refusals_in_log, refusals, "{dest}: every refusal is logged");
    }
    // Not an agent's to change, nor a non-superuser's.
    let mut ag = w.agent_in(&w.protected);
    let e = assert_refused(ag.batch_execute("SET ai_agent_safety.audit_destination = 'log'"));
    assert!(e.contains("ai_agent_safety.audit_destination"), "{e}");
    let mut owner = w.owner_in(&w.protected);
    assert_sqlstate(
        owner.batch_execute("SET ai_agent_safety.audit_destination = 'table'"),
        "42501",
    );
}

/// The pid in a server-log line's prefix (the test clusters keep
/// PostgreSQL's default log_line_prefix, `%m [%p] `): who wrote the line.
fn written_by(line: &str) -> i32 {
    let from = line.find('[').expect("a [pid] prefix") + 1;
    let to = from + line[from..].find(']').expect("a [pid] prefix");
    line[from..to].parse().expect("a pid")
}

/// Under `audit_destination = both` (the default), an allowed statement's
/// log line is written by the database's audit writer as it loads the
/// event, when a writer is running for the database as the event is
/// spooled: the same JSON, naming the agent's backend, once, by the time
/// the event is in the table. Otherwise (no writer running yet), and for
/// every refusal, the agent's backend writes the line at once.
#[test]
fn under_both_the_writer_writes_an_allowed_statements_log_line() {
    let w = World::with_settings("aud_wlog", &[("ai_agent_safety.audit_level", "all")]);
    let mut ag = w.agent_in(&w.protected);
    let pid: i32 = ag.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut a = admin(&w.protected);
    // A refusal loaded means a writer runs (it stays 5 s idle, less when
    // other databases wait for a slot): a read spooled right after is most
    // likely the writer's to log. Each read is logged once either way.
    let mut by_writer = None;
    for i in 1..=20 {
        marker_refusal(&w, &mut ag, 2 * i - 1);
        let marker = format!("SELECT 'read {i}, logged by the writer', E'tab\\there'");
        ag.simple_query(&marker).unwrap();
        marker_refusal(&w, &mut ag, 2 * i);
        let log = log_lines_of(&w.agent);
        let reads: Vec<&String> = log
            .iter()
            .filter(|l| l.contains(&format!("'read {i}, logged by the writer'")))
            .collect();
        assert_eq!(reads.len(), 1, "{log:#?}");
        if written_by(reads[0]) != pid {
            by_writer = Some((marker, reads[0].clone(), log));
            break;
        }
    }
    let (marker, read, log) = by_writer.expect("a read logged by the writer in 20 tries");
    assert!(
        read.contains(&format!("\"pid\":{pid},"))
            && read.contains("\"event\":\"allowed\"")
            && read.contains(r#"E'tab\\there'"#),
        "{read}"
    );
    let row = a
        .query_one(
            &format!(
                "SELECT to_json(l)::text FROM (SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS ts, statement
                   FROM ai_agent_safety.audit_log WHERE statement = $${marker}$$) l"
            ),
            &[],
        )
        .unwrap()
        .get::<_, String>(0);
    let v: serde_json::Value = serde_json::from_str(&row).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&read[read.find("ai_agent_safety: ").unwrap() + 17..]).unwrap();
    assert_eq!(json["ts"], v["ts"], "the event's own time: {read}");
    assert_eq!(json["statement"], v["statement"], "{read}");
    let refusals: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"event\":\"refused\""))
        .collect();
    assert!(!refusals.is_empty());
    for r in refusals {
        assert_eq!(written_by(r), pid, "the backend's line: {r}");
    }
}

/// Where the extension is not created yet, an agent's events wait in the
/// spool for it, and their log lines do not: the agent's backend writes
/// them at once (a writer waiting for CREATE EXTENSION can lose its slot to
/// another database's, and an agent with many such databases could keep it
/// away). Once the extension is created, the writer writes them again for
/// the new events, and the waiting events load without a second log line.
#[test]
fn where_the_extension_is_not_created_the_backend_writes_the_log_line() {
    let w = World::new("aud_wlogext");
    let db = unique("aud_wlogext_bare");
    let mut su = admin("postgres");
    exec(&mut su, &format!("CREATE DATABASE {db}"));
    exec(
        &mut su,
        &format!(
            "ALTER ROLE {} IN DATABASE {db} SET ai_agent_safety.audit_level = 'all'",
            w.agent
        ),
    );
    let mut ag = w.agent_in(&db);
    let pid: i32 = ag.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let before = "SELECT 'read before CREATE EXTENSION'";
    ag.simple_query(before).unwrap();
    let lines_of = |text: &str| -> Vec<String> {
        log_lines_of(&w.agent)
            .into_iter()
            .filter(|l| l.contains(text))
            .collect()
    };
    let logged = lines_of("read before CREATE EXTENSION");
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert_eq!(written_by(&logged[0]), pid, "{}", logged[0]);

    let mut a = admin(&db);
    exec(&mut a, "CREATE EXTENSION ai_agent_safety");
    let after = "SELECT 'read after CREATE EXTENSION'";
    // The writer looks again for the extension at an event a second after
    // its last look; reads spooled while it runs are its to log. The
    // agent's reads go on until the waiting read is loaded and a read's
    // line came from the writer.
    let start = Instant::now();
    loop {
        ag.simple_query(after).unwrap();
        let loaded = count(
            &mut a,
            &format!(
                "SELECT count(*) FROM ai_agent_safety.audit_log WHERE statement = $${before}$$"
            ),
        );
        let by_writer = lines_of("read after CREATE EXTENSION")
            .iter()
            .any(|l| written_by(l) != pid);
        if loaded == 1 && by_writer {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "after 30 s: loaded {loaded}, a line by the writer {by_writer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The waiting read was logged once: by the backend, not again when it
    // was loaded.
    assert_eq!(lines_of("read before CREATE EXTENSION").len(), 1);
}

/// Stops every audit writer of a database (SIGTERM: each loads what waits
/// and goes), so the next event starts a new one, whose first pass runs
/// the maintenance.
fn restart_writers(a: &mut Client, db: &str) {
    for pid in writer_pids(a, db) {
        terminate(a, pid);
        wait_gone(a, pid);
    }
}

/// Restarts a database's writers, then shows the new writer gets past its
/// first pass's other steps (the maintenance, the recycle bin's expiry:
/// `step`): a read starts it and loads, and a read after that pass loads
/// too, within 10 s each.
fn a_new_writer_gets_past(a: &mut Client, ag: &mut Client, db: &str, step: &str) {
    restart_writers(a, db);
    let in_table = |s: &str| {
        format!("SELECT count(*) FROM ai_agent_safety.audit_log WHERE statement = $${s}$$")
    };
    let first = format!("SELECT 'starts a writer, then {step}'");
    ag.simple_query(&first).unwrap();
    expect_count(
        a,
        &in_table(&first),
        1,
        Duration::from_secs(10),
        "first read",
    );
    let next = format!("SELECT 'read after {step}'");
    ag.simple_query(&next).unwrap();
    expect_count(
        a,
        &in_table(&next),
        1,
        Duration::from_secs(10),
        &format!("a read after {step}, while the agent holds its lock"),
    );
}

/// An agent cannot hold the audit writer up with a lock of its own. The
/// writer's maintenance records an `expired` event for each granted token
/// that ran out unused; an agent that kept its token's row locked (it
/// cancels the token, or uses it, in a transaction it leaves open) made the
/// writer wait there, and every event of the database, the log lines under
/// `both` among them, waited behind it (adversary finding). The writer now
/// skips a locked token, goes on loading, and records the token's expiry at
/// a later pass once the lock is gone.
#[test]
fn an_agent_locking_its_expired_token_does_not_hold_up_the_writer() {
    let w = World::with_settings(
        "aud_tokstall",
        &[
            ("ai_agent_safety.audit_level", "all"),
            ("ai_agent_safety.token_ttl", "1s"),
        ],
    );
    let dba = new_approver("aud_tokstall");
    let mut ag = w.agent_in(&w.protected);
    let token = request(&mut ag, "DELETE", "public.orders");
    grant(&mut connect(&dba, &w.protected), &token);
    let mut holder = w.agent_in(&w.protected);
    exec(&mut holder, "BEGIN");
    holder
        .query_one(
            "SELECT ai_agent_safety.cancel_approval_token($1::text::uuid)",
            &[&token],
        )
        .unwrap_or_else(|e| panic!("cancel in an open transaction: {}", describe(&e)));
    let mut a = admin(&w.protected);
    expect_count(
        &mut a,
        &format!(
            "SELECT count(*) FROM ai_agent_safety.tokens WHERE id = '{token}' AND expires_at < now()"
        ),
        1,
        Duration::from_secs(5),
        "the token runs out (token_ttl 1s)",
    );
    a_new_writer_gets_past(&mut a, &mut ag, &w.protected, "the maintenance");
    // The lock gone, a later pass records the expiry it skipped.
    exec(&mut holder, "ROLLBACK");
    restart_writers(&mut a, &w.protected);
    ag.simple_query("SELECT 'starts a writer again'").unwrap();
    expect_count(
        &mut a,
        &format!(
            "SELECT count(*) FROM ai_agent_safety.audit_log WHERE token = '{token}' AND event = 'expired'"
        ),
        1,
        Duration::from_secs(10),
        "the expiry, recorded once the row is free",
    );
}

/// Nor with a lock on something the recycle bin's expiry must drop: an
/// agent made a temporary table of its own depend on a kept sequence (a
/// default naming the sequence's oid) and read it in a transaction left
/// open; the expiry's trial DROP ... CASCADE waited for that table's lock,
/// and the writer with it, with every event of the database behind it
/// (adversary finding). The writer's steps other than the load now give
/// a lock up after a moment and try again at a later pass; the entry
/// expires once nothing outside the bin depends on it.
#[test]
fn an_agent_locking_what_an_expiry_drops_does_not_hold_up_the_writer() {
    let w = World::with_settings("aud_binstall", &[("ai_agent_safety.audit_level", "all")]);
    let db = &w.open;
    let mut su = admin("postgres");
    exec(
        &mut su,
        &format!(
            "ALTER DATABASE {db} SET ai_agent_safety.audit_level = 'all';
             ALTER DATABASE {db} SET ai_agent_safety.recycle_retention = '1s'"
        ),
    );
    let mut a = admin(db);
    exec(
        &mut a,
        &format!(
            "CREATE SEQUENCE public.kept_seq; ALTER SEQUENCE public.kept_seq OWNER TO {}",
            w.agent
        ),
    );
    let mut holder = w.agent_in(db);
    let oid: u32 = holder
        .query_one("SELECT 'public.kept_seq'::regclass::oid", &[])
        .unwrap()
        .get(0);
    exec(&mut holder, "DROP SEQUENCE public.kept_seq");
    exec(
        &mut holder,
        &format!("CREATE TEMP TABLE hold (c bigint DEFAULT nextval('{oid}'::regclass))"),
    );
    exec(&mut holder, "BEGIN; SELECT count(*) FROM hold");
    let held = |a: &mut Client| {
        count(
            a,
            "SELECT count(*) FROM ai_agent_safety.recycle_bin WHERE object = 'public.kept_seq'",
        )
    };
    assert_eq!(held(&mut a), 1, "the DROP is kept");
    expect_count(
        &mut a,
        "SELECT count(*) FROM ai_agent_safety.recycle_bin WHERE object = 'public.kept_seq' AND expires_at < now()",
        1,
        Duration::from_secs(5),
        "the entry's retention (1s) passes",
    );
    let mut ag = w.agent_in(db);
    a_new_writer_gets_past(&mut a, &mut ag, db, "the expiry is tried");
    assert_eq!(held(&mut a), 1, "the entry waits");
    // The agent's session gone, and its table with it, the entry expires.
    drop(holder);
    wait_for_expiry(&mut ag, "the kept sequence", || held(&mut a) == 1);
}

/// A writer held up anywhere in its loop (here by a superuser's lock on a
/// table its load writes: the load waits for its locks, however long) is
/// not left the log lines of new allowed statements:
/// once it has not begun a pass for a second, the agents' backends write
/// their lines at once, and the lines left to it before are written, once
/// each, when it goes on.
#[test]
fn a_writer_held_up_is_not_left_new_log_lines() {
    let w = World::with_settings("aud_wlate", &[("ai_agent_safety.audit_level", "all")]);
    let mut ag = w.agent_in(&w.protected);
    let pid: i32 = ag.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut a = admin(&w.protected);
    let mut locker = admin(&w.protected);
    exec(
        &mut locker,
        "BEGIN; LOCK TABLE ai_agent_safety.audit_spool_done IN SHARE MODE",
    );
    restart_writers(&mut a, &w.protected);
    ag.simple_query("SELECT 'starts a writer'").unwrap();
    expect_count(
        &mut a,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ai_agent_safety audit writer' \
              AND datname = '{}' AND wait_event_type = 'Lock'",
            w.protected
        ),
        1,
        Duration::from_secs(10),
        "the new writer waits for the lock in its load",
    );
    let lines_of = |text: &str| -> Vec<String> {
        log_lines_of(&w.agent)
            .into_iter()
            .filter(|l| l.contains(text))
            .collect()
    };
    let start = Instant::now();
    let mut reads = 0;
    loop {
        reads += 1;
        ag.simple_query(&format!("SELECT 'read {reads} while the writer waits'"))
            .unwrap();
        let logged = lines_of(&format!("'read {reads} while the writer waits'"));
        if let [line] = logged.as_slice() {
            assert_eq!(written_by(line), pid, "{line}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no read's line logged in 10 s while the writer waited: {logged:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    exec(&mut locker, "ROLLBACK");
    let last = format!("SELECT 'read {reads} while the writer waits'");
    expect_count(
        &mut a,
        &format!("SELECT count(*) FROM ai_agent_safety.audit_log WHERE statement = $${last}$$"),
        1,
        Duration::from_secs(10),
        "the reads load once the writer goes on",
    );
    for i in 1..=reads {
        let logged = lines_of(&format!("'read {i} while the writer waits'"));
        assert_eq!(logged.len(), 1, "read {i}: {logged:#?}");
    }
}

// ---------------------------------------------------------------- load and crashes

/// `threads` agent sessions, started together, each making `per_thread`
/// refusals (one implicit transaction each). `during` runs on the calling
/// thread while they work, with a counter of refusals made so far.
fn refusal_load(
    w: &World,
    threads: usize,
    per_thread: usize,
    during: impl FnOnce(&AtomicUsize, usize),
) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let barrier = barrier.clone();
        let done = done.clone();
        let agent = w.agent.clone();
        let db = w.protected.clone();
        handles.push(std::thread::spawn(move || {
            let mut c = connect(&agent, &db);
            barrier.wait();
            for _ in 0..per_thread {
                assert_refused(c.batch_execute("DELETE FROM orders WHERE id = 1"));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    barrier.wait();
    let t0 = Instant::now();
    during(&done, threads * per_thread);
    for h in handles {
        h.join().expect("a load thread failed");
    }
    t0.elapsed()
}

/// Waits (up to 60 s) until exactly `want` refusals of the agent are in the
/// table, asserting the count never goes past it; then checks per-session counts.
fn expect_all_refusals(w: &World, threads: usize, per_thread: usize) -> Duration {
    let want = (threads * per_thread) as i64;
    let mut a = admin(&w.protected);
    let waited = wait_count(
        &mut a,
        &refused_count_sql(&w.agent),
        want,
        Duration::from_secs(60),
    );
    assert!(
        waited.max <= want,
        "more events than refusals (duplicates): max seen {}",
        waited.max
    );
    assert_eq!(
        waited.last, want,
        "after {:?}: {} of {want} events in audit_log",
        waited.elapsed, waited.last
    );
    // Each session's events, exactly once.
    let per_pid: Vec<i64> = a
        .query(
            &format!(
                "SELECT count(*) FROM ai_agent_safety.audit_log
                  WHERE session_user_name = '{}' AND event = 'refused' GROUP BY pid",
                w.agent
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(per_pid.len(), threads, "{per_pid:?}");
    assert!(
        per_pid.iter().all(|n| *n == per_thread as i64),
        "{per_pid:?}"
    );
    // Nothing was deleted by any of it.
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM public.orders WHERE id = 1"),
        1
    );
    waited.elapsed
}

#[test]
fn load_eight_sessions_every_refusal_exactly_once() {
    let (threads, per_thread) = (8, 1000);
    let w = World::new("aud_load");
    let took = refusal_load(&w, threads, per_thread, |_, _| {});
    let drained = expect_all_refusals(&w, threads, per_thread);
    let n = threads * per_thread;
    eprintln!(
        "load: {n} refusals by {threads} sessions in {took:?} ({:.0} refusals/s); all in audit_log {drained:?} after the last one",
        n as f64 / took.as_secs_f64()
    );
}

#[test]
fn writer_terminated_mid_load_loses_and_duplicates_nothing() {
    let (threads, per_thread) = (8, 1000);
    let w = World::new("aud_kill");
    let mut a = admin(&w.protected);
    let mut kills: Vec<(i32, usize)> = Vec::new();
    let took = refusal_load(&w, threads, per_thread, |done, total| {
        // Terminate the writer at about 1/4 and at about 3/5 of the load.
        for at in [total / 4, total * 3 / 5] {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let made = done.load(Ordering::Relaxed);
                if made >= at {
                    let killed_before: Vec<i32> = kills.iter().map(|k| k.0).collect();
                    let pids: Vec<i32> = writer_pids(&mut a, &w.protected)
                        .into_iter()
                        .filter(|p| !killed_before.contains(p))
                        .collect();
                    if let Some(pid) = pids.first() {
                        assert!(terminate(&mut a, *pid), "pg_terminate_backend({pid})");
                        kills.push((*pid, done.load(Ordering::Relaxed)));
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "no (new) audit writer appeared for {}",
                    w.protected
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let drained = expect_all_refusals(&w, threads, per_thread);
    let n = threads * per_thread;
    eprintln!(
        "writer kill: {n} refusals in {took:?}; writers terminated (pid, refusals made by then): {kills:?}; all in audit_log {drained:?} after the load"
    );
    assert_eq!(kills.len(), 2);
    assert!(
        kills[0].1 < n,
        "the first termination happened during the load: {kills:?}"
    );
    assert_ne!(kills[0].0, kills[1].0, "a new writer took over");
    // And a writer serves the database again.
    let s: String = a
        .query_one("SELECT writer_state FROM ai_agent_safety.audit_stats", &[])
        .unwrap()
        .get(0);
    assert!(
        s.starts_with("running (pid ") || s.starts_with("idle"),
        "{s}"
    );
}

/// What a spool file holds that is not loaded yet: a closed file's bytes,
/// or a backend's segment's lines between `taken` and `published` (the
/// header's words at bytes 16 and 8; see aas_policy::audit::segment).
fn spool_file_lines(path: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_default();
    if path.extension().is_some_and(|x| x == "seg") {
        let word = |at: usize| {
            bytes
                .get(at..at + 8)
                .map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap()) as usize)
        };
        let (taken, published) = (word(16), word(8));
        return bytes.get(taken..published).unwrap_or_default().to_vec();
    }
    if path.extension().is_some_and(|x| x == "copy") {
        return bytes;
    }
    Vec::new()
}

/// Lines waiting in a stopped cluster's spool (not loaded into any table yet).
fn spool_lines(cluster_dir: &str) -> usize {
    let root = std::path::Path::new(cluster_dir).join("ai_agent_safety_spool");
    let mut n = 0;
    for db in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(db.path()).into_iter().flatten().flatten() {
            n += spool_file_lines(&f.path())
                .iter()
                .filter(|b| **b == b'\n')
                .count();
        }
    }
    n
}

/// Starts a stopped test cluster, waits until its spool is loaded, and
/// returns a connection and the agent's refused statements, in id order.
fn start_and_load(dir: &str, port: u16, db: &str, agent: &str) -> (Client, Vec<String>) {
    run_lib_sh(&format!(
        "as_postgres env -u RUST_BACKTRACE $PG_BIN/pg_ctl -D {dir} -l {dir}/server.log -w start >/dev/null"
    ));
    let mut c = connect_port(port, "postgres", db);
    let w = wait_count(
        &mut c,
        "SELECT queue_depth FROM ai_agent_safety.audit_stats",
        0,
        Duration::from_secs(30),
    );
    assert_eq!(w.last, 0, "the spool is loaded after {:?}", w.elapsed);
    let loaded = c
        .query(
            "SELECT statement FROM ai_agent_safety.audit_log
              WHERE session_user_name = $1 AND event = 'refused' ORDER BY id",
            &[&agent],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (c, loaded)
}

/// Every file in a stopped test cluster's databases' spool directories.
fn spool_db_files(dir: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(format!("{dir}/ai_agent_safety_spool"))
        .unwrap()
        .flatten()
        // The databases' directories (not the spool's origin marker).
        .filter(|d| d.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|f| f.path())
        .collect()
}

/// A test's own cluster: the extension in `postgres`, an agent role, and
/// protected databases with `public.orders` writable by the agent.
fn own_cluster(name: &str, port: u16, conf: &[&str], agent: &str, dbs: &[&str]) {
    let conf: Vec<String> = conf.iter().map(|l| format!("'{l}'")).collect();
    run_lib_sh(&format!("cluster_start {name} {port} {}", conf.join(" ")));
    let mut a = connect_port(port, "postgres", "postgres");
    let until = in_one_hour(&mut a);
    exec(&mut a, "CREATE EXTENSION ai_agent_safety");
    exec(
        &mut a,
        &format!("CREATE ROLE {agent} LOGIN IN ROLE ai_agent VALID UNTIL '{until}'"),
    );
    for db in dbs {
        exec(&mut a, &format!("CREATE DATABASE {db}"));
        exec(
            &mut a,
            &format!("ALTER DATABASE {db} SET ai_agent_safety.require_approval = on"),
        );
        exec(
            &mut connect_port(port, "postgres", db),
            &format!(
                "CREATE EXTENSION ai_agent_safety;
                 CREATE TABLE public.orders (id int PRIMARY KEY, note text);
                 INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
                 GRANT ALL ON public.orders TO {agent};"
            ),
        );
    }
}

/// `threads` agent sessions on another cluster, `per_thread` refusals each.
fn refusals_on(
    port: u16,
    agent: &'static str,
    db: &'static str,
    threads: usize,
    per_thread: usize,
) {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = connect_port(port, agent, db);
                for _ in 0..per_thread {
                    assert_refused(c.batch_execute("DELETE FROM orders WHERE id = 1"));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a refusal thread failed");
    }
}

#[test]
fn clean_restart_with_events_queued_loses_nothing() {
    const NAME: &str = "auditrestart";
    const PORT: u16 = 55471;
    const AGENT: &str = "restart_agent";
    const DB: &str = "restart_prod";
    let _guard = StopCluster(NAME);
    // One background worker slot, taken by the launcher: no writer can start,
    // so every event is still queued in the spool when the server stops.
    own_cluster(NAME, PORT, &["max_worker_processes = 1"], AGENT, &[DB]);
    let dir = format!("/tmp/aas-{NAME}");
    let restart = || {
        run_lib_sh(&format!("cluster_stop {NAME}"));
        assert!(
            !std::path::Path::new(&dir).join("postmaster.pid").exists(),
            "the cluster stopped"
        );
        let queued = spool_lines(&dir);
        run_lib_sh(&format!(
            "as_postgres env -u RUST_BACKTRACE $PG_BIN/pg_ctl -D {dir} -l {dir}/server.log -w start >/dev/null"
        ));
        queued
    };

    // 1. Events queued (no writer can run), clean restart with room for writers.
    refusals_on(PORT, AGENT, DB, 4, 500);
    let mut c = connect_port(PORT, "postgres", DB);
    assert_eq!(count(&mut c, &refused_count_sql(AGENT)), 0);
    let r = c
        .query_one(
            "SELECT queue_depth, writer_state FROM ai_agent_safety.audit_stats",
            &[],
        )
        .unwrap();
    let (depth, state): (i64, String) = (r.get(0), r.get(1));
    assert_eq!(depth, 2000, "queued in the spool");
    assert!(state.starts_with("starting"), "{state}");
    exec(&mut c, "ALTER SYSTEM SET max_worker_processes = 8");
    drop(c);
    let queued = restart();
    assert_eq!(queued, 2000, "spool lines at shutdown");
    let mut c = connect_port(PORT, "postgres", DB);
    let w = wait_count(
        &mut c,
        &refused_count_sql(AGENT),
        2000,
        Duration::from_secs(30),
    );
    eprintln!(
        "restart 1: {queued} events queued at shutdown; {} of 2000 in audit_log {:?} after the restart",
        w.last, w.elapsed
    );
    assert!(w.max <= 2000, "duplicates: max seen {}", w.max);
    assert_eq!(w.last, 2000, "after {:?}", w.elapsed);
    drop(c);

    // 2. Writers running: refusals, then an immediate fast shutdown.
    refusals_on(PORT, AGENT, DB, 4, 250);
    let queued = restart();
    let mut c = connect_port(PORT, "postgres", DB);
    let w = wait_count(
        &mut c,
        &refused_count_sql(AGENT),
        3000,
        Duration::from_secs(30),
    );
    eprintln!(
        "restart 2: {queued} events still in the spool at shutdown; {} of 3000 in audit_log {:?} after the restart",
        w.last, w.elapsed
    );
    assert!(w.max <= 3000, "duplicates: max seen {}", w.max);
    assert_eq!(w.last, 3000, "after {:?}", w.elapsed);
    let depth = wait_count(
        &mut c,
        "SELECT queue_depth FROM ai_agent_safety.audit_stats",
        0,
        Duration::from_secs(10),
    );
    assert_eq!(
        depth.last, 0,
        "the spool is empty once everything is loaded"
    );
}

#[test]
fn lines_cut_by_a_crash_are_dropped_and_counted_and_the_rest_load() {
    const NAME: &str = "audittorn";
    const PORT: u16 = 55473;
    const AGENT: &str = "torn_agent";
    const DB: &str = "torn_prod";
    let _guard = StopCluster(NAME);
    // No writer can start (the launcher holds the only worker slot), so the
    // events stay in the spool until the restart.
    own_cluster(NAME, PORT, &["max_worker_processes = 1"], AGENT, &[DB]);
    // Event 6's statement has a multi-byte character, to be cut in its middle.
    let statement = |id: i32| {
        if id == 6 {
            "DELETE FROM orders WHERE id = 6 AND note <> 'zoë'".to_string()
        } else {
            format!("DELETE FROM orders WHERE id = {id}")
        }
    };
    let mut agent = connect_port(PORT, AGENT, DB);
    for id in 1..=10 {
        assert_refused(agent.batch_execute(&statement(id)));
    }
    drop(agent);
    let mut c = connect_port(PORT, "postgres", DB);
    exec(&mut c, "ALTER SYSTEM SET max_worker_processes = 8");
    drop(c);
    run_lib_sh(&format!("cluster_stop {NAME}"));

    // What a crash in mid-write leaves: event 3 cut short and run into event
    // 4 (the next append lands after the partial bytes), event 6 cut inside a
    // character and run into event 7, and a last line, event 10, cut short
    // with no newline.
    let dir = format!("/tmp/aas-{NAME}");
    let spool = spool_db_files(&dir);
    // The agent's backend's segment.
    assert_eq!(spool.len(), 1, "one spool file: {spool:?}");
    let text = String::from_utf8(spool_file_lines(&spool[0])).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10, "ten events spooled");
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.contains(&format!("WHERE id = {}", i + 1)),
            "line {i}: {l}"
        );
    }
    let mut damaged: Vec<u8> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let l = l.as_bytes();
        match i {
            2 => damaged.extend_from_slice(&l[..l.len() / 2]),
            // One byte into the two of 'ë': no longer UTF-8.
            5 => {
                let at = lines[5].find('ë').expect("event 6 holds the character") + 1;
                damaged.extend_from_slice(&l[..at]);
            }
            9 => damaged.extend_from_slice(&l[..l.len() - 5]),
            _ => {
                damaged.extend_from_slice(l);
                damaged.push(b'\n');
            }
        }
    }
    // As a closed spool file (what the writer takes segments' lines into).
    std::fs::remove_file(&spool[0]).unwrap();
    std::fs::write(
        spool[0].with_file_name("00000000000000000001-000001-1.copy"),
        damaged,
    )
    .unwrap();
    let (mut c, loaded) = start_and_load(&dir, PORT, DB, AGENT);
    let want: Vec<String> = [1, 2, 5, 8, 9].into_iter().map(statement).collect();
    assert_eq!(loaded, want, "every whole line loaded, exactly once");
    // Three damaged lines (3-and-4 and 6-and-7 run together, and 10) counted
    // as dropped.
    let dropped = count(
        &mut c,
        "SELECT events_dropped FROM ai_agent_safety.audit_stats",
    );
    assert_eq!(dropped, 3);
    let left: Vec<_> = std::fs::read_dir(spool[0].parent().unwrap())
        .unwrap()
        .flatten()
        .map(|f| f.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "nothing set aside or left behind: {left:?}"
    );
}

/// A backend's segment is taken by the writer into a closed file, with a
/// sidecar naming how far: the writer may die at any point of that. A
/// sidecar whose closed file exists is applied at the next start (the lines
/// it names are not taken again); one whose closed file was never made is
/// discarded (its lines are taken again). Either way every event is loaded
/// exactly once, and the finished segment and the leftovers go.
#[test]
fn a_writer_killed_while_taking_segments_repeats_and_loses_nothing() {
    const NAME: &str = "audittake";
    const PORT: u16 = 55484;
    const AGENT: &str = "take_agent";
    const DB: &str = "take_prod";
    let _guard = StopCluster(NAME);
    // No writer can start until the restart: the events stay in the segment.
    own_cluster(NAME, PORT, &["max_worker_processes = 1"], AGENT, &[DB]);
    // A backend's first 16 events go to the shared file, the rest to its
    // segment: 20 events, 4 in the segment.
    let mut agent = connect_port(PORT, AGENT, DB);
    for id in 1..=20 {
        assert_refused(agent.batch_execute(&format!("DELETE FROM orders WHERE id = {id}")));
    }
    drop(agent);
    let mut c = connect_port(PORT, "postgres", DB);
    exec(&mut c, "ALTER SYSTEM SET max_worker_processes = 8");
    drop(c);
    run_lib_sh(&format!("cluster_stop {NAME}"));

    let dir = format!("/tmp/aas-{NAME}");
    let segs: Vec<_> = spool_db_files(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(segs.len(), 1, "the agent's segment: {segs:?}");
    let seg = &segs[0];
    let lines = String::from_utf8(spool_file_lines(seg)).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 4, "four events in the segment");
    assert!(lines[0].contains("WHERE id = 17"), "{}", lines[0]);
    // The writer took the segment's lines 1-3 into a closed file and died
    // before it stored `taken` in the segment's header (which still says 64).
    let three: usize = lines[..3].iter().map(|l| l.len() + 1).sum();
    let seg_name = seg.file_name().unwrap().to_str().unwrap();
    let db_dir = seg.parent().unwrap();
    let closed = db_dir.join("00000000000000000001-000001-1.copy");
    std::fs::write(
        &closed,
        lines[..3]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    std::fs::write(
        closed.with_extension("ranges"),
        format!("{seg_name} {}\n", 64 + three),
    )
    .unwrap();
    // And, from an earlier attempt, it died before making the closed file:
    // a sidecar and a half-written temporary file, naming all four lines.
    let all: usize = lines.iter().map(|l| l.len() + 1).sum();
    let never = db_dir.join("00000000000000000000-000009-1.copy");
    std::fs::write(
        never.with_extension("ranges"),
        format!("{seg_name} {}\n", 64 + all),
    )
    .unwrap();
    std::fs::write(never.with_extension("tmp"), &lines[0][..10]).unwrap();

    let (mut c, loaded) = start_and_load(&dir, PORT, DB, AGENT);
    // Every event once (the crafted closed file is named as if taken before
    // the shared file's rotation, so ids do not follow the events here).
    let mut loaded = loaded;
    loaded.sort();
    let mut want: Vec<String> = (1..=20)
        .map(|id| format!("DELETE FROM orders WHERE id = {id}"))
        .collect();
    want.sort();
    assert_eq!(loaded, want, "every event once");
    assert_eq!(
        count(
            &mut c,
            "SELECT events_dropped FROM ai_agent_safety.audit_stats"
        ),
        0
    );
    // The sealed, fully taken segment and the leftovers are gone (the
    // writer removes segments after each load: wait for its next pass).
    let w = wait_count(
        &mut c,
        &format!(
            "SELECT count(*) FROM pg_ls_dir('ai_agent_safety_spool/{}') f",
            db_dir.file_name().unwrap().to_str().unwrap()
        ),
        0,
        Duration::from_secs(10),
    );
    assert_eq!(
        w.last, 0,
        "the spool directory is empty after {:?}",
        w.elapsed
    );
}
/// SIGKILL to a backend of an own cluster (`dir`), then waits (bounded)
/// until the postmaster has restarted every backend after it and accepts
/// connections again: a connection made before it noticed the crash would
/// be ended by the restart.
fn kill_and_wait_for_the_restart(dir: &str, pid: i32) {
    let ready = || {
        let log = std::fs::read(format!("{dir}/server.log")).unwrap();
        String::from_utf8_lossy(&log)
            .matches("database system is ready to accept connections")
            .count()
    };
    let before = ready();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -9 {pid}");
    let t0 = Instant::now();
    while ready() == before {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the cluster did not come back within 60 s of kill -9 {pid}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files in a cluster's spool directory for one database, by suffix.
fn spool_files(cluster_dir: &str, dboid: u32, ext: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(
        std::path::Path::new(cluster_dir)
            .join("ai_agent_safety_spool")
            .join(dboid.to_string()),
    )
    .into_iter()
    .flatten()
    .flatten()
    .map(|f| f.path())
    .filter(|p| p.extension().is_some_and(|x| x == ext))
    .collect()
}

fn dboid_of(c: &mut Client) -> u32 {
    c.query_one(
        "SELECT oid::int8 FROM pg_database WHERE datname = current_database()",
        &[],
    )
    .map(|r| r.get::<_, i64>(0) as u32)
    .unwrap()
}

/// A backend's segment costs a file and disk blocks of its own (one at
/// first), so a login refusal, whose backend ends at once, and a session's
/// first 16 events go to the database's shared spool file instead: an agent
/// opening many short connections where no writer runs (a standby, no
/// worker slot, no extension) grows the spool by its lines, not by a file
/// and a block per connection. A session's later events go to its segment,
/// which stays while the backend lives and goes once it has died (SIGKILL:
/// no exit code runs) and everything in it is loaded.
#[test]
fn refused_logins_share_one_file_and_a_segment_lives_as_long_as_its_backend() {
    const NAME: &str = "auditseg";
    const PORT: u16 = 55485;
    const AGENT: &str = "seg_agent";
    const DB: &str = "seg_prod";
    let _guard = StopCluster(NAME);
    own_cluster(NAME, PORT, &["max_worker_processes = 1"], AGENT, &[DB]);
    let dir = format!("/tmp/aas-{NAME}");
    let mut a = connect_port(PORT, "postgres", DB);
    let dboid = dboid_of(&mut a);
    exec(
        &mut a,
        &format!("CREATE ROLE {AGENT}_noexp LOGIN IN ROLE ai_agent"),
    );
    for _ in 0..20 {
        let e = try_connect_port(PORT, &format!("{AGENT}_noexp"), DB)
            .err()
            .map(|e| describe(&e))
            .expect("an agent without VALID UNTIL must not log in");
        assert!(e.contains("no credential expiry"), "{e}");
    }
    assert_eq!(
        spool_files(&dir, dboid, "seg"),
        Vec::<std::path::PathBuf>::new(),
        "no segment for a refused login"
    );
    let shared = spool_files(&dir, dboid, "copy");
    assert_eq!(shared.len(), 1, "{shared:?}");
    let text = String::from_utf8(spool_file_lines(&shared[0])).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains("login_refused")).count(),
        20
    );

    // A session's first 16 events go to the shared file too; the 17th
    // makes its own segment.
    let mut ag = connect_port(PORT, AGENT, DB);
    for _ in 0..16 {
        assert_refused(ag.batch_execute("DELETE FROM orders WHERE id = 1"));
    }
    assert_eq!(
        spool_files(&dir, dboid, "seg"),
        Vec::<std::path::PathBuf>::new(),
        "no segment for a session's first 16 events"
    );
    assert_refused(ag.batch_execute("DELETE FROM orders WHERE id = 1"));
    let pid: i32 = ag.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let segs = spool_files(&dir, dboid, "seg");
    assert_eq!(segs.len(), 1, "{segs:?}");
    // Sparse: one disk block so far, whatever its length.
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&segs[0]).unwrap();
    assert!(
        m.blocks() * 512 <= 8192,
        "{} bytes allocated",
        m.blocks() * 512
    );
    assert!(m.len() >= 1 << 20, "{} bytes long", m.len());

    // A writer can start now: everything loads; the live session's segment
    // stays.
    exec(&mut a, "ALTER SYSTEM SET max_worker_processes = 8");
    drop(a);
    run_lib_sh(&format!(
        "as_postgres env -u RUST_BACKTRACE $PG_BIN/pg_ctl -D {dir} -l {dir}/server.log -w restart >/dev/null"
    ));
    let mut ag = connect_port(PORT, AGENT, DB);
    for _ in 0..17 {
        assert_refused(ag.batch_execute("DELETE FROM orders WHERE id = 2"));
    }
    let pid2: i32 = ag.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    assert_ne!(pid, pid2);
    let mut a = connect_port(PORT, "postgres", DB);
    let w = wait_count(
        &mut a,
        &format!("SELECT count(*) FROM ai_agent_safety.audit_log WHERE session_user_name IN ('{AGENT}', '{AGENT}_noexp')"),
        54,
        Duration::from_secs(30),
    );
    assert_eq!(w.last, 54, "loaded after {:?}", w.elapsed);
    // The first session's segment ended with the restart (sealed at its
    // exit) and goes; the second stays while its backend lives.
    let w = wait_count(
        &mut a,
        &format!(
            "SELECT count(*) FROM pg_ls_dir('ai_agent_safety_spool/{dboid}') f WHERE f LIKE '%.seg'"
        ),
        1,
        Duration::from_secs(10),
    );
    assert_eq!(w.last, 1, "after {:?}", w.elapsed);
    let live = spool_files(&dir, dboid, "seg");
    assert!(
        live[0].to_str().unwrap().ends_with(&format!("-{pid2}.seg")),
        "{live:?}"
    );
    // SIGKILL: no exit code seals it; the kernel drops its owner's lock.
    kill_and_wait_for_the_restart(&dir, pid2);
    drop(ag);
    let mut ag = connect_port(PORT, AGENT, DB);
    // A new event starts a writer, which loads it and removes the dead
    // backend's segment.
    assert_refused(ag.batch_execute("DELETE FROM orders WHERE id = 3"));
    let mut a = connect_port(PORT, "postgres", DB);
    let w = wait_count(
        &mut a,
        &format!(
            "SELECT count(*) FROM pg_ls_dir('ai_agent_safety_spool/{dboid}') f WHERE f LIKE '%-{pid2}.seg'"
        ),
        0,
        Duration::from_secs(30),
    );
    assert_eq!(
        w.last, 0,
        "the killed backend's segment is removed after {:?}",
        w.elapsed
    );
    let w = wait_count(
        &mut a,
        &format!("SELECT count(*) FROM ai_agent_safety.audit_log WHERE session_user_name IN ('{AGENT}', '{AGENT}_noexp')"),
        55,
        Duration::from_secs(30),
    );
    assert_eq!(w.last, 55, "nothing lost or repeated");
}

#[test]
fn more_audited_databases_than_worker_slots() {
    const NAME: &str = "auditslots";
    const PORT: u16 = 55472;
    const AGENT: &str = "slots_agent";
    const DBS: [&str; 6] = [
        "slots_a", "slots_b", "slots_c", "slots_d", "slots_e", "slots_f",
    ];
    let _guard = StopCluster(NAME);
    // The launcher, PostgreSQL's logical replication launcher and one writer.
    own_cluster(NAME, PORT, &["max_worker_processes = 3"], AGENT, &DBS);
    let t0 = Instant::now();
    for db in DBS {
        refusals_on(PORT, AGENT, db, 1, 3);
    }
    for db in DBS {
        let mut c = connect_port(PORT, "postgres", db);
        expect_count(
            &mut c,
            &refused_count_sql(AGENT),
            3,
            Duration::from_secs(30),
            &format!("refusals in {db}"),
        );
    }
    eprintln!(
        "slots: 6 databases, 1 writer slot: all events loaded {:?} after the first",
        t0.elapsed()
    );
    // A granted token that expires unused in a database whose writer retired
    // is still recorded (the launcher starts a writer for it).
    let mut a = connect_port(PORT, "postgres", "postgres");
    exec(
        &mut a,
        "CREATE ROLE slots_dba LOGIN IN ROLE ai_agent_approver",
    );
    exec(
        &mut a,
        "ALTER ROLE slots_dba SET ai_agent_safety.token_ttl = '2s'",
    );
    let mut ag = connect_port(PORT, AGENT, DBS[0]);
    let token = request(&mut ag, "DELETE", "public.orders");
    let mut d = connect_port(PORT, "slots_dba", DBS[0]);
    grant(&mut d, &token);
    let mut c = connect_port(PORT, "postgres", DBS[0]);
    let took = expect_count(
        &mut c,
        &format!(
            "SELECT count(*) FROM ai_agent_safety.audit_log
              WHERE token = '{token}' AND event = 'expired'"
        ),
        1,
        Duration::from_secs(30),
        "expired token event",
    );
    eprintln!("slots: token expiry recorded {took:?} after the grant (TTL 2 s)");
    // Idle writers give their slots back.
    let w = wait_count(
        &mut a,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ai_agent_safety audit writer'",
        0,
        Duration::from_secs(30),
    );
    assert_eq!(w.last, 0, "writers still running after {:?}", w.elapsed);
}

/// A database without the extension runs no writer; its events wait there
/// for CREATE EXTENSION. An agent can make events in every database it can
/// connect to (a refused role change, say): waiting databases must not take
/// every writer slot (64) and so keep the audit log of the protected
/// database from loading.
#[test]
fn databases_without_the_extension_cannot_starve_the_audit_log() {
    const NAME: &str = "auditstarve";
    const PORT: u16 = 55477;
    const AGENT: &str = "starve_agent";
    let _guard = StopCluster(NAME);
    own_cluster(NAME, PORT, &[], AGENT, &["starve_prod"]);
    let mut a = connect_port(PORT, "postgres", "postgres");
    for i in 0..66 {
        exec(&mut a, &format!("CREATE DATABASE starve_{i}"));
    }
    for i in 0..66 {
        let mut c = connect_port(PORT, AGENT, &format!("starve_{i}"));
        assert_refused(c.batch_execute("CREATE ROLE starve_x"));
    }
    // Every writer slot waits for CREATE EXTENSION somewhere.
    let mut p = connect_port(PORT, "postgres", "starve_prod");
    let waited = wait_count(
        &mut p,
        "SELECT ((length(writers) - length(replace(writers, 'waiting for CREATE EXTENSION', ''))) / 28)::int8
           FROM ai_agent_safety.audit_stats",
        64,
        Duration::from_secs(120),
    );
    assert_eq!(waited.last, 64, "slots waiting after {:?}", waited.elapsed);
    // The protected database's refusal still loads.
    refusals_on(PORT, AGENT, "starve_prod", 1, 1);
    expect_count(
        &mut p,
        &refused_count_sql(AGENT),
        1,
        Duration::from_secs(30),
        "the refusal in starve_prod",
    );
}

// ---------------------------------------------------------------- tampering

#[test]
fn agent_cannot_touch_the_audit_log_and_nobody_can_rewrite_it() {
    let w = World::new("aud_tamper");
    let mut ag = w.agent_in(&w.protected);
    assert_guard_refused(ag.batch_execute("DELETE FROM orders WHERE id = 1"));
    let mut a = admin(&w.protected);
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        1,
        Duration::from_secs(5),
        "first refusal",
    );
    let total = count(&mut a, "SELECT count(*) FROM ai_agent_safety.audit_log");

    for db in [&w.protected, &w.open] {
        let mut ag = w.agent_in(db);
        for sql in [
            "SELECT * FROM ai_agent_safety.audit_log",
            "INSERT INTO ai_agent_safety.audit_log (ts, source, event, decision) VALUES (now(), 'guard', 'allowed', 'allow')",
            "UPDATE ai_agent_safety.audit_log SET reason = 'nothing happened'",
            "DELETE FROM ai_agent_safety.audit_log",
            "DROP VIEW ai_agent_safety.audit_log",
            "CREATE OR REPLACE VIEW ai_agent_safety.audit_log AS SELECT 1",
            "TRUNCATE ai_agent_safety.audit_row",
            "TRUNCATE ai_agent_safety.audit_batch",
            "DROP TABLE ai_agent_safety.audit_batch",
            "ALTER TABLE ai_agent_safety.audit_batch DISABLE TRIGGER USER",
            "ALTER TABLE ai_agent_safety.audit_row DISABLE TRIGGER USER",
            "SELECT * FROM ai_agent_safety.audit_batch",
            "SELECT * FROM ai_agent_safety.audit_row",
            "INSERT INTO ai_agent_safety.audit_row (ts, source, event, decision) VALUES (now(), 'guard', 'allowed', 'allow')",
            "INSERT INTO ai_agent_safety.audit_batch VALUES (1, 1, now(), now(), '')",
            "DELETE FROM ai_agent_safety.audit_batch",
            "SELECT * FROM ai_agent_safety.audit_log_since('-infinity')",
            "INSERT INTO ai_agent_safety.audit_spool_done (file) VALUES ('x.jsonl')",
            "SELECT ai_agent_safety._audit('guard', 'granted', 'allow', NULL, NULL, 'forged', NULL)",
            "SELECT * FROM ai_agent_safety.audit_log_json('-infinity')",
            "SELECT * FROM ai_agent_safety.audit_stats",
            "SET ai_agent_safety.mode = 'audit'",
            "SET ai_agent_safety.audit_level = 'decisions'",
            "SET ai_agent_safety.audit_statement_max = 0",
        ] {
            let r = ag.batch_execute(sql);
            assert!(r.is_err(), "{sql} succeeded");
            let msg = assert_refused(r);
            assert!(!msg.is_empty(), "{sql}");
        }
    }

    // Even a superuser cannot rewrite it: the append-only triggers, on the
    // view and on both tables under it. (A superuser may add an event: it
    // goes into audit_row, so that table has a row for the triggers to
    // refuse.)
    let added: i64 = a
        .query_one(
            "INSERT INTO ai_agent_safety.audit_log (ts, source, event, decision, reason)
             VALUES (now(), 'guard', 'allowed', 'info', 'added by a superuser') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        count(
            &mut a,
            &format!("SELECT count(*) FROM ai_agent_safety.audit_row WHERE id = {added}")
        ),
        1
    );
    assert!(
        count(&mut a, "SELECT count(*) FROM ai_agent_safety.audit_batch") >= 1,
        "the refusal is stored in a batch"
    );
    for sql in [
        "UPDATE ai_agent_safety.audit_log SET reason = 'nothing happened'",
        "DELETE FROM ai_agent_safety.audit_log",
        "UPDATE ai_agent_safety.audit_batch SET events = 1",
        "DELETE FROM ai_agent_safety.audit_batch",
        "TRUNCATE ai_agent_safety.audit_batch",
        "UPDATE ai_agent_safety.audit_row SET reason = 'nothing happened'",
        "DELETE FROM ai_agent_safety.audit_row",
        "TRUNCATE ai_agent_safety.audit_row",
    ] {
        let msg = assert_refused(a.batch_execute(sql));
        assert!(msg.contains("append-only"), "{sql}: {msg}");
    }
    // A view cannot be truncated at all.
    assert_sqlstate(
        a.batch_execute("TRUNCATE ai_agent_safety.audit_log"),
        "42809",
    );
    // Nothing changed: the first refusal is intact, no forged or rewritten row.
    let ev = events_of(&mut a, &w.agent);
    assert_eq!(ev[0].event, "refused", "{ev:?}");
    assert!(
        ev[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("require_approval"),
        "{ev:?}"
    );
    assert!(
        count(&mut a, "SELECT count(*) FROM ai_agent_safety.audit_log") >= total,
        "no event disappeared"
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM ai_agent_safety.audit_log WHERE reason = 'forged' OR reason = 'nothing happened'"
        ),
        0
    );
}

/// A database's owner may `ALTER DATABASE ... SET` any user setting, and
/// every session connecting there takes them in, a superuser's too. The
/// audit writer (the bootstrap superuser) must not: with the owner's schema
/// first in search_path, the owner's operators would run in the writer's
/// SQL as a superuser; a read-only default or a timeout would make every
/// load fail, and after three attempts a spool file's events are dropped.
#[test]
fn a_database_owners_settings_do_not_steer_the_audit_writer() {
    let w = World::new("aud_owner");
    let mut own = connect(&w.owner, &w.protected);
    own.batch_execute(&format!(
        "CREATE SCHEMA trap;
         CREATE TABLE trap.calls (who text, su text);
         GRANT INSERT ON trap.calls TO PUBLIC;
         CREATE FUNCTION trap.lt(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO trap.calls VALUES (current_user, current_setting('is_superuser'));
             IF current_setting('is_superuser') = 'on' THEN
                 EXECUTE 'ALTER ROLE {owner} SUPERUSER';
             END IF;
             RETURN a OPERATOR(pg_catalog.<) b;
         END $$;
         CREATE OPERATOR trap.< (leftarg = timestamptz, rightarg = timestamptz, function = trap.lt);
         ALTER DATABASE {db} SET search_path = trap, pg_catalog;
         ALTER DATABASE {db} SET default_transaction_read_only = on;",
        owner = w.owner,
        db = w.protected
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // A superuser's own session there takes the settings in: the attack
    // works on a session that does not set its own.
    let mut su = admin(&w.protected);
    let path: String = su.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_eq!(path, "trap, pg_catalog");
    su.batch_execute("SET default_transaction_read_only = off")
        .unwrap();
    su.batch_execute("SELECT now() - interval '1 day' < now()")
        .unwrap();
    let is_super = |c: &mut Client| -> bool {
        c.query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&w.owner],
        )
        .unwrap()
        .get(0)
    };
    assert!(is_super(&mut su), "the planted operator ran as a superuser");
    su.batch_execute(&format!(
        "ALTER ROLE {} NOSUPERUSER; DELETE FROM trap.calls;",
        w.owner
    ))
    .unwrap();
    // And a session user, which a background worker connecting as the
    // bootstrap superuser takes in (a client's session does not).
    own.batch_execute(&format!(
        "ALTER DATABASE {} SET session_authorization = {}",
        w.protected, w.owner
    ))
    .unwrap();
    // The writer starts for the agent's refusals, loads them, and runs its
    // maintenance (the retention purge compares times with <).
    let mut ag = w.agent_in(&w.protected);
    for _ in 0..3 {
        assert_guard_refused(ag.batch_execute("DELETE FROM public.orders WHERE id = 1"));
    }
    let mut a = admin(&w.protected);
    a.batch_execute("SET SESSION AUTHORIZATION DEFAULT; SET search_path = pg_catalog")
        .unwrap();
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        3,
        Duration::from_secs(10),
        "refusals loaded despite the owner's settings",
    );
    // One more, loaded by a later pass of the writer: by then its first
    // pass, which runs the maintenance after loading, has ended.
    assert_guard_refused(ag.batch_execute("DELETE FROM public.orders WHERE id = 1"));
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        4,
        Duration::from_secs(10),
        "a later pass",
    );
    let stats: i64 = a
        .query_one(
            "SELECT events_dropped FROM ai_agent_safety.audit_stats",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stats, 0, "nothing dropped");
    assert!(!is_super(&mut a), "the writer ran the owner's operator");
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM trap.calls WHERE su = 'on'"),
        0
    );
}

// ---------------------------------------------------------------- retention

/// Restores ai_agent_safety.audit_retention even when the test fails.
struct RetentionGuard;

impl Drop for RetentionGuard {
    fn drop(&mut self) {
        if let Ok(mut a) = try_connect("postgres", "postgres") {
            let _ = a.batch_execute("ALTER SYSTEM RESET ai_agent_safety.audit_retention");
            let _ = a.batch_execute("SELECT pg_reload_conf()");
        }
    }
}

#[test]
fn retention_purges_old_events() {
    let w = World::new("aud_retain");
    let mut a = admin(&w.protected);
    exec(
        &mut a,
        "INSERT INTO ai_agent_safety.audit_log (ts, database, session_user_name, source, event, decision, reason)
         VALUES (now() - interval '400 days', current_database(), 'ancient_agent', 'guard', 'refused', 'refuse', 'old event'),
                (now() - interval '10 days', current_database(), 'recent_agent', 'guard', 'refused', 'refuse', 'recent event')",
    );
    let _restore = RetentionGuard;
    {
        let mut p = admin("postgres");
        exec(
            &mut p,
            "ALTER SYSTEM SET ai_agent_safety.audit_retention = '30d'",
        );
        exec(&mut p, "SELECT pg_reload_conf()");
    }
    // The postmaster has reloaded once new sessions see the value; writers
    // started from then on use it.
    let start = Instant::now();
    loop {
        let v: String = admin(&w.protected)
            .query_one("SHOW ai_agent_safety.audit_retention", &[])
            .unwrap()
            .get(0);
        if v == "30d" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "retention setting not reloaded: {v}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A fresh writer purges on its first pass: end any running one, then make
    // an event so a new one starts.
    for pid in writer_pids(&mut a, &w.protected) {
        terminate(&mut a, pid);
        wait_gone(&mut a, pid);
    }
    let mut ag = w.agent_in(&w.protected);
    assert_guard_refused(ag.batch_execute("DELETE FROM orders WHERE id = 1"));
    expect_count(
        &mut a,
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE reason = 'old event'",
        0,
        Duration::from_secs(10),
        "the 400-day-old event is purged",
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM ai_agent_safety.audit_log WHERE reason = 'recent event'"
        ),
        1,
        "a 10-day-old event is kept with 30d retention"
    );
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        1,
        Duration::from_secs(5),
        "the new refusal",
    );
}

// ---------------------------------------------------------------- other sources

#[test]
fn login_refusal_is_recorded_in_the_target_database() {
    let w = World::new("aud_login");
    let role = unique("aud_login_noexp");
    exec(
        &mut admin("postgres"),
        &format!("CREATE ROLE {role} LOGIN IN ROLE ai_agent"),
    );
    let e = match try_connect(&role, &w.protected) {
        Ok(_) => panic!("an agent without VALID UNTIL must not log in"),
        Err(e) => describe(&e),
    };
    assert!(e.contains("no credential expiry"), "{e}");
    let mut a = admin(&w.protected);
    expect_count(
        &mut a,
        &format!(
            "SELECT count(*) FROM ai_agent_safety.audit_log WHERE session_user_name = '{role}'"
        ),
        1,
        Duration::from_secs(5),
        "login refusal event",
    );
    let ev = events_of(&mut a, &role);
    let e = &ev[0];
    assert_eq!(e.source, "credentials");
    assert_eq!(e.event, "login_refused");
    assert_eq!(e.decision, "refuse");
    assert!(
        e.reason
            .as_deref()
            .unwrap_or("")
            .contains("no credential expiry"),
        "{e:?}"
    );
    assert_eq!(
        count(
            &mut a,
            &format!(
                "SELECT count(*) FROM ai_agent_safety.audit_log
                  WHERE session_user_name = '{role}' AND database = current_database()"
            )
        ),
        1
    );
}

#[test]
fn token_lifecycle_is_recorded_with_the_token_id() {
    let w = World::new("aud_token");
    let dba = new_approver("aud_token");
    let mut ag = w.agent_in(&w.protected);
    exec(&mut ag, "SET ai_agent_safety.task_id = 'task-token-1'");
    let token = request(&mut ag, "DELETE", "public.orders");
    grant(&mut connect(&dba, &w.protected), &token);
    exec(
        &mut ag,
        &format!("SET ai_agent_safety.approval_token = '{token}'"),
    );
    assert_eq!(
        ag.execute("DELETE FROM orders WHERE id = 1", &[])
            .unwrap_or_else(|e| panic!("DELETE with a granted token: {}", describe(&e))),
        1
    );
    let mut a = admin(&w.protected);
    expect_count(
        &mut a,
        &format!("SELECT count(*) FROM ai_agent_safety.audit_log WHERE token = '{token}'"),
        4,
        Duration::from_secs(5),
        "requested, granted, consumed, and the deleted row kept",
    );
    let ev = events_where(&mut a, &format!("token = '{token}'"));
    let kinds: Vec<(&str, &str)> = ev
        .iter()
        .map(|e| (e.source.as_str(), e.event.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("token", "requested"),
            ("token", "granted"),
            ("token", "consumed"),
            ("recycle", "kept")
        ],
        "{ev:?}"
    );
    assert_eq!(ev[0].session_user.as_deref(), Some(w.agent.as_str()));
    assert_eq!(ev[0].task_id.as_deref(), Some("task-token-1"));
    assert_eq!(ev[1].session_user.as_deref(), Some(dba.as_str()));
    assert_eq!(ev[2].session_user.as_deref(), Some(w.agent.as_str()));
    assert_eq!(ev[2].decision, "allow");
    assert_eq!(
        ev[2].statement.as_deref(),
        Some("DELETE FROM orders WHERE id = 1")
    );
    assert_eq!(ev[2].task_id.as_deref(), Some("task-token-1"));
}

#[test]
fn approver_views_json_stats_and_activity() {
    let w = World::new("aud_views");
    let dba = new_approver("aud_views");
    let mut ag = w.agent_in(&w.protected);
    for id in 1..=3 {
        assert_guard_refused(ag.batch_execute(&format!("DELETE FROM orders WHERE id = {id}")));
    }
    let mut d = connect(&dba, &w.protected);
    expect_count(
        &mut d,
        &refused_count_sql(&w.agent),
        3,
        Duration::from_secs(5),
        "three refusals",
    );
    // audit_log_json: one JSON object per event.
    let n = count(
        &mut d,
        &format!(
            "SELECT count(*) FROM ai_agent_safety.audit_log_json(now() - interval '1 hour') j
              WHERE json_typeof(j) = 'object' AND j->>'session_user_name' = '{}'
                AND j->>'event' = 'refused' AND j->>'decision' = 'refuse'
                AND j->>'reason' LIKE '%require_approval%'",
            w.agent
        ),
    );
    assert_eq!(n, 3);
    assert_eq!(
        count(
            &mut d,
            "SELECT count(*) FROM ai_agent_safety.audit_log_json(now() + interval '1 hour')"
        ),
        0
    );
    let msg = assert_sqlstate(
        d.query("SELECT * FROM ai_agent_safety.audit_log_json(NULL)", &[]),
        "22004",
    );
    assert!(msg.contains("since is required"), "{msg}");
    // audit_stats.
    let r = d
        .query_one(
            "SELECT events_written, events_spooled, queue_depth, writer_state FROM ai_agent_safety.audit_stats",
            &[],
        )
        .unwrap_or_else(|e| panic!("audit_stats as approver: {}", describe(&e)));
    let written: i64 = r.get(0);
    let spooled: i64 = r.get(1);
    let depth: i64 = r.get(2);
    let state: String = r.get(3);
    assert!(written >= 3, "events_written {written}");
    assert!(spooled >= written, "spooled {spooled} written {written}");
    assert!(depth >= 0);
    assert!(state.starts_with("running (pid "), "{state}");
    let pid: i32 = state
        .trim_start_matches("running (pid ")
        .trim_end_matches(')')
        .parse()
        .unwrap_or_else(|_| panic!("writer_state {state}"));
    assert_eq!(
        writer_pids(&mut admin(&w.protected), &w.protected),
        vec![pid]
    );
    // agent_activity.
    let r = d
        .query_one(
            "SELECT refusals, statements, tokens_used FROM ai_agent_safety.agent_activity WHERE role = $1",
            &[&w.agent],
        )
        .unwrap_or_else(|e| panic!("agent_activity: {}", describe(&e)));
    let refusals: i64 = r.get(0);
    let statements: i64 = r.get(1);
    let used: i64 = r.get(2);
    assert_eq!((refusals, statements, used), (3, 3, 0));
}

#[test]
fn statement_text_is_cut_at_audit_statement_max() {
    let w = World::with_settings("aud_cut", &[("ai_agent_safety.audit_statement_max", "20")]);
    let mut ag = w.agent_in(&w.protected);
    let sql = "DELETE FROM orders WHERE id = 1 AND note <> 'a statement much longer than twenty characters'";
    assert_guard_refused(ag.batch_execute(sql));
    let mut a = admin(&w.protected);
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        1,
        Duration::from_secs(5),
        "refusal",
    );
    let ev = events_of(&mut a, &w.agent);
    let stmt = ev[0].statement.clone().unwrap_or_default();
    let want = format!(
        "{}... [cut: {} characters in all] ...{}",
        &sql[..10],
        sql.chars().count(),
        &sql[sql.len() - 10..]
    );
    assert_eq!(stmt, want);
    assert!(stmt.contains("[cut:"));
}

/// The owner of a database (an agent, say) can switch its connections off.
/// The audit writer connects regardless, so the events of sessions still
/// open there are loaded, not starved.
#[test]
fn events_load_while_the_database_refuses_connections() {
    let w = World::new("noconn");
    // Open before connections are switched off: these sessions stay.
    let mut ag = w.agent_in(&w.protected);
    let mut a = admin(&w.protected);
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            w.protected
        ))
        .unwrap();
    assert!(
        try_connect("postgres", &w.protected).is_err(),
        "new connections are refused"
    );
    assert_guard_refused(ag.batch_execute("DELETE FROM orders WHERE id = 1"));
    // No writer ran for this database before: loading this event needs a new
    // connection to it.
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        1,
        Duration::from_secs(10),
        "refusal loaded while connections are off",
    );
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            w.protected
        ))
        .unwrap();
}

/// A long leading comment cannot push the statement itself out of the
/// audit log: the text keeps its head and its tail, and the operation and
/// object are in their own columns.
#[test]
fn a_leading_comment_cannot_hide_the_statement() {
    let w = World::with_settings("padded", &[("ai_agent_safety.audit_statement_max", "200")]);
    let mut ag = w.agent_in(&w.protected);
    let sql = format!(
        "/* {} */ DELETE FROM orders WHERE id = 1",
        "routine maintenance ".repeat(105)
    );
    assert_guard_refused(ag.batch_execute(&sql));
    let mut a = admin(&w.protected);
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        1,
        Duration::from_secs(5),
        "refusal",
    );
    let ev = events_of(&mut a, &w.agent);
    let stmt = ev[0].statement.clone().unwrap_or_default();
    assert!(stmt.ends_with("DELETE FROM orders WHERE id = 1"), "{stmt}");
    assert!(stmt.contains("[cut: "), "{stmt}");
    assert_eq!(ev[0].operation.as_deref(), Some("DELETE"));
    assert_eq!(ev[0].object.as_deref(), Some("public.orders"));
}

/// In a database whose encoding is not UTF-8, an agent statement with a
/// character that is not ASCII ("é" is one byte in LATIN1) is recorded with
/// that character, and so are the events around it: none is dropped.
#[test]
fn a_latin1_database_keeps_every_event_and_its_characters() {
    let w = World::new("latin1");
    let db = unique("latin1_db");
    let mut su = admin("postgres");
    for sql in [
        format!(
            "CREATE DATABASE {db} OWNER {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
            w.owner
        ),
        format!("ALTER DATABASE {db} SET ai_agent_safety.require_approval = on"),
    ] {
        su.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }
    admin(&db)
        .batch_execute(&format!(
            "CREATE EXTENSION ai_agent_safety;
             CREATE TABLE public.orders (id int, note text);
             INSERT INTO public.orders VALUES (1, 'café'), (2, 'plain');
             GRANT ALL ON public.orders TO {};",
            w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut ag = w.agent_in(&db);
    assert_guard_refused(ag.batch_execute("DELETE FROM orders WHERE id = 2"));
    let msg = assert_guard_refused(ag.batch_execute("DELETE FROM orders WHERE note = 'café'"));
    assert!(msg.contains("DELETE on public.orders"), "{msg}");
    assert_guard_refused(ag.batch_execute("DELETE FROM orders WHERE id = 1"));
    let mut a = admin(&db);
    expect_count(
        &mut a,
        &refused_count_sql(&w.agent),
        3,
        Duration::from_secs(10),
        "all three refusals, the one with é included",
    );
    let ev = events_of(&mut a, &w.agent);
    assert!(
        ev.iter()
            .any(|e| e.statement.as_deref() == Some("DELETE FROM orders WHERE note = 'café'")),
        "{:?}",
        ev.iter().map(|e| e.statement.clone()).collect::<Vec<_>>()
    );
}

/// Everything in a running cluster's spool for one database, in file-name
/// order (with no writer, only its backends' segments).
fn spool_text(cluster_dir: &str, dboid: u32) -> String {
    let dir = std::path::Path::new(cluster_dir)
        .join("ai_agent_safety_spool")
        .join(dboid.to_string());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| f.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| String::from_utf8_lossy(&spool_file_lines(f)).into_owned())
        .collect()
}

/// Every event is spooled at the moment of its decision, before the
/// statement runs: an agent backend killed in the middle of a transaction
/// (SIGKILL, which runs no abort) has lost none of its events, including
/// those of writes whose effects died with it. When the spool cannot be
/// written, the statement is refused and its event still reaches the server
/// log.
#[test]
fn a_killed_backend_loses_no_event_and_a_spool_failure_still_logs() {
    const NAME: &str = "auditkill";
    const PORT: u16 = 55479;
    const AGENT: &str = "kill_agent";
    const DB: &str = "kill_prod";
    const OTHER: &str = "kill_other";
    let _guard = StopCluster(NAME);
    // No writer can start (the launcher takes the one slot): every event
    // stays in the spool, where the test reads it. Commits are flushed
    // before they return, so a crash keeps what committed.
    own_cluster(
        NAME,
        PORT,
        &["max_worker_processes = 1", "synchronous_commit = on"],
        AGENT,
        &[DB, OTHER],
    );
    let dir = format!("/tmp/aas-{NAME}");
    let mut a = connect_port(PORT, "postgres", DB);
    exec(
        &mut a,
        &format!("ALTER ROLE {AGENT} SET ai_agent_safety.audit_level = 'all'"),
    );
    let dboid = dboid_of(&mut a);
    let statements = || -> Vec<String> {
        spool_text(&dir, dboid)
            .lines()
            .filter(|l| l.contains(AGENT))
            .map(|l| l.split('\t').nth(13).unwrap_or("").to_string())
            .collect()
    };

    // 1. SIGKILL mid-transaction.
    let mut ag = connect_port(PORT, AGENT, DB);
    exec(
        &mut ag,
        "INSERT INTO public.orders VALUES (11, 'committed')",
    );
    let pid: i32 = ag.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // Past a backend's first 16 events (the shared file): what follows is
    // in its own segment, a mapped file, when the kill comes.
    for _ in 0..16 {
        exec(&mut ag, "SELECT 'before the segment'");
    }
    exec(&mut ag, "BEGIN");
    exec(
        &mut ag,
        "SELECT 'read in the doomed transaction' FROM public.orders",
    );
    // No writer can run here (every background worker slot is taken, as an
    // agent could take them with parallel workers): the read's log line is
    // the backend's, at once, not left owed to a writer that cannot come.
    let log =
        String::from_utf8_lossy(&std::fs::read(format!("{dir}/server.log")).unwrap()).into_owned();
    let read: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("ai_agent_safety: {") && l.contains("read in the doomed transaction")
        })
        .collect();
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(written_by(read[0]), pid, "{}", read[0]);
    exec(&mut ag, "INSERT INTO public.orders VALUES (12, 'doomed')");
    assert_guard_refused(ag.batch_execute("SAVEPOINT s; DELETE FROM public.orders WHERE id = 1"));
    let before = statements();
    kill_and_wait_for_the_restart(&dir, pid);
    assert!(ag.batch_execute("SELECT 1").is_err(), "the backend is gone");
    let mut a = connect_port(PORT, "postgres", DB);
    let rows = count(
        &mut a,
        "SELECT count(*) FROM public.orders WHERE id IN (11, 12)",
    );
    assert_eq!(
        rows, 1,
        "the committed row stays, the killed transaction's is gone"
    );
    let after = statements();
    assert_eq!(after, before, "the kill took no event with it");
    assert!(
        spool_db_files(&dir)
            .iter()
            .any(|p| p.to_str().unwrap().ends_with(&format!("-{pid}.seg"))),
        "the killed backend's events are in its segment"
    );
    for s in [
        "'committed'",
        "read in the doomed",
        "'doomed'",
        "DELETE FROM public.orders WHERE id = 1",
    ] {
        assert_eq!(
            after.iter().filter(|x| x.contains(s)).count(),
            1,
            "{s} once in {after:?}"
        );
    }

    // 2. The spool cannot be written (a new session's first events go to
    // the shared current.copy, read-only now, and later ones to a segment
    // of its own in the database's spool directory, unwritable now): the
    // refusal still reaches the server log, and the statement does not run.
    let file = std::path::Path::new(&dir)
        .join("ai_agent_safety_spool")
        .join(dboid.to_string());
    use std::os::unix::fs::PermissionsExt;
    let shared = file.join("current.copy");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o500)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o400)).unwrap();
    let mut ag = connect_port(PORT, AGENT, DB);
    let err = ag
        .batch_execute("DELETE FROM public.orders WHERE id = 2 /* unspoolable */")
        .unwrap_err();
    assert!(
        describe(&err).contains("cannot open the audit spool"),
        "{}",
        describe(&err)
    );
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o700)).unwrap();
    let log =
        String::from_utf8_lossy(&std::fs::read(format!("{dir}/server.log")).unwrap()).into_owned();
    assert!(
        log.lines().any(|l| l.contains("ai_agent_safety: {")
            && l.contains("unspoolable")
            && l.contains("\"event\":\"refused\"")),
        "the refusal is in the server log"
    );
    assert_eq!(count(&mut a, "SELECT count(*) FROM public.orders"), 11);
    // An allowed read the spool cannot take is refused, and its log line,
    // which the writer would have written, is the backend's.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o500)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o400)).unwrap();
    let err = ag.batch_execute("SELECT 'read unspoolable'").unwrap_err();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(
        describe(&err).contains("cannot open the audit spool"),
        "{}",
        describe(&err)
    );
    let agent_pid: i32 = ag.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let log =
        String::from_utf8_lossy(&std::fs::read(format!("{dir}/server.log")).unwrap()).into_owned();
    let unspooled: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ai_agent_safety: {") && l.contains("read unspoolable"))
        .collect();
    assert_eq!(unspooled.len(), 1, "{unspooled:?}");
    assert_eq!(written_by(unspooled[0]), agent_pid, "{}", unspooled[0]);

    // 3. Room for a writer: the killed backend's allowed reads reach the
    // table, and the log only once (their lines were the backend's).
    exec(&mut a, "ALTER SYSTEM SET max_worker_processes = 8");
    drop((a, ag));
    run_lib_sh(&format!("cluster_stop {NAME}"));
    run_lib_sh(&format!(
        "as_postgres env -u RUST_BACKTRACE $PG_BIN/pg_ctl -D {dir} -l {dir}/server.log -w start >/dev/null"
    ));
    let mut a = connect_port(PORT, "postgres", DB);
    wait_for_count(
        &mut a,
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE statement LIKE '%read in the doomed transaction%'",
        1,
    );
    let log =
        String::from_utf8_lossy(&std::fs::read(format!("{dir}/server.log")).unwrap()).into_owned();
    let doomed: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("ai_agent_safety: {") && l.contains("read in the doomed transaction")
        })
        .collect();
    assert_eq!(doomed.len(), 1, "{doomed:?}");
    assert!(
        doomed[0].contains(&format!("\"pid\":{pid},")),
        "{}",
        doomed[0]
    );
    assert_eq!(written_by(doomed[0]), pid, "{}", doomed[0]);
    // A line a writer owes in a database whose extension was dropped
    // before the writer came (spooled while a writer ran there): the
    // writer, finding no extension, writes it and keeps the event, without
    // its mark, for CREATE EXTENSION.
    let mut o = connect_port(PORT, "postgres", OTHER);
    exec(&mut o, "DROP EXTENSION ai_agent_safety CASCADE");
    let spool = std::path::Path::new(&dir)
        .join("ai_agent_safety_spool")
        .join(dboid_of(&mut o).to_string());
    std::fs::create_dir_all(&spool).unwrap();
    let owed = spool.join("00000000000000000001-000001-1.copy");
    std::fs::write(
        &owed,
        "+2026-12-03T18:00:00.000000Z\tkill_other\t4242\t[local]\tpsql\tkill_agent\tkill_agent\t\\N\tguard\tallowed\tallow\tSELECT\t\\N\tSELECT 'read before DROP EXTENSION'\t\\N\t\\N\n",
    )
    .unwrap();
    run_lib_sh(&format!("chown -R postgres:postgres {}", spool.display()));
    // The agent's event there (logged by its backend: no extension) starts
    // the writer.
    exec(
        &mut connect_port(PORT, AGENT, OTHER),
        "SELECT 'wake the writer'",
    );
    let start = Instant::now();
    loop {
        let log = std::fs::read(format!("{dir}/server.log")).unwrap();
        let n = String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| {
                l.contains("ai_agent_safety: {")
                    && l.contains("read before DROP EXTENSION")
                    && l.contains("\"pid\":4242,")
            })
            .count();
        if n == 1 {
            break;
        }
        assert!(
            n == 0 && start.elapsed() < Duration::from_secs(60),
            "{n} lines for the read before DROP EXTENSION after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The writer puts the file back unmarked just after writing its lines.
    let start = Instant::now();
    loop {
        let kept = std::fs::read_to_string(&owed).unwrap();
        if kept.starts_with("2026-12-03T18:00:00") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still marked after 10 s: {kept}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
