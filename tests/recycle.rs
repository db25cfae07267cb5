//! The recycle bin: an agent's DROP DATABASE, even one a human approved,
//! keeps the database (renamed, closed to connections) for the retention
//! period; an approver restores it whole, or purges it; the audit writer
//! drops it for good once it expires. Sessions that are not agents drop.

use aas_integration::*;

use std::time::{Duration, Instant};

/// A content hash of the orders (and how many tables the database has).
fn fingerprint(db: &str) -> (String, i64) {
    let mut c = admin(db);
    let h: String = c
        .query_one(
            "SELECT md5(string_agg(id::text || ':' || note, ',' ORDER BY id)) FROM public.orders",
            &[],
        )
        .unwrap()
        .get(0);
    (
        h,
        count(
            &mut c,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        ),
    )
}

fn database_exists(name: &str) -> bool {
    count(
        &mut admin("postgres"),
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    ) == 1
}

/// A world whose protected database (require_approval on) the agent owns,
/// as in the incident: elevated enough to drop it.
fn world(tag: &str) -> World {
    let w = World::new(tag);
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {}",
            w.protected, w.agent
        ))
        .unwrap();
    w
}

/// The agent's DROP DATABASE of the protected database, from the open one,
/// approved by `approver`; returns the NOTICEs it got.
fn approved_drop(w: &World, approver: &str, with: &str) -> Vec<String> {
    let (mut agent, notices) = connect_with_notices(&w.agent, &w.open);
    let token: String = agent
        .query_one(
            &format!(
                "SELECT ai_agent_safety.request_approval_token('DROP', 'cleanup-unused-dbs', 'DATABASE {}')::text",
                w.protected
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("request: {}", describe(&e)))
        .get(0);
    connect(approver, &w.open)
        .query_one(
            "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'looks unused')",
            &[&token],
        )
        .unwrap_or_else(|e| panic!("grant: {}", describe(&e)));
    agent
        .batch_execute(&format!(
            "DROP DATABASE {}{with} /*ai_agent_safety_token='{token}'*/",
            w.protected
        ))
        .unwrap_or_else(|e| panic!("DROP DATABASE: {}", describe(&e)));
    let n = notices.lock().unwrap().clone();
    n
}

/// The entry of `object` in the recycle bin, as an approver in `db` reads it:
/// (id, kept_as, dropped_by, task).
fn entry(approver: &str, db: &str, object: &str) -> Option<(i64, String, String, Option<String>)> {
    connect(approver, db)
        .query_opt(
            "SELECT id, COALESCE(kept_as, ''), dropped_by, task_id FROM ai_agent_safety.recycle_bin WHERE object = $1",
            &[&object],
        )
        .unwrap_or_else(|e| panic!("recycle_bin: {}", describe(&e)))
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

/// The incident's worst case: a human approves the agent's DROP DATABASE
/// of production. The database is kept, its name free at once and no one
/// can connect; one restore_dropped brings it back with every table and
/// row, connectable again.
#[test]
fn an_approved_drop_database_is_kept_and_one_restore_brings_it_back_whole() {
    let w = world("rb_incident");
    let approver = new_approver("rb_incident");
    let before = fingerprint(&w.protected);
    let notices = approved_drop(&w, &approver, "");
    assert!(
        notices.iter().any(|n| n.starts_with(&format!(
            "database {} was moved to the recycle bin as entry ",
            w.protected
        )) && n.contains(
            "for 7 days; an approver can restore it with SELECT ai_agent_safety.restore_dropped("
        )),
        "{notices:?}"
    );
    // The name is free at once, and the kept database accepts no one.
    assert!(!database_exists(&w.protected));
    // Seen from any database with the extension, not only the DROP's.
    let (id, kept_as, by, task) = entry(&approver, "postgres", &w.protected).expect("an entry");
    assert_eq!(
        (by.as_str(), task.as_deref()),
        (w.agent.as_str(), Some("cleanup-unused-dbs"))
    );
    let Err(e) = try_connect("postgres", &kept_as) else {
        panic!("connected to the kept database");
    };
    assert!(
        describe(&e).contains("is not currently accepting connections"),
        "{}",
        describe(&e)
    );
    let said: String = connect(&approver, "postgres")
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("restore: {}", describe(&e)))
        .get(0);
    assert!(
        said.contains(&format!(
            "restored database {} (recycle bin entry {id}",
            w.protected
        )),
        "{said}"
    );
    assert_eq!(fingerprint(&w.protected), before);
    // Its owner again.
    let owner: String = admin("postgres")
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&w.protected],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner, w.agent);
    // With its own settings: still protected.
    let on: String = admin(&w.protected)
        .query_one("SHOW ai_agent_safety.require_approval", &[])
        .unwrap()
        .get(0);
    assert_eq!(on, "on");
    assert!(entry(&approver, "postgres", &w.protected).is_none());
    // Connectable again, by the agent too (its own database).
    w.agent_in(&w.protected).batch_execute("SELECT 1").unwrap();
    // Each step is in the audit log.
    let mut a = admin(&w.open);
    let start = Instant::now();
    loop {
        let events: Vec<String> = a
            .query(
                "SELECT event FROM ai_agent_safety.audit_log WHERE source = 'recycle' AND object = $1 ORDER BY id",
                &[&w.protected],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if events == ["kept"] {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{events:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut p = admin("postgres");
    let start = Instant::now();
    while count(
        &mut p,
        &format!(
            "SELECT count(*) FROM ai_agent_safety.audit_log WHERE source = 'recycle' AND event = 'restored' AND object = '{}'",
            w.protected
        ),
    ) != 1
    {
        assert!(start.elapsed() < Duration::from_secs(30), "no restored event");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Without the recycle bin (recycle_retention = 0), and for a session that
/// is not an agent's, DROP DATABASE drops for good: nothing is kept.
#[test]
fn without_the_bin_or_by_a_dba_a_drop_is_for_good() {
    let w = world("rb_off");
    let approver = new_approver("rb_off");
    // Off where the DROP runs only: the dropped database's own default
    // (7 days) still keeps it.
    let mut su = admin("postgres");
    su.batch_execute(&format!(
        "ALTER DATABASE {} SET ai_agent_safety.recycle_retention = 0",
        w.open
    ))
    .unwrap();
    let spare = unique("rb_off_spare");
    su.batch_execute(&format!("CREATE DATABASE {spare} OWNER {}", w.agent))
        .unwrap();
    w.agent_in(&w.open)
        .batch_execute(&format!("DROP DATABASE {spare}"))
        .unwrap();
    assert!(entry(&approver, "postgres", &spare).is_some());
    // Off for the dropped database too: gone for good.
    su.batch_execute(&format!(
        "ALTER DATABASE {} SET ai_agent_safety.recycle_retention = 0",
        w.protected
    ))
    .unwrap();
    approved_drop(&w, &approver, "");
    assert!(!database_exists(&w.protected));
    assert!(entry(&approver, "postgres", &w.protected).is_none());
    assert_eq!(
        count(
            &mut admin("postgres"),
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'recycled\\_%\\_{}'",
                w.protected
            )
        ),
        0
    );
    // A DBA's DROP drops.
    let x = unique("rb_dba_db");
    let mut su = admin("postgres");
    su.batch_execute(&format!("CREATE DATABASE {x}")).unwrap();
    su.batch_execute(&format!("DROP DATABASE {x}")).unwrap();
    assert!(entry(&approver, "postgres", &x).is_none());
    // The agent cannot turn the bin off for itself.
    let e = w
        .agent_in(&w.open)
        .batch_execute("SET ai_agent_safety.recycle_retention = 0")
        .unwrap_err();
    assert!(
        describe(&e).contains("recycle_retention"),
        "{}",
        describe(&e)
    );
}

/// DROP DATABASE ... WITH (FORCE) ends the sessions there, as PostgreSQL's
/// does, and keeps the database; a plain DROP with someone connected is
/// refused in PostgreSQL's words, and nothing changes.
#[test]
fn with_force_the_sessions_end_and_the_database_is_kept() {
    let w = world("rb_force");
    let approver = new_approver("rb_force");
    let mut there = w.agent_in(&w.protected);
    there.batch_execute("SELECT 1").unwrap();
    let mut agent = w.agent_in(&w.open);
    let e = agent
        .batch_execute(&format!(
            "DROP DATABASE {}",
            w.open.replace("_dev", "_nosuch")
        ))
        .unwrap_err();
    assert!(describe(&e).contains("does not exist"), "{}", describe(&e));
    approved_drop(&w, &approver, " WITH (FORCE)");
    assert!(
        there.batch_execute("SELECT 1").is_err(),
        "the session there ended"
    );
    assert!(entry(&approver, &w.open, &w.protected).is_some());
}

/// A restore under a name taken since, or of an entry that is gone, is
/// refused and says what to do; purge_dropped drops the database for good.
#[test]
fn a_taken_name_needs_new_name_and_purge_is_for_good() {
    let w = world("rb_taken");
    let approver = new_approver("rb_taken");
    approved_drop(&w, &approver, "");
    let (id, kept_as, _, _) = entry(&approver, &w.open, &w.protected).unwrap();
    admin("postgres")
        .batch_execute(&format!("CREATE DATABASE {}", w.protected))
        .unwrap();
    let mut a = connect(&approver, &w.open);
    let e = a
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_err();
    let d = describe(&e);
    assert!(d.contains("that name is taken now"), "{d}");
    assert!(d.contains("new_name =>"), "{d}");
    assert_eq!(e.code().unwrap().code(), "42P04");
    let back = format!("{}_back", w.protected);
    a.query_one(
        "SELECT ai_agent_safety.restore_dropped($1, new_name => $2)",
        &[&id, &back],
    )
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(database_exists(&back));
    let e = a
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_err();
    assert!(
        describe(&e).contains(&format!("recycle bin entry {id} does not exist")),
        "{}",
        describe(&e)
    );
    // Dropped again (by the agent, from the open database), then purged.
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {back} OWNER TO {}; ALTER DATABASE {back} RESET ai_agent_safety.require_approval",
            w.agent
        ))
        .unwrap();
    w.agent_in(&w.open)
        .batch_execute(&format!("DROP DATABASE {back}"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (id2, kept2, _, _) = entry(&approver, &w.open, &back).unwrap();
    assert_ne!(kept2, kept_as);
    let said: String = a
        .query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&id2])
        .unwrap_or_else(|e| panic!("purge: {}", describe(&e)))
        .get(0);
    assert!(said.contains("is gone for good"), "{said}");
    assert!(!database_exists(&kept2));
    assert!(entry(&approver, &w.open, &back).is_none());
}

/// A purge is carried out by a worker connected to the database
/// purge_dropped was called in: closed to new connections meanwhile
/// (ALLOW_CONNECTIONS false), it still is.
#[test]
fn a_purge_from_a_database_closed_to_connections_is_carried_out() {
    let w = world("rb_purge_closed");
    let approver = new_approver("rb_purge_closed");
    approved_drop(&w, &approver, "");
    let (id, kept_as, _, _) = entry(&approver, &w.open, &w.protected).unwrap();
    let mut a = connect(&approver, &w.open);
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            w.open
        ))
        .unwrap();
    let said = a.query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&id]);
    admin("postgres")
        .batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", w.open))
        .unwrap();
    let said: String = said
        .unwrap_or_else(|e| panic!("purge: {}", describe(&e)))
        .get(0);
    assert!(said.contains("is gone for good"), "{said}");
    assert!(!database_exists(&kept_as));
}

