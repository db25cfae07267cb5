//! Reviewed transactions: an agent runs its DELETE and UPDATE in a review
//! (`begin_review`), prepares it, and an approver (never the requester nor
//! an agent) commits it with COMMIT PREPARED; until then nobody sees it.
//! Each test finishes every review it prepares (the cluster has few slots).

use aas_integration::postgres::fallible_iterator::FallibleIterator;
use aas_integration::*;
use postgres::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Gids are the cluster's and a review's name is not reused for 7 days:
/// each run of these tests names its reviews apart (`review_` becomes
/// `review<run>_`).
fn g(sql: &str) -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| unique("").replace('_', ""));
    sql.replace("review_", &format!("review{run}_"))
}

/// A world whose orders have 2 lines each (ON DELETE CASCADE), both the
/// owner's.
fn world(tag: &str) -> World {
    let w = World::new(tag);
    admin(&w.protected)
        .batch_execute(&format!(
            "SET ROLE {owner};
             CREATE TABLE public.order_lines (order_id int NOT NULL REFERENCES public.orders ON DELETE CASCADE);
             INSERT INTO public.order_lines SELECT o FROM generate_series(1, 10) o, generate_series(1, 2);
             GRANT ALL ON public.order_lines TO {agent};
             RESET ROLE;",
            owner = w.owner,
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("world: {}", describe(&e)));
    w
}

fn orders(w: &World) -> i64 {
    count(
        &mut admin(&w.protected),
        "SELECT count(*) FROM public.orders",
    )
}

fn lines(w: &World) -> i64 {
    count(
        &mut admin(&w.protected),
        "SELECT count(*) FROM public.order_lines",
    )
}

fn prepared(w: &World, gid: &str) -> bool {
    admin(&w.protected)
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_prepared_xacts WHERE gid = $1)",
            &[&gid],
        )
        .unwrap()
        .get(0)
}

/// The agent's review: two deletes and an update, prepared as `gid`.
fn prepare_review(agent: &mut Client, task: &str, gid: &str) {
    agent
        .batch_execute(&format!(
            "BEGIN;
             SELECT ai_agent_safety.begin_review('{task}', 'remove test orders');
             DELETE FROM orders WHERE id <= 2;
             DELETE FROM orders WHERE id = 3;
             UPDATE orders SET note = 'reviewed' WHERE id = 9;
             PREPARE TRANSACTION '{gid}';"
        ))
        .unwrap_or_else(|e| panic!("review: {}", describe(&e)));
}