/// Agents can neither read, restore nor purge the recycle bin: not by
/// privilege, and not even as members of ai_agent_approver.
#[test]
fn agents_cannot_read_restore_or_purge_the_bin() {
    let w = world("rb_agent");
    let approver = new_approver("rb_agent");
    approved_drop(&w, &approver, "");
    let (id, kept_as, _, _) = entry(&approver, &w.open, &w.protected).unwrap();
    let mut agent = w.agent_in(&w.open);
    // The kept database is no longer the agent's: it cannot reopen,
    // rename or drop it (an owner could, and then destroy its contents).
    for sql in [
        format!("ALTER DATABASE {kept_as} WITH ALLOW_CONNECTIONS true"),
        format!("ALTER DATABASE {kept_as} RENAME TO {}_again", w.protected),
        format!("DROP DATABASE {kept_as}"),
    ] {
        let e = agent.batch_execute(&sql).unwrap_err();
        assert_eq!(e.code().unwrap().code(), "42501", "{sql}: {}", describe(&e));
    }
    // (By PostgreSQL itself: not its owner, even where nothing is protected.)
    let e = agent
        .batch_execute(&format!(
            "ALTER DATABASE {kept_as} WITH ALLOW_CONNECTIONS true"
        ))
        .unwrap_err();
    assert!(
        describe(&e).contains("must be owner of database"),
        "{}",
        describe(&e)
    );
    for sql in [
        "SELECT * FROM ai_agent_safety.recycle_bin".to_string(),
        format!("SELECT ai_agent_safety.restore_dropped({id})"),
        format!("SELECT ai_agent_safety.purge_dropped({id})"),
    ] {
        let e = agent.batch_execute(&sql).unwrap_err();
        assert_eq!(e.code().unwrap().code(), "42501", "{sql}: {}", describe(&e));
    }
    // An agent that is also an approver is refused by the extension.
    admin("postgres")
        .batch_execute(&format!("GRANT ai_agent_approver TO {}", w.agent))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    for sql in [
        "SELECT * FROM ai_agent_safety.recycle_bin".to_string(),
        format!("SELECT ai_agent_safety.restore_dropped({id})"),
        format!("SELECT ai_agent_safety.purge_dropped({id})"),
    ] {
        let e = assert_refused(agent.batch_execute(&sql));
        assert!(
            e.contains("may not read, restore or purge the recycle bin"),
            "{sql}: {e}"
        );
    }
    assert!(entry(&approver, &w.open, &w.protected).is_some());
}

/// Once the retention has passed, the audit writer of the database the
/// DROP ran from drops the kept database for good, and records it.
#[test]
fn an_expired_entry_is_dropped_by_the_writer() {
    let w = world("rb_expiry");
    let approver = new_approver("rb_expiry");
    let kept_as = kept_for_a_second(&w, &approver);
    expires_and_is_recorded(&w, &kept_as);
}

/// The agent's approved DROP of the protected database, kept for one
/// second (both databases' retention); the kept database's name.
fn kept_for_a_second(w: &World, approver: &str) -> String {
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.recycle_retention = '1s';
             ALTER DATABASE {} SET ai_agent_safety.recycle_retention = '1s';",
            w.open, w.protected
        ))
        .unwrap();
    approved_drop(w, approver, "");
    admin("postgres")
        .query_one(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'recycled\\_%' AND datname LIKE '%' || $1",
            &[&w.protected],
        )
        .unwrap()
        .get(0)
}

/// The kept database goes at its expiry, recorded once.
fn expires_and_is_recorded(w: &World, kept_as: &str) {
    let mut open = admin(&w.open);
    wait_for_expiry(&mut open, "the kept database", || database_exists(kept_as));
    wait_for_count(
        &mut open,
        &format!(
            "SELECT count(*) FROM ai_agent_safety.audit_log WHERE source = 'recycle' AND event = 'expired' AND object = '{}'",
            w.protected
        ),
        1,
    );
}

/// Lines of the server log that contain `text` (the test cluster logs to
/// server.log in its data directory).
fn server_log_lines(text: &str) -> usize {
    let bytes: Vec<u8> = admin("postgres")
        .query_one("SELECT pg_catalog.pg_read_binary_file('server.log')", &[])
        .unwrap()
        .get(0);
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

/// A session holding a lock on a kept database (here a superuser's COMMENT
/// ON DATABASE in a transaction left open: a kept database is the
/// bootstrap superuser's, closed to connections, so an agent that owned it
/// cannot) would have held its expiry's DROP DATABASE in the audit writer,
/// and every event of the writer's database behind it (an adversary found
/// that way through a kept sequence). The expiry takes the lock only if it
/// is free, leaves the entry for a later pass, and the writer goes on; the
/// database goes once the lock is gone.
#[test]
fn a_lock_on_a_kept_database_holds_up_neither_its_expiry_nor_the_writer() {
    let w = world("rb_dblock");
    let approver = new_approver("rb_dblock");
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.audit_level = 'all'",
            w.open
        ))
        .unwrap();
    let kept_as = kept_for_a_second(&w, &approver);
    // The agent's reads keep the writer busy (an idle one retires).
    let mut reader = connect(&w.agent, &w.open);
    let mut holder = admin("postgres");
    holder
        .batch_execute(&format!("BEGIN; COMMENT ON DATABASE {kept_as} IS 'held'"))
        .unwrap_or_else(|e| panic!("COMMENT: {}", describe(&e)));
    // The writer of the database the DROP came from tries the expiry once
    // a second: twice, and the same writer is there after both.
    let said = format!("another session holds a lock on database {kept_as}");
    let mut open = admin(&w.open);
    let start = Instant::now();
    let mut writer = None;
    while server_log_lines(&said) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the expiry was not tried twice in 30 s"
        );
        reader.batch_execute("SELECT 1").unwrap();
        if writer.is_none() && server_log_lines(&said) == 1 {
            writer = Some(writer_of(&mut open, &w.open));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let writer = writer.unwrap_or_else(|| writer_of(&mut open, &w.open));
    assert!(database_exists(&kept_as), "kept while locked");
    assert_eq!(writer_of(&mut open, &w.open), writer, "the same writer");
    holder.batch_execute("ROLLBACK").unwrap();
    expires_and_is_recorded(&w, &kept_as);
}

/// The pid of a database's audit writer (one must be running).
fn writer_of(c: &mut postgres::Client, db: &str) -> i32 {
    c.query_one(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ai_agent_safety audit writer' AND datname = $1",
        &[&db],
    )
    .unwrap_or_else(|e| panic!("the writer of {db}: {}", describe(&e)))
    .get(0)
}

/// The dropped database's own retention counts too: an agent that drops
/// from a database where the bin is off still has its drop kept, when the
/// dropped database keeps. A missing database is said so by the extension
/// (never left to PostgreSQL's DROP, which would drop a database that took
/// the name meanwhile).
#[test]
fn the_dropped_databases_own_retention_counts_and_a_missing_one_is_said() {
    let w = world("rb_target");
    let approver = new_approver("rb_target");
    let mut su = admin("postgres");
    su.batch_execute(&format!(
        "ALTER DATABASE {} SET ai_agent_safety.recycle_retention = 0;
         ALTER DATABASE {} SET ai_agent_safety.recycle_retention = '30d';",
        w.open, w.protected
    ))
    .unwrap();
    let notices = approved_drop(&w, &approver, "");
    assert!(
        notices.iter().any(|n| n.contains("for 30 days")),
        "{notices:?}"
    );
    assert!(entry(&approver, &w.open, &w.protected).is_some());
    let (mut agent, notices) = connect_with_notices(&w.agent, &w.open);
    agent
        .batch_execute(&format!("DROP DATABASE IF EXISTS {}", w.protected))
        .unwrap();
    assert_eq!(
        notices.lock().unwrap().last().map(String::as_str),
        Some(format!("database \"{}\" does not exist, skipping", w.protected).as_str())
    );
    let e = agent
        .batch_execute(&format!("DROP DATABASE {}", w.protected))
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "3D000", "{}", describe(&e));
}