/// The audit log's newest reason for a review event (bounded wait: the
/// writer loads events within a moment).
fn review_event(w: &World, event: &str) -> String {
    let mut c = admin(&w.protected);
    let start = Instant::now();
    loop {
        let r = c
            .query(
                "SELECT reason FROM ai_agent_safety.audit_log WHERE source = 'review' AND event = $1 ORDER BY id DESC LIMIT 1",
                &[&event],
            )
            .unwrap();
        if let Some(r) = r.first() {
            return r.get(0);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no review event {event} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reviewed_delete_is_invisible_until_an_approver_commits_it() {
    let w = world("rv_commit");
    let approver = new_approver("rv_commit");
    let mut agent = w.agent_in(&w.protected);
    // Outside a review the DELETE needs its token.
    assert_refused(agent.batch_execute("DELETE FROM orders WHERE id = 1"));
    prepare_review(&mut agent, "cleanup-7", &g("review_cleanup-7"));
    // Nobody sees it yet, not even the agent's next transaction.
    assert_eq!((orders(&w), lines(&w)), (10, 20));
    assert_eq!(count(&mut agent, "SELECT count(*) FROM orders"), 10);

    let mut a = connect(&approver, &w.protected);
    let r = a
        .query_one(
            &g(
                "SELECT requested_by::text, task_id, reason, rows, statements::text, to_commit
               FROM ai_agent_safety.pending_reviews WHERE gid = 'review_cleanup-7'",
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("pending_reviews: {}", describe(&e)));
    assert_eq!(r.get::<_, String>(0), w.agent);
    assert_eq!(r.get::<_, String>(1), "cleanup-7");
    assert_eq!(r.get::<_, String>(2), "remove test orders");
    // 3 orders and their 6 lines deleted, 1 order updated.
    assert_eq!(r.get::<_, i64>(3), 10);
    let statements: Value = serde_json::from_str(&r.get::<_, String>(4)).unwrap();
    let s = statements.as_array().unwrap();
    assert_eq!(s.len(), 3, "{statements}");
    assert_eq!(s[0]["statement"], "DELETE FROM orders WHERE id <= 2");
    assert_eq!(s[0]["rows"], 6);
    let t = s[0]["tables"].as_array().unwrap();
    assert_eq!(
        (&t[0]["table"], &t[0]["deleted"], &t[0]["via"]),
        (
            &Value::from("public.orders"),
            &Value::from(2),
            &Value::from("statement")
        )
    );
    assert_eq!(
        (&t[1]["table"], &t[1]["deleted"], &t[1]["via"]),
        (
            &Value::from("public.order_lines"),
            &Value::from(4),
            &Value::from("ON DELETE CASCADE")
        )
    );
    assert_eq!(s[2]["tables"][0]["updated"], 1);
    assert_eq!(
        r.get::<_, String>(5),
        g("COMMIT PREPARED 'review_cleanup-7';")
    );

    // The requester, another agent, and a human who is no approver may not
    // commit it.
    let e = assert_refused(agent.batch_execute(&g("COMMIT PREPARED 'review_cleanup-7'")));
    assert!(e.contains("may not commit prepared transactions"), "{e}");
    let other = unique("rv_other_agent");
    let mut su = admin("postgres");
    let until = in_one_hour(&mut su);
    su.batch_execute(&format!(
        "CREATE ROLE {other} LOGIN IN ROLE ai_agent VALID UNTIL '{until}'"
    ))
    .unwrap();
    let e = assert_refused(
        connect(&other, &w.protected).batch_execute(&g("COMMIT PREPARED 'review_cleanup-7'")),
    );
    assert!(e.contains("may not commit prepared transactions"), "{e}");
    // Nor withdraw another agent's review.
    let e = assert_refused(
        connect(&other, &w.protected).batch_execute(&g("ROLLBACK PREPARED 'review_cleanup-7'")),
    );
    assert!(e.contains("may not decide a review"), "{e}");
    let e = assert_refused(
        w.owner_in(&w.protected)
            .batch_execute(&g("COMMIT PREPARED 'review_cleanup-7'")),
    );
    assert!(e.contains("is not an approver"), "{e}");
    assert!(prepared(&w, &g("review_cleanup-7")));
    assert_eq!(orders(&w), 10);

    // The approver (not a superuser, not its owner) commits it: exactly the
    // reviewed rows are gone.
    a.batch_execute(&g("COMMIT PREPARED 'review_cleanup-7'"))
        .unwrap_or_else(|e| panic!("approver's COMMIT PREPARED: {}", describe(&e)));
    assert_eq!((orders(&w), lines(&w)), (7, 14));
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE id IN (1, 2, 3) OR note <> 'reviewed' AND id = 9"
        ),
        0
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM ai_agent_safety.pending_reviews"
        ),
        0
    );
    let prepared_reason = review_event(&w, "prepared");
    assert!(
        prepared_reason.contains(&g(
            "prepared review 'review_cleanup-7' (task cleanup-7): 3 statements, 10 rows"
        )),
        "{prepared_reason}"
    );
    let committed = review_event(&w, "committed");
    assert!(
        committed.starts_with(&format!(
            "{approver} committed review '{}' of {}",
            g("review_cleanup-7"),
            w.agent
        )),
        "{committed}"
    );
    assert!(review_event(&w, "refused").contains(&g("COMMIT PREPARED 'review_cleanup-7' refused")));
}

#[test]
fn a_review_cannot_commit_or_take_exclusive_locks() {
    let w = world("rv_refuse");
    let mut agent = w.agent_in(&w.protected);
    // COMMIT: refused, with the way to hand it over; nothing kept.
    agent
        .batch_execute(
            "BEGIN; SELECT ai_agent_safety.begin_review('t-commit', NULL); DELETE FROM orders WHERE id = 1;",
        )
        .unwrap();
    let e = assert_refused(agent.batch_execute("COMMIT"));
    assert!(e.contains("COMMIT refused"), "{e}");
    assert!(e.contains("PREPARE TRANSACTION 'review_t-commit';"), "{e}");
    agent.batch_execute("ROLLBACK").unwrap();
    assert_eq!(orders(&w), 10);
    // An implicit commit (a multi-statement query) is refused the same way.
    let e = assert_refused(agent.batch_execute(
        "SELECT ai_agent_safety.begin_review('t-implicit'); DELETE FROM orders WHERE id = 1;",
    ));
    assert!(e.contains("COMMIT refused"), "{e}");
    assert_eq!(orders(&w), 10);
    // DROP and TRUNCATE are not a review's, even with a token.
    for sql in ["DROP TABLE order_lines", "TRUNCATE orders CASCADE"] {
        agent
            .batch_execute("BEGIN; SELECT ai_agent_safety.begin_review('t-ddl');")
            .unwrap();
        let e = assert_refused(agent.batch_execute(sql));
        assert!(
            e.contains("is in a review (task t-ddl), which covers DELETE and UPDATE only"),
            "{sql}: {e}"
        );
        agent.batch_execute("ROLLBACK").unwrap();
    }
    assert_eq!((orders(&w), lines(&w)), (10, 20));
    // Savepoints: what a rolled-back savepoint did is not in the review.
    agent
        .batch_execute(&g("BEGIN; SELECT ai_agent_safety.begin_review('t-sp');
             SAVEPOINT s; DELETE FROM orders WHERE id = 5; ROLLBACK TO s;
             DELETE FROM orders WHERE id = 6;
             PREPARE TRANSACTION 'review_t-sp';"))
        .unwrap();
    let r = admin(&w.protected)
        .query_one(
            &g("SELECT jsonb_array_length(statements), rows FROM ai_agent_safety.pending_reviews WHERE gid = 'review_t-sp'"),
            &[],
        )
        .unwrap();
    assert_eq!((r.get::<_, i32>(0), r.get::<_, i64>(1)), (1, 3));
    // The requester may withdraw its own review.
    agent
        .batch_execute(&g("ROLLBACK PREPARED 'review_t-sp'"))
        .unwrap_or_else(|e| panic!("withdraw: {}", describe(&e)));
    assert_eq!(orders(&w), 10);
    assert!(review_event(&w, "rolled_back").contains(&g("rolled back review 'review_t-sp'")));
    // Its name is not a new review's: an approver who read the withdrawn
    // one would commit this one by the same command.
    let e = assert_refused(
        agent.batch_execute(&g("BEGIN; SELECT ai_agent_safety.begin_review('t-sp');
         DELETE FROM orders; PREPARE TRANSACTION 'review_t-sp';")),
    );
    assert!(
        e.contains("a review was prepared under that name in the last 7 days"),
        "{e}"
    );
    agent.batch_execute("ROLLBACK").unwrap();
    assert!(!prepared(&w, &g("review_t-sp")));
    assert_eq!(orders(&w), 10);
    // Nor in another database: gids are the cluster's.
    let other = unique("rv_refuse_other");
    let mut su = admin("postgres");
    su.batch_execute(&format!("CREATE DATABASE {other} OWNER {}", w.owner))
        .unwrap();
    su.batch_execute(&format!(
        "ALTER DATABASE {other} SET ai_agent_safety.require_approval = on"
    ))
    .unwrap();
    admin(&other)
        .batch_execute(&format!(
            "CREATE EXTENSION ai_agent_safety; CREATE TABLE t (x int); INSERT INTO t VALUES (1);
             GRANT ALL ON t TO {};",
            w.agent
        ))
        .unwrap();
    let e = assert_refused(
        connect(&w.agent, &other)
            .batch_execute(&g("BEGIN; SELECT ai_agent_safety.begin_review('t-sp');
         DELETE FROM t; PREPARE TRANSACTION 'review_t-sp';")),
    );
    assert!(
        e.contains("a review was prepared under that name in the last 7 days"),
        "{e}"
    );
    // A table lock would outlive the session while a person reads.
    agent
        .batch_execute("BEGIN; SELECT ai_agent_safety.begin_review('t-lock');")
        .unwrap();
    let e = assert_refused(agent.batch_execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"));
    assert!(
        e.contains("LOCK TABLE ... IN ACCESS EXCLUSIVE MODE refused"),
        "{e}"
    );
    agent.batch_execute("ROLLBACK").unwrap();
    agent
        .batch_execute(
            "BEGIN; SELECT ai_agent_safety.begin_review('t-lock2');
             LOCK TABLE orders IN ROW EXCLUSIVE MODE; ROLLBACK;",
        )
        .unwrap();
    // So would a foreign key to the owner's table (SHARE ROW EXCLUSIVE on
    // it): the review is not prepared.
    let e = assert_refused(agent.batch_execute(&g(
        "BEGIN; SELECT ai_agent_safety.begin_review('t-fk');
         CREATE TABLE bot_fk (x int REFERENCES orders (id));
         PREPARE TRANSACTION 'review_t-fk';",
    )));
    assert!(
        e.contains("holds a ShareRowExclusive lock on public.orders"),
        "{e}"
    );
    agent.batch_execute("ROLLBACK").unwrap();
    assert!(!prepared(&w, &g("review_t-fk")));
    // A rule's query is listed as the rule's, not as the statement.
    agent
        .batch_execute(&g("CREATE TABLE bot_r (x int);
             CREATE RULE r AS ON INSERT TO bot_r DO ALSO DELETE FROM orders WHERE id = 10;
             BEGIN; SELECT ai_agent_safety.begin_review('t-rule');
             INSERT INTO bot_r VALUES (1);
             PREPARE TRANSACTION 'review_t-rule';"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let statements: String = admin(&w.protected)
        .query_one(
            &g("SELECT statements::text FROM ai_agent_safety.pending_reviews WHERE gid = 'review_t-rule'"),
            &[],
        )
        .unwrap()
        .get(0);
    let v: Value = serde_json::from_str(&statements).unwrap();
    let orders_entries: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tables"].as_array().unwrap())
        .filter(|t| t["table"] == "public.orders")
        .collect();
    assert_eq!(orders_entries.len(), 1, "{v}");
    assert_eq!(orders_entries[0]["via"], "trigger or rule", "{v}");
    assert_eq!(orders_entries[0]["deleted"], 1, "{v}");
    agent
        .batch_execute(&g("ROLLBACK PREPARED 'review_t-rule'"))
        .unwrap();
    assert_eq!(orders(&w), 10);
}

/// What a review changes outside counted statements (a large object's
/// bytes, written by lo_put with UPDATE protected) is listed too, so the
/// approver sees it.
#[test]
fn a_large_object_written_in_a_review_is_listed() {
    let w = World::with_settings(
        "rv_lo",
        &[(
            "ai_agent_safety.protected_operations",
            "DROP, DELETE, TRUNCATE, UPDATE",
        )],
    );
    admin(&w.protected)
        .batch_execute(&format!(
            "SELECT lo_from_bytea(424242, 'data'); ALTER LARGE OBJECT 424242 OWNER TO {owner};
             GRANT SELECT, UPDATE ON LARGE OBJECT 424242 TO {agent};",
            owner = w.owner,
            agent = w.agent
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.protected);
    assert_refused(agent.batch_execute("SELECT lo_put(424242, 0, 'XX')"));
    for sql in [
        "BEGIN",
        "SELECT ai_agent_safety.begin_review('t-lo')",
        "SELECT lo_put(424242, 0, 'XX')",
        &g("PREPARE TRANSACTION 'review_t-lo'"),
    ] {
        agent
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }
    let statements: String = admin(&w.protected)
        .query_one(
            &g("SELECT statements::text FROM ai_agent_safety.pending_reviews WHERE gid = 'review_t-lo'"),
            &[],
        )
        .unwrap()
        .get(0);
    let v: Value = serde_json::from_str(&statements).unwrap();
    assert_eq!(v[0]["statement"], "SELECT lo_put(424242, 0, 'XX')", "{v}");
    assert!(
        v[0]["operation"]
            .as_str()
            .is_some_and(|o| o == "UPDATE a large object"),
        "{v}"
    );
    connect(&new_approver("rv_lo"), &w.protected)
        .batch_execute(&g("ROLLBACK PREPARED 'review_t-lo'"))
        .unwrap();
}

/// In a database whose encoding is not UTF-8, a review prepared under a
/// name with a non-ASCII character is found, listed, and judged like any
/// other.
#[test]
fn a_review_with_a_non_ascii_name_in_a_latin1_database_is_judged() {
    let w = World::new("rv_latin1");
    let db = unique("rv_latin1_db");
    let mut su = admin("postgres");
    su.batch_execute(&format!(
        "CREATE DATABASE {db} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER {}",
        w.owner
    ))
    .unwrap();
    su.batch_execute(&format!(
        "ALTER DATABASE {db} SET ai_agent_safety.require_approval = on"
    ))
    .unwrap();
    admin(&db)
        .batch_execute(&format!(
            "CREATE EXTENSION ai_agent_safety;
             CREATE TABLE public.victim (id int); INSERT INTO public.victim SELECT generate_series(1, 100);
             GRANT ALL ON public.victim TO {};",
            w.agent
        ))
        .unwrap();
    let mut agent = connect(&w.agent, &db);
    agent
        .batch_execute(&g("BEGIN; SELECT ai_agent_safety.begin_review('t-latin1');
             DELETE FROM victim WHERE id <= 10;
             PREPARE TRANSACTION 'review_révision';"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let victims = || count(&mut admin(&db), "SELECT count(*) FROM victim");
    // While that gid (not UTF-8) is prepared, reviews and prepared
    // transactions in a UTF-8 database still finish: another database's
    // gid is never read as text here.
    let mut utf8 = w.agent_in(&w.protected);
    utf8.batch_execute(&g("BEGIN; SELECT ai_agent_safety.begin_review('t-utf8');
         DELETE FROM orders WHERE id = 1;
         PREPARE TRANSACTION 'review_utf8';"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    utf8.batch_execute(&g("ROLLBACK PREPARED 'review_utf8'"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut dba = admin(&w.protected);
    dba.batch_execute(&g(
        "BEGIN; CREATE TABLE plain_2pc (x int); PREPARE TRANSACTION 'review_plain';",
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    dba.batch_execute(&g("COMMIT PREPARED 'review_plain'"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let e = assert_refused(agent.batch_execute(&g("COMMIT PREPARED 'review_révision'")));
    assert!(e.contains("may not commit prepared transactions"), "{e}");
    assert_eq!(victims(), 100);
    let approver = new_approver("rv_latin1");
    let mut a = connect(&approver, &db);
    let r = a
        .query_one("SELECT gid, rows FROM ai_agent_safety.pending_reviews", &[])
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, i64>(1)),
        (g("review_révision"), 10)
    );
    a.batch_execute(&g("COMMIT PREPARED 'review_révision'"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(victims(), 90);
    // Revoking the agent from another database rolls back its review
    // here, gid and all.
    agent
        .batch_execute(&g(
            "BEGIN; SELECT ai_agent_safety.begin_review('t-latin1-2');
             DELETE FROM victim WHERE id <= 10;
             PREPARE TRANSACTION 'review_rétracté';",
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let owned = || {
        count(
            &mut admin("postgres"),
            &format!(
                "SELECT count(*) FROM pg_prepared_xacts WHERE owner = '{}'",
                w.agent
            ),
        )
    };
    assert_eq!(owned(), 1);
    admin(&w.protected)
        .batch_execute(&format!(
            "SELECT ai_agent_safety.revoke_agent_credentials('{}')",
            w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(owned(), 0);
    assert_eq!(victims(), 90);
}

#[test]
fn begin_review_says_why_it_cannot_start() {
    let w = world("rv_begin");
    let mut agent = w.agent_in(&w.protected);
    let e = agent
        .batch_execute("SELECT ai_agent_safety.begin_review('t')")
        .unwrap_err();
    assert!(
        describe(&e).contains("must run inside a transaction block"),
        "{}",
        describe(&e)
    );
    let mut open = w.agent_in(&w.open);
    let e = open
        .batch_execute("BEGIN; SELECT ai_agent_safety.begin_review('t')")
        .unwrap_err();
    assert!(
        describe(&e).contains("does not have ai_agent_safety.require_approval on"),
        "{}",
        describe(&e)
    );
    open.batch_execute("ROLLBACK").unwrap();
    for (call, want) in [
        ("begin_review(NULL)", "needs a task id"),
        ("begin_review('  ')", "needs a task id"),
        (
            "begin_review(repeat('x', 201))",
            "longer than 200 characters",
        ),
        (
            "begin_review('t', repeat('x', 1001))",
            "longer than 1000 characters",
        ),
    ] {
        let e = agent
            .batch_execute(&format!("BEGIN; SELECT ai_agent_safety.{call}"))
            .unwrap_err();
        assert!(describe(&e).contains(want), "{call}: {}", describe(&e));
        agent.batch_execute("ROLLBACK").unwrap();
    }
    let mut human = w.owner_in(&w.protected);
    let e = human
        .batch_execute("BEGIN; SELECT ai_agent_safety.begin_review('t')")
        .unwrap_err();
    assert!(
        describe(&e).contains("is for agent sessions"),
        "{}",
        describe(&e)
    );
    // review_ttl is a DBA's: the agent cannot lengthen it.
    assert_refused(agent.batch_execute("SET ai_agent_safety.review_ttl = '30d'"));
}

#[test]
fn a_review_is_announced_and_an_expired_one_is_rolled_back() {
    let w = world("rv_expire");
    let approver = new_approver("rv_expire");
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.review_ttl = '2s'",
            w.protected
        ))
        .unwrap();
    let mut listener = connect(&approver, &w.protected);
    listener
        .batch_execute("LISTEN ai_agent_safety_requests")
        .unwrap();
    let mut agent = w.agent_in(&w.protected);
    // Long text in characters of 4 bytes: the announcement stays within
    // NOTIFY's 8000 bytes, and nothing stops the writer's pass.
    let wide = "😀".repeat(500);
    agent
        .batch_execute(&format!(
            "BEGIN;
             SELECT ai_agent_safety.begin_review('{task}', '{reason}');
             DELETE FROM orders WHERE id <= 2 /* {wide} */;
             DELETE FROM orders WHERE id = 3 /* {wide} */;
             UPDATE orders SET note = 'reviewed' WHERE id = 9 /* {wide} */;
             PREPARE TRANSACTION '{gid}';",
            gid = g("review_t-expire"),
            task = "😀".repeat(200),
            reason = "😀".repeat(1000),
        ))
        .unwrap_or_else(|e| panic!("review: {}", describe(&e)));
    let n = listener
        .notifications()
        .timeout_iter(Duration::from_secs(30))
        .next()
        .unwrap()
        .expect("no NOTIFY of the review within 30 s");
    let p: Value = serde_json::from_str(n.payload()).unwrap();
    assert_eq!(p["kind"], "review");
    assert_eq!(p["gid"], g("review_t-expire").as_str());
    assert_eq!(p["requested_by"], w.agent.as_str());
    assert_eq!(p["rows"], 10);
    assert_eq!(p["statements"], 3);
    assert_eq!(p["reason"].as_str().unwrap().chars().count(), 200);
    assert!(n.payload().len() <= 8000);
    // Undecided past its time to live, the audit writer rolls it back.
    let start = Instant::now();
    while prepared(&w, &g("review_t-expire")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the expired review was not rolled back within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!((orders(&w), lines(&w)), (10, 20));
    let expired = review_event(&w, "expired");
    assert!(
        expired.contains(&g("review 'review_t-expire' of"))
            && expired.contains("expired undecided")
            && expired.contains("10 rows not changed"),
        "{expired}"
    );
}

/// A crash keeps a prepared transaction, and the review's metadata with it:
/// after an immediate shutdown (no checkpoint, as a crash) and a start, the
/// approver still sees the review and commits it.
#[test]
fn a_review_survives_a_crash() {
    const NAME: &str = "reviewcrash";
    const PORT: u16 = 55478;
    let _guard = StopCluster(NAME);
    run_lib_sh(&format!(
        "cluster_start {NAME} {PORT} 'max_prepared_transactions = 2'"
    ));
    let mut su = connect_port(PORT, "postgres", "postgres");
    let until = in_one_hour(&mut su);
    su.batch_execute(&format!(
        "CREATE EXTENSION ai_agent_safety;
         CREATE ROLE crash_agent LOGIN IN ROLE ai_agent VALID UNTIL '{until}';
         CREATE ROLE crash_dba LOGIN IN ROLE ai_agent_approver;"
    ))
    .unwrap();
    su.batch_execute("CREATE DATABASE crash_prod").unwrap();
    su.batch_execute("ALTER DATABASE crash_prod SET ai_agent_safety.require_approval = on")
        .unwrap();
    connect_port(PORT, "postgres", "crash_prod")
        .batch_execute(
            "CREATE EXTENSION ai_agent_safety;
             CREATE TABLE public.orders (id int PRIMARY KEY);
             INSERT INTO public.orders SELECT generate_series(1, 10);
             GRANT ALL ON public.orders TO crash_agent;",
        )
        .unwrap();
    connect_port(PORT, "crash_agent", "crash_prod")
        .batch_execute(
            "BEGIN; SELECT ai_agent_safety.begin_review('t-crash', 'before the crash');
             DELETE FROM orders WHERE id <= 4;
             PREPARE TRANSACTION 'review_t-crash';",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let dir = format!("/tmp/aas-{NAME}");
    run_lib_sh(&format!(
        "as_postgres $PG_BIN/pg_ctl -D {dir} -m immediate -w stop >/dev/null && \
         as_postgres env -u RUST_BACKTRACE $PG_BIN/pg_ctl -D {dir} -l {dir}/server.log -w start >/dev/null"
    ));
    let mut a = connect_port(PORT, "crash_dba", "crash_prod");
    let r = a
        .query_one(
            "SELECT gid, reason, rows FROM ai_agent_safety.pending_reviews",
            &[],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        (
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, i64>(2)
        ),
        (
            "review_t-crash".to_string(),
            "before the crash".to_string(),
            4
        )
    );
    let e = assert_refused(
        connect_port(PORT, "crash_agent", "crash_prod")
            .batch_execute("COMMIT PREPARED 'review_t-crash'"),
    );
    assert!(e.contains("may not commit prepared transactions"), "{e}");
    a.batch_execute("COMMIT PREPARED 'review_t-crash'")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut connect_port(PORT, "postgres", "crash_prod"),
            "SELECT count(*) FROM orders"
        ),
        6
    );
}

/// MERGE and INSERT ... ON CONFLICT DO UPDATE (UPDATE protected) run in a
/// review without tokens, are listed with what each changed, and take
/// effect only when an approver commits.
#[test]
fn a_merge_and_an_upsert_are_reviewed_like_any_dml() {
    let w = World::with_settings(
        "rv_merge",
        &[(
            "ai_agent_safety.protected_operations",
            "DROP, DELETE, TRUNCATE, UPDATE",
        )],
    );
    let mut agent = w.agent_in(&w.protected);
    let merge = "MERGE INTO orders o USING (SELECT g AS id FROM generate_series(1, 12) g) s ON o.id = s.id \
                 WHEN MATCHED AND o.id <= 3 THEN DELETE \
                 WHEN MATCHED AND o.id > 8 THEN UPDATE SET note = 'merged' \
                 WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'new')";
    let upsert = "INSERT INTO orders VALUES (5, 'up'), (20, 'new') ON CONFLICT (id) DO UPDATE SET note = excluded.note";
    // Outside a review, each needs a token.
    assert_refused(agent.batch_execute(merge));
    assert_refused(agent.batch_execute(upsert));
    agent
        .batch_execute(&g(&format!(
            "BEGIN; SELECT ai_agent_safety.begin_review('t-merge');
             {merge}; {upsert};
             PREPARE TRANSACTION 'review_t-merge';"
        )))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(orders(&w), 10);
    let approver = new_approver("rv_merge");
    let mut a = connect(&approver, &w.protected);
    let r = a
        .query_one(
            &g("SELECT rows, statements::text FROM ai_agent_safety.pending_reviews WHERE gid = 'review_t-merge'"),
            &[],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // The MERGE: 3 deleted, 2 updated, 2 inserted; the upsert: 1 updated,
    // 1 inserted.
    assert_eq!(r.get::<_, i64>(0), 9);
    let v: Value = serde_json::from_str(&r.get::<_, String>(1)).unwrap();
    let s = v.as_array().unwrap();
    assert_eq!(s.len(), 2, "{v}");
    let orders_entry = |i: usize| {
        s[i]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "public.orders")
            .cloned()
            .unwrap()
    };
    let m = orders_entry(0);
    assert_eq!(
        (&m["deleted"], &m["updated"], &m["inserted"]),
        (&Value::from(3), &Value::from(2), &Value::from(2)),
        "{v}"
    );
    let u = orders_entry(1);
    assert_eq!(
        (&u["updated"], &u["inserted"]),
        (&Value::from(1), &Value::from(1)),
        "{v}"
    );
    a.batch_execute(&g("COMMIT PREPARED 'review_t-merge'"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(orders(&w), 10);
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE note IN ('merged', 'new', 'up')"
        ),
        6
    );
}