/// A restore rolled back to a savepoint leaves the entry held and listed,
/// restorable later.
#[test]
fn a_restore_rolled_back_to_a_savepoint_keeps_the_entry() {
    let w = world("rb_savepoint");
    let approver = new_approver("rb_savepoint");
    approved_drop(&w, &approver, "");
    let (id, _, _, _) = entry(&approver, &w.open, &w.protected).unwrap();
    let mut a = connect(&approver, &w.open);
    a.batch_execute(&format!(
        "BEGIN; SAVEPOINT s; SELECT ai_agent_safety.restore_dropped({id}); ROLLBACK TO SAVEPOINT s; COMMIT;"
    ))
    .unwrap();
    assert!(!database_exists(&w.protected));
    assert!(entry(&approver, &w.open, &w.protected).is_some());
    // A restore cannot be prepared (what it removes at commit would
    // outlive the transaction's fate): refused with an ERROR, the entry
    // kept, the session still usable.
    let msg = describe(
        &a.batch_execute(&format!(
            "BEGIN; SELECT ai_agent_safety.restore_dropped({id}); PREPARE TRANSACTION 'rb_savepoint_prep';"
        ))
        .unwrap_err(),
    );
    assert!(msg.contains("cannot be prepared"), "{msg}");
    a.batch_execute("ROLLBACK").unwrap();
    assert!(!database_exists(&w.protected));
    assert!(entry(&approver, &w.open, &w.protected).is_some());
    a.query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(database_exists(&w.protected));
}

/// Orders with their lines (a foreign key) in the open database, the
/// agent's own tables.
fn truncate_world(tag: &str) -> World {
    let w = World::new(tag);
    admin(&w.open)
        .batch_execute(&format!(
            "ALTER TABLE public.orders OWNER TO {agent};
             CREATE TABLE public.order_lines (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 order_id int NOT NULL REFERENCES public.orders, qty int, total int GENERATED ALWAYS AS (qty * 10) STORED);
             INSERT INTO public.order_lines (order_id, qty) SELECT 1 + g % 10, g FROM generate_series(1, 30) g;
             ALTER TABLE public.order_lines OWNER TO {agent};",
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    w
}

/// Everything in the two tables, as text: compared with EXCEPT both ways.
fn both_tables(db: &str) -> String {
    admin(db)
        .query_one(
            "SELECT md5((SELECT string_agg(o::text, ',' ORDER BY id) FROM orders o) || '|' ||
                        (SELECT string_agg(l::text, ',' ORDER BY id) FROM order_lines l))",
            &[],
        )
        .unwrap()
        .get(0)
}

/// An agent's TRUNCATE ... CASCADE (in a database that does not require
/// approval) keeps the rows of every table it empties; a restore puts them
/// back (identity and generated columns as they were), and the bin lists
/// it until then; rows of a TRUNCATE that rolled back are not kept.
#[test]
fn a_truncate_cascade_is_kept_and_restored_whole() {
    let w = truncate_world("rb_trunc");
    let approver = new_approver("rb_trunc");
    let before = both_tables(&w.open);
    // Rolled back: nothing kept.
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute("BEGIN; TRUNCATE orders CASCADE; ROLLBACK;")
        .unwrap();
    assert!(entry(&approver, &w.open, "public.orders, public.order_lines").is_none());
    let (mut agent, notices) = connect_with_notices(&w.agent, &w.open);
    agent.batch_execute("TRUNCATE orders CASCADE").unwrap();
    assert!(
        notices.lock().unwrap().iter().any(|n| n.starts_with(
            "the 40 rows of public.orders, public.order_lines were kept in the recycle bin as entry "
        )),
        "{notices:?}"
    );
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM order_lines"),
        0
    );
    let (id, _, by, _) = entry(&approver, &w.open, "public.orders, public.order_lines").unwrap();
    assert_eq!(by, w.agent);
    // The agent cannot read the kept rows.
    let copy: String = admin(&w.open)
        .query_one(
            "SELECT tables->0->>'copy' FROM ai_agent_safety.recycled_rows WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    let e = agent
        .batch_execute(&format!("SELECT * FROM {copy}"))
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501", "{}", describe(&e));
    // A row that would clash: the restore is refused whole, and says why.
    admin(&w.open)
        .batch_execute("INSERT INTO orders VALUES (3, 'new order 3')")
        .unwrap();
    let mut a = connect(&approver, &w.open);
    let e = a
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_err();
    assert!(
        describe(&e).contains("Key (id)=(3) already exists"),
        "{}",
        describe(&e)
    );
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM order_lines"),
        0
    );
    admin(&w.open).batch_execute("DELETE FROM orders").unwrap();
    let said: String = a
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert!(said.contains("40 rows back"), "{said}");
    assert_eq!(both_tables(&w.open), before);
    assert!(entry(&approver, &w.open, "public.orders, public.order_lines").is_none());
    // A DBA's TRUNCATE keeps nothing.
    admin(&w.open)
        .batch_execute("TRUNCATE orders CASCADE")
        .unwrap();
    assert!(entry(&approver, &w.open, "public.orders, public.order_lines").is_none());
}

/// An agent's TRUNCATE of a table it may not truncate is refused before
/// the table is locked, as PostgreSQL refuses it: it neither waits for
/// (and holds up) a lock on someone else's table, nor has the table's rows
/// copied for the bin, nor learns how many there are.
#[test]
fn a_truncate_without_the_privilege_takes_no_lock_and_keeps_nothing() {
    let w = truncate_world("rb_trunc_priv");
    let mut dba = admin(&w.open);
    dba.batch_execute(
        "CREATE TABLE public.payroll (id int PRIMARY KEY, amount int);
         INSERT INTO public.payroll SELECT g, g FROM generate_series(1, 25) g;",
    )
    .unwrap();
    // A session reading the table holds a lock on it until it commits.
    let mut reader = admin(&w.open);
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM public.payroll;")
        .unwrap();
    let (mut agent, notices) = connect_with_notices(&w.agent, &w.open);
    agent.batch_execute("SET lock_timeout = '5s'").unwrap();
    // A role the extension does not protect gets PostgreSQL's refusal at
    // once: the privilege is checked before the lock is asked for.
    let plain_role = unique("rb_trunc_plain");
    dba.batch_execute(&format!("CREATE ROLE {plain_role} LOGIN"))
        .unwrap();
    let mut plain = connect(&plain_role, &w.open);
    plain.batch_execute("SET lock_timeout = '5s'").unwrap();
    let msg = assert_refused(plain.batch_execute("TRUNCATE public.payroll"));
    assert!(msg.contains("permission denied for table payroll"), "{msg}");
    // The agent gets the same, not a lock timeout, and no notice of rows kept.
    let msg = assert_refused(agent.batch_execute("TRUNCATE public.payroll"));
    assert!(msg.contains("permission denied for table payroll"), "{msg}");
    assert!(!msg.contains("recycle"), "{msg}");
    assert!(
        notices.lock().unwrap().is_empty(),
        "{:?}",
        notices.lock().unwrap()
    );
    reader.batch_execute("COMMIT").unwrap();
    assert_eq!(count(&mut dba, "SELECT count(*) FROM public.payroll"), 25);
    // A view the agent was granted everything on is not a table: refused
    // before it is locked too, while another session reads it.
    dba.batch_execute(&format!(
        "CREATE VIEW public.payroll_v AS SELECT * FROM public.payroll;
         GRANT ALL ON public.payroll_v TO {agent}, {plain_role};",
        agent = w.agent
    ))
    .unwrap();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM public.payroll_v;")
        .unwrap();
    let msg = assert_sqlstate(plain.batch_execute("TRUNCATE public.payroll_v"), "42809");
    assert!(msg.contains("\"payroll_v\" is not a table"), "{msg}");
    let msg = assert_sqlstate(agent.batch_execute("TRUNCATE public.payroll_v"), "42809");
    assert!(msg.contains("\"payroll_v\" is not a table"), "{msg}");
    reader.batch_execute("COMMIT").unwrap();
    // A table CASCADE would add, which the agent may not truncate: refused
    // as PostgreSQL refuses it, before any of its rows is copied.
    dba.batch_execute(&format!(
        "CREATE TABLE public.payslips (id int PRIMARY KEY REFERENCES public.orders, amount int);
         INSERT INTO public.payslips SELECT id, id FROM public.orders;
         GRANT ALL ON public.orders, public.order_lines TO {plain_role};",
    ))
    .unwrap();
    let msg = assert_refused(plain.batch_execute("TRUNCATE public.orders CASCADE"));
    assert!(
        msg.contains("permission denied for table payslips"),
        "{msg}"
    );
    let msg = assert_refused(agent.batch_execute("TRUNCATE public.orders CASCADE"));
    assert!(
        msg.contains("permission denied for table payslips"),
        "{msg}"
    );
    assert!(
        notices.lock().unwrap().is_empty(),
        "{:?}",
        notices.lock().unwrap()
    );
    assert!(count(&mut dba, "SELECT count(*) FROM public.payslips") > 0);
    assert!(entry(
        &new_approver("rb_trunc_casc"),
        &w.open,
        "public.orders, public.payslips"
    )
    .is_none());
    assert!(entry(&new_approver("rb_trunc_priv"), &w.open, "public.payroll").is_none());
}

/// The table an agent's TRUNCATE empties is the table whose rows were kept,
/// even when the name would find another table by the time the copy is
/// done. The agent stalls its own TRUNCATE on a lock it holds (on a child
/// of the table its name finds first), takes away its own USAGE on that
/// table's schema, and lets the TRUNCATE go on: PostgreSQL's own lookup of
/// the unqualified name would then find the other table in its search_path,
/// whose rows were never kept.
#[test]
fn a_truncate_empties_only_the_table_it_kept_when_the_name_moves_meanwhile() {
    let w = World::new("rb_trunc_swap");
    let mut dba = admin(&w.open);
    dba.batch_execute(&format!(
        "CREATE SCHEMA prod; CREATE TABLE prod.t (id int);
         INSERT INTO prod.t SELECT generate_series(1, 50);
         GRANT USAGE ON SCHEMA prod TO {a}; GRANT TRUNCATE, SELECT ON prod.t TO {a};
         CREATE SCHEMA mys AUTHORIZATION {a};
         CREATE TABLE mys.t (id int); CREATE TABLE mys.tc () INHERITS (mys.t);
         ALTER TABLE mys.t OWNER TO {a}; ALTER TABLE mys.tc OWNER TO {a};",
        a = w.agent
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // The agent holds a lock on the child in one session...
    let mut holder = w.agent_in(&w.open);
    holder
        .batch_execute("BEGIN; LOCK mys.tc IN ACCESS SHARE MODE")
        .unwrap();
    // ...so that its TRUNCATE in another, having found mys.t, waits there.
    let truncate = truncate_waiting(
        &mut dba,
        &w,
        "rb_trunc_swap",
        "SET search_path = mys, prod; TRUNCATE t",
    );
    // Now the name t would find prod.t: the agent takes its USAGE on mys away.
    w.agent_in(&w.open)
        .batch_execute(&format!("REVOKE USAGE ON SCHEMA mys FROM {}", w.agent))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    holder.batch_execute("COMMIT").unwrap();
    let result = truncate.join().unwrap();
    // prod.t, whose rows were never kept, is not emptied; the TRUNCATE is
    // refused (the table it kept is no longer reachable by its name).
    assert_eq!(
        count(&mut dba, "SELECT count(*) FROM prod.t"),
        50,
        "{result:?}"
    );
    let (code, msg) = result.expect_err("the TRUNCATE went through");
    assert_eq!(code, "42501", "{msg}");
    assert!(entry(&new_approver("rb_trunc_swap"), &w.open, "prod.t").is_none());
}

/// Runs `sql` as the agent in a session of its own (named
/// `application_name`), and returns once that session waits for a lock:
/// the result is the statement's SQLSTATE and message when it fails.
fn truncate_waiting(
    dba: &mut postgres::Client,
    w: &World,
    application_name: &str,
    sql: &str,
) -> std::thread::JoinHandle<Result<(), (String, String)>> {
    let (agent, db) = (w.agent.clone(), w.open.clone());
    let (name, sql) = (application_name.to_string(), sql.to_string());
    let handle = std::thread::spawn(move || {
        let mut c = connect(&agent, &db);
        c.batch_execute(&format!("SET application_name = '{name}'"))
            .unwrap();
        c.batch_execute(&sql).map_err(|e| {
            e.as_db_error()
                .map(|d| (d.code().code().to_string(), describe(&e)))
                .unwrap_or_default()
        })
    });
    waits_for_a_lock(dba, application_name);
    handle
}

/// Until the session with this application_name waits for a lock.
fn waits_for_a_lock(dba: &mut postgres::Client, application_name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(
        dba,
        &format!(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity
              WHERE application_name = '{application_name}' AND wait_event_type = 'Lock'"
        ),
    ) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the TRUNCATE never waited for the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The same swap through a table with no rows of its own (partitioned, its
/// only partition partitioned too): nothing is copied, and the name must
/// still find the table it found. The agent renames its own schemas while
/// its TRUNCATE waits for the partition's lock.
#[test]
fn a_truncate_that_keeps_nothing_empties_no_table_when_a_schema_is_renamed_meanwhile() {
    let w = World::new("rb_trunc_ren");
    let mut dba = admin(&w.open);
    dba.batch_execute(&format!(
        "GRANT CREATE ON DATABASE {db} TO {a};
         CREATE SCHEMA app AUTHORIZATION {a}; CREATE SCHEMA scratch AUTHORIZATION {a};
         CREATE TABLE app.x (id int); INSERT INTO app.x SELECT generate_series(1, 50);
         CREATE TABLE scratch.x (id int) PARTITION BY LIST (id);
         CREATE TABLE scratch.x_sub PARTITION OF scratch.x FOR VALUES IN (1) PARTITION BY LIST (id);
         ALTER TABLE app.x OWNER TO {a}; ALTER TABLE scratch.x OWNER TO {a};
         ALTER TABLE scratch.x_sub OWNER TO {a};",
        db = w.open,
        a = w.agent
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut holder = w.agent_in(&w.open);
    holder
        .batch_execute("BEGIN; LOCK scratch.x_sub IN ACCESS SHARE MODE")
        .unwrap();
    let truncate = truncate_waiting(&mut dba, &w, "rb_trunc_ren", "TRUNCATE scratch.x");
    // scratch.x now names the table that was app.x.
    w.agent_in(&w.open)
        .batch_execute(
            "ALTER SCHEMA scratch RENAME TO scratch_old; ALTER SCHEMA app RENAME TO scratch",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    holder.batch_execute("COMMIT").unwrap();
    let result = truncate.join().unwrap();
    assert_eq!(
        count(&mut dba, "SELECT count(*) FROM scratch.x"),
        50,
        "{result:?}"
    );
    let (code, msg) = result.expect_err("the TRUNCATE went through");
    assert_eq!(code, "42501", "{msg}");
    assert!(msg.contains("scratch_old.x"), "{msg}");
}

/// Another session's temporary child of a table: PostgreSQL's TRUNCATE
/// leaves it alone (no backend can read another's temporary tables), and an
/// agent's TRUNCATE, whose rows are kept first, does the same instead of
/// failing on it.
#[test]
fn an_agents_truncate_leaves_another_sessions_temporary_child_alone() {
    let w = World::new("rb_trunc_tmp");
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE TABLE public.par (id int); INSERT INTO public.par SELECT generate_series(1, 5);
             ALTER TABLE public.par OWNER TO {a};",
            a = w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut other = w.agent_in(&w.open);
    other
        .batch_execute(
            "CREATE TEMP TABLE tmp_child () INHERITS (public.par);
             INSERT INTO tmp_child SELECT generate_series(100, 102)",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    w.agent_in(&w.open)
        .batch_execute("TRUNCATE public.par")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM ONLY public.par"),
        0
    );
    assert_eq!(count(&mut other, "SELECT count(*) FROM tmp_child"), 3);
    let approver = new_approver("rb_trunc_tmp");
    let (id, _, _, _) = entry(&approver, &w.open, "public.par").expect("kept");
    let rows: i64 = connect(&approver, &w.open)
        .query_one(
            "SELECT rows FROM ai_agent_safety.recycle_bin WHERE id = $1",
            &[&id],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert_eq!(rows, 5);
}

/// An agent that may TRUNCATE a table but not read it learns from the
/// NOTICE that its rows were kept, not how many (PostgreSQL's TRUNCATE
/// tells no count); one that may read it is told the count.
#[test]
fn the_kept_rows_count_is_told_only_to_who_may_read_the_table() {
    let w = World::new("rb_trunc_count");
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE TABLE public.secret (id int); INSERT INTO public.secret SELECT generate_series(1, 7);
             GRANT TRUNCATE ON public.secret TO {a};
             CREATE TABLE public.open_t (id int); INSERT INTO public.open_t SELECT generate_series(1, 4);
             GRANT TRUNCATE, SELECT ON public.open_t TO {a};",
            a = w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (mut c, notices) = connect_with_notices(&w.agent, &w.open);
    c.batch_execute("TRUNCATE public.secret")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    c.batch_execute("TRUNCATE public.open_t")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let seen = notices.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|n| n.starts_with("the rows of public.secret were kept")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|n| n.starts_with("the 4 rows of public.open_t were kept")),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|n| n.contains("7 rows")), "{seen:?}");
}

/// A purge drops the kept rows now; the writer drops expired ones.
#[test]
fn kept_rows_are_purged_or_expire() {
    let w = truncate_world("rb_truncx");
    let approver = new_approver("rb_truncx");
    let mut agent = w.agent_in(&w.open);
    agent.batch_execute("TRUNCATE order_lines").unwrap();
    let (id, _, _, _) = entry(&approver, &w.open, "public.order_lines").unwrap();
    let said: String = connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert!(said.contains("are gone for good"), "{said}");
    assert_eq!(
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace"
        ),
        0
    );
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.recycle_retention = '1s'",
            w.open
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent.batch_execute("TRUNCATE orders CASCADE").unwrap();
    let mut open = admin(&w.open);
    wait_for_expiry(&mut open, "the kept rows", || {
        entry(&approver, &w.open, "public.orders, public.order_lines").is_some()
    });
    wait_for_count(
        &mut open,
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE source = 'recycle' AND event = 'expired' AND operation = 'TRUNCATE' AND object = 'public.orders, public.order_lines'",
        1,
    );
}

/// The schema that holds kept rows is the bootstrap superuser's: an agent
/// may not make it first, and when someone else did, an agent's TRUNCATE
/// is refused (its rows would be kept where that role reaches them).
#[test]
fn the_schema_of_kept_rows_cannot_be_planted() {
    let w = truncate_world("rb_plant");
    admin("postgres")
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {} TO {}",
            w.open, w.agent
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    // Where nothing guards it, PostgreSQL lets a role with CREATE make it.
    let x = unique("rb_plant_x");
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE ROLE {x}; GRANT CREATE ON DATABASE {} TO {x}",
            w.open
        ))
        .unwrap();
    let e = assert_refused(agent.batch_execute("CREATE SCHEMA ai_agent_safety_recycle"));
    assert!(e.contains("it is a name of the ai_agent_safety API"), "{e}");
    admin(&w.open)
        .batch_execute(&format!(
            // The schema is made by CREATE EXTENSION; a DBA dropped it.
            "DROP SCHEMA ai_agent_safety_recycle;
             SET ROLE {x}; CREATE SCHEMA ai_agent_safety_recycle; RESET ROLE;"
        ))
        .unwrap();
    let e = assert_refused(agent.batch_execute("TRUNCATE order_lines"));
    assert!(
        e.contains(&format!("schema ai_agent_safety_recycle belongs to role \"{x}\", not to the bootstrap superuser, so what the statement removes cannot be kept where only superusers reach it; nothing was truncated")),
        "{e}"
    );
    assert!(
        e.contains("DROP SCHEMA ai_agent_safety_recycle CASCADE;"),
        "{e}"
    );
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM order_lines"),
        30
    );
}

/// A schema of the bin's name that someone made before the extension
/// (PostgreSQL lets any role with CREATE on the database make it) stops
/// CREATE EXTENSION with a DBA's next step, instead of becoming the bin;
/// a DBA's default privileges for new schemas never reach the bin, and a
/// grant on it made later refuses an agent's keeping (nothing deleted);
/// an agent cannot make the schema by naming only its AUTHORIZATION role.
#[test]
fn a_planted_or_granted_bin_schema_is_never_used() {
    let db = unique("rb_preplant");
    let x = unique("rb_preplant_x");
    let mut a = admin("postgres");
    for sql in [
        format!("CREATE ROLE {x} LOGIN"),
        format!("CREATE DATABASE {db}"),
        format!("GRANT CREATE ON DATABASE {db} TO {x}"),
    ] {
        a.batch_execute(&sql).unwrap();
    }
    let mut d = admin(&db);
    d.batch_execute(&format!(
        "SET ROLE {x}; CREATE SCHEMA ai_agent_safety_recycle; RESET ROLE;"
    ))
    .unwrap();
    let e = assert_refused(d.batch_execute("CREATE EXTENSION ai_agent_safety"));
    assert!(
        e.contains(&format!("schema ai_agent_safety_recycle already exists and belongs to role {x}, not to the bootstrap superuser")),
        "{e}"
    );
    assert!(
        e.contains("DROP SCHEMA ai_agent_safety_recycle CASCADE;"),
        "{e}"
    );
    // Default privileges: a schema the bootstrap superuser makes grants
    // USAGE to x; the bin does not.
    let boot = bootstrap_name(&mut d);
    d.batch_execute(&format!(
        "DROP SCHEMA ai_agent_safety_recycle;
         ALTER DEFAULT PRIVILEGES FOR ROLE {boot} GRANT USAGE, CREATE ON SCHEMAS TO {x};
         CREATE SCHEMA plain_one;
         CREATE EXTENSION ai_agent_safety;"
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let reach = |d: &mut postgres::Client, schema: &str| -> bool {
        d.query_one(
            "SELECT has_schema_privilege($1, $2, 'USAGE')",
            &[&x.as_str(), &schema],
        )
        .unwrap()
        .get(0)
    };
    assert!(reach(&mut d, "plain_one"));
    assert!(!reach(&mut d, "ai_agent_safety_recycle"));
    // A grant made later: the agent's DELETE is refused, nothing deleted.
    let agent = unique("rb_preplant_agent");
    let until = in_one_hour(&mut a);
    a.batch_execute(&format!(
        "CREATE ROLE {agent} LOGIN IN ROLE ai_agent VALID UNTIL '{until}'"
    ))
    .unwrap();
    d.batch_execute(&format!(
        "CREATE TABLE public.t (id int); INSERT INTO public.t SELECT generate_series(1, 5);
         GRANT ALL ON public.t TO {agent};
         GRANT USAGE ON SCHEMA ai_agent_safety_recycle TO {x};"
    ))
    .unwrap();
    let e = assert_refused(connect(&agent, &db).batch_execute("DELETE FROM t WHERE id = 1"));
    assert!(
        e.contains(&format!("schema ai_agent_safety_recycle grants privileges to {x}, so what the statement removes cannot be kept where only superusers reach it; nothing was deleted")),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "REVOKE ALL ON SCHEMA ai_agent_safety_recycle FROM {x};"
        )),
        "{e}"
    );
    assert_eq!(count(&mut d, "SELECT count(*) FROM t"), 5);
    d.batch_execute(&format!(
        "REVOKE ALL ON SCHEMA ai_agent_safety_recycle FROM {x}"
    ))
    .unwrap();
    connect(&agent, &db)
        .batch_execute("DELETE FROM t WHERE id = 1")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // A store the bootstrap superuser does not own is not one: the next
    // DELETE keeps its rows in a new store, none in x's.
    let store: String = d
        .query_one(
            "SELECT relname::text FROM pg_class WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace AND relkind = 'r'",
            &[],
        )
        .unwrap()
        .get(0);
    d.batch_execute(&format!(
        "ALTER TABLE ai_agent_safety_recycle.{store} OWNER TO {x}"
    ))
    .unwrap();
    connect(&agent, &db)
        .batch_execute("DELETE FROM t WHERE id = 2")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut d,
            &format!("SELECT count(*) FROM ai_agent_safety_recycle.{store}")
        ),
        1
    );
    assert_eq!(
        count(
            &mut d,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace AND relkind = 'r' AND relowner = 10"
        ),
        1
    );
    // CREATE SCHEMA AUTHORIZATION r, no name: the schema is named r.
    let bin_role = "ai_agent_safety_recycle";
    a.batch_execute(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{bin_role}') THEN CREATE ROLE {bin_role}; END IF; END $$;
         GRANT {bin_role} TO {agent}, {x}; GRANT CREATE ON DATABASE {db} TO {agent}"
    ))
    .unwrap();
    // Where nothing guards it (a session that is no agent's), it works.
    d.batch_execute(&format!(
        "DROP SCHEMA ai_agent_safety_recycle CASCADE;
         SET ROLE {x}; CREATE SCHEMA AUTHORIZATION {bin_role}; RESET ROLE;
         DROP SCHEMA ai_agent_safety_recycle;"
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let e = assert_refused(
        connect(&agent, &db).batch_execute(&format!("CREATE SCHEMA AUTHORIZATION {bin_role}")),
    );
    assert!(e.contains("it is a name of the ai_agent_safety API"), "{e}");
    a.batch_execute(&format!("REVOKE {bin_role} FROM {agent}, {x}"))
        .unwrap();
}

/// The bootstrap superuser's name.
fn bootstrap_name(c: &mut postgres::Client) -> String {
    c.query_one("SELECT rolname::text FROM pg_authid WHERE oid = 10", &[])
        .unwrap()
        .get(0)
}

/// A restore runs the table's code as the table's owner, and nothing that
/// code sets outlives it: the restorer's session keeps its search_path. A
/// TRUNCATE under REPEATABLE READ is refused (its copy would miss rows
/// committed since the snapshot). A column dropped since the TRUNCATE
/// refuses the restore and the rows stay kept; one added takes its default.
#[test]
fn a_restore_leaves_the_restorers_session_as_it_was_and_the_rows_whole() {
    let w = truncate_world("rb_guc");
    let approver = new_approver("rb_guc");
    let mut agent = w.agent_in(&w.open);
    let e = assert_refused(
        agent.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; TRUNCATE order_lines;"),
    );
    assert!(e.contains("READ COMMITTED"), "{e}");
    agent.batch_execute("ROLLBACK").unwrap();
    agent.batch_execute("TRUNCATE order_lines").unwrap();
    agent
        .batch_execute(
            "CREATE FUNCTION public.leak() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_catalog.set_config('search_path', 'public, pg_catalog', false); RETURN NEW; END $$;
             CREATE TRIGGER leak BEFORE INSERT ON order_lines FOR EACH ROW EXECUTE FUNCTION public.leak();",
        )
        .unwrap();
    let (id, _, _, _) = entry(&approver, &w.open, "public.order_lines").unwrap();
    let mut a = connect(&approver, &w.open);
    a.batch_execute("SET search_path = pg_catalog").unwrap();
    a.query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let path: String = a.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_eq!(path, "pg_catalog");
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM order_lines"),
        30
    );
    // A column dropped since: refused, kept; added: restored.
    agent
        .batch_execute("DROP TRIGGER leak ON order_lines; TRUNCATE order_lines")
        .unwrap();
    let (id, _, _, _) = entry(&approver, &w.open, "public.order_lines").unwrap();
    agent
        .batch_execute("ALTER TABLE order_lines DROP COLUMN total, DROP COLUMN qty")
        .unwrap();
    let e = a
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_err();
    assert!(
        describe(&e).contains("column(s) qty, total are gone or renamed"),
        "{}",
        describe(&e)
    );
    assert!(entry(&approver, &w.open, "public.order_lines").is_some());
    agent
        .batch_execute("ALTER TABLE order_lines ADD COLUMN qty int, ADD COLUMN total int, ADD COLUMN extra int DEFAULT 7")
        .unwrap();
    a.query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM order_lines WHERE extra = 7 AND qty IS NOT NULL"
        ),
        30
    );
}

/// `recycle_max_bytes` bounds what the bin keeps of one database: an
/// agent's TRUNCATE that would take it past the budget is refused (42501,
/// naming the setting and the sizes) and truncates nothing; with a budget
/// a DBA raised, it is kept. Agents cannot change it.
#[test]
fn a_truncate_past_recycle_max_bytes_is_refused_and_nothing_is_lost() {
    let w = truncate_world("rb_budget");
    let approver = new_approver("rb_budget");
    let budget = |size: &str| {
        admin("postgres")
            .batch_execute(&format!(
                "ALTER DATABASE {} SET ai_agent_safety.recycle_max_bytes = '{size}'",
                w.open
            ))
            .unwrap()
    };
    budget("1kB");
    let mut agent = w.agent_in(&w.open);
    let e = assert_refused(agent.batch_execute("SET ai_agent_safety.recycle_max_bytes = -1"));
    assert!(e.contains("recycle_max_bytes"), "{e}");
    let e = assert_refused(agent.batch_execute("TRUNCATE orders CASCADE"));
    assert!(
        e.contains("TRUNCATE refused: agent role")
            && e.contains(&format!(
                "keeping them would take the recycle bin of database \"{}\" past ai_agent_safety.recycle_max_bytes (1 kB; it holds 0 bytes now)",
                w.open
            ))
            && e.contains("ai_agent_safety.purge_dropped('<id>'::bigint)"),
        "{e}"
    );
    let mut a = admin(&w.open);
    assert_eq!(count(&mut a, "SELECT count(*) FROM orders"), 10);
    assert_eq!(count(&mut a, "SELECT count(*) FROM order_lines"), 30);
    budget("1MB");
    let mut agent = w.agent_in(&w.open);
    agent.batch_execute("TRUNCATE orders CASCADE").unwrap();
    assert!(entry(&approver, &w.open, "public.orders, public.order_lines").is_some());
    assert_eq!(count(&mut a, "SELECT count(*) FROM orders"), 0);
}

/// PostgreSQL evaluates an immutable call in a table's extended statistics
/// while it plans a query of the table, as whoever plans it: where nothing
/// guards it, a superuser's query runs the agent's function. The recycle
/// bin copies a TRUNCATE's rows and checks a restore as the bootstrap
/// superuser, so an agent's function met there is refused before it runs:
/// the TRUNCATE is refused (rows intact) and so is the restore (rows kept).
#[test]
fn an_agents_function_never_runs_in_the_bins_superuser_work() {
    let w = truncate_world("rb_stats");
    let approver = new_approver("rb_stats");
    // A human's function that catches an error of its own, met first: its
    // subtransaction's end does not end the extension's own work.
    admin(&w.open)
        .batch_execute(
            "CREATE FUNCTION public.h() RETURNS int IMMUTABLE LANGUAGE plpgsql AS
               $$ BEGIN BEGIN PERFORM 1 / 0; EXCEPTION WHEN others THEN NULL; END; RETURN 0; END $$;",
        )
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            "CREATE FUNCTION public.g() RETURNS int IMMUTABLE LANGUAGE plpgsql AS
               $$ BEGIN RAISE NOTICE 'g ran as %', current_user; RETURN 0; END $$;
             CREATE TABLE public.t (a int); INSERT INTO public.t SELECT generate_series(1, 5);
             CREATE STATISTICS t_g ON (a + public.h()), (a + public.g()) FROM public.t;
             CREATE TABLE public.u (a int); INSERT INTO public.u SELECT generate_series(1, 5);",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (mut su, seen) = connect_with_notices("postgres", &w.open);
    su.batch_execute("SELECT count(*) FROM public.t").unwrap();
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|n| n == "g ran as postgres"),
        "{:?}",
        seen.lock().unwrap()
    );
    let (mut agent, seen) = connect_with_notices(&w.agent, &w.open);
    let e = assert_refused(agent.batch_execute("TRUNCATE t"));
    assert!(
        e.contains(&format!("function public.g(), which agent role \"{}\" owns, may not run inside ai_agent_safety's own work, where it would run with the extension's rights, unjudged", w.agent)),
        "{e}"
    );
    assert!(e.contains("FROM pg_catalog.pg_depend WHERE"), "{e}");
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == "g ran as postgres"),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM public.t"),
        5
    );
    // A restore meets it too: refused, the rows stay kept.
    agent.batch_execute("DELETE FROM u WHERE a <= 2").unwrap();
    agent
        .batch_execute("CREATE STATISTICS u_g ON (a + public.g()) FROM public.u")
        .unwrap();
    let (id,): (i64,) = connect(&approver, &w.open)
        .query_one(
            "SELECT id FROM ai_agent_safety.recycle_bin WHERE kind = 'delete' AND object = 'public.u'",
            &[],
        )
        .map(|r| (r.get(0),))
        .unwrap();
    let (mut ap, seen) = connect_with_notices(&approver, &w.open);
    let e = assert_refused(ap.query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id]));
    assert!(
        e.contains("may not run inside ai_agent_safety's own work"),
        "{e}"
    );
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|n| n == "g ran as postgres"),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM public.u"),
        3
    );
}
