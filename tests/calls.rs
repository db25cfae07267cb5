//! Destruction by function call, and credentials on every path (issue 10,
//! classes 6 and 7): large objects and sequences changed by built-in calls,
//! through SQL and through libpq's fast-path protocol (`\lo_unlink` in psql
//! is a PQfn call, no statement); prepared transactions; an idle session
//! whose credentials expire.

use aas_integration::postgres::Client;
use aas_integration::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn large_object(c: &mut Client) -> u32 {
    c.query_one("SELECT lo_from_bytea(0, 'precious')::oid", &[])
        .unwrap()
        .get(0)
}

fn large_objects(db: &str) -> i64 {
    count(
        &mut admin(db),
        "SELECT count(*) FROM pg_largeobject_metadata",
    )
}

/// psql as `role` in `db` running `script`; (success, stdout + stderr).
fn psql(role: &str, db: &str, script: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "/tmp"])
        .args(["-p", &port().to_string(), "-U", role, "-d", db])
        .args(["-c", script])
        .env("PATH", "/usr/lib/postgresql/15/bin:/usr/bin:/bin")
        .output()
        .expect("psql runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn large_objects_and_sequences_by_call() {
    let w = World::with_settings(
        "locall",
        &[(
            "ai_agent_safety.protected_operations",
            "DROP, DELETE, TRUNCATE, UPDATE, ALTER",
        )],
    );
    for db in [&w.open, &w.protected] {
        admin(db)
            .batch_execute(&format!(
                "CREATE SEQUENCE public.ids; GRANT ALL ON SEQUENCE public.ids TO {}",
                w.agent
            ))
            .unwrap();
    }
    let mut open = w.agent_in(&w.open);
    let lo = large_object(&mut open);
    open.batch_execute(&format!(
        "SELECT lo_put({lo}, 0, 'XXXX'); SELECT lo_unlink({lo}); SELECT setval('public.ids', 1)"
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(large_objects(&w.open), 0, "open: the large object is gone");

    let mut a = w.agent_in(&w.protected);
    let lo = large_object(&mut a);
    for (sql, says) in [
        (
            format!("SELECT lo_unlink({lo})"),
            "lo_unlink() on a large object refused",
        ),
        (
            format!("SELECT lo_truncate(lo_open({lo}, 131072), 0)"),
            "lo_truncate() on a large object refused",
        ),
        (
            "SELECT setval('public.ids', 1)".to_string(),
            "setval() on a sequence refused",
        ),
    ] {
        let msg = assert_refused(a.batch_execute(&sql));
        assert!(
            msg.contains(says) && msg.contains("needs an approval token"),
            "{sql}: {msg}"
        );
    }
    // lo_put is an UPDATE, setval an ALTER: both listed here.
    let msg = assert_refused(a.batch_execute(&format!("SELECT lo_put({lo}, 0, 'XXXX')")));
    assert!(msg.contains("lo_put() on a large object"), "{msg}");
    assert_eq!(large_objects(&w.protected), 1);
    let data: Vec<u8> = admin(&w.protected)
        .query_one(&format!("SELECT lo_get({lo})"), &[])
        .unwrap()
        .get(0);
    assert_eq!(data, b"precious");
}

#[test]
fn fast_path_calls_are_judged_and_end_with_credentials() {
    let w = World::new("fastpath");
    // The open database: psql's \lo_unlink (libpq's fast path) destroys.
    let lo = large_object(&mut w.agent_in(&w.open));
    let (ok, out) = psql(&w.agent, &w.open, &format!("\\lo_unlink {lo}"));
    assert!(ok, "{out}");
    assert_eq!(large_objects(&w.open), 0);
    // The protected one: refused, and the large object stays.
    let lo = large_object(&mut w.agent_in(&w.protected));
    let (ok, out) = psql(&w.agent, &w.protected, &format!("\\lo_unlink {lo}"));
    assert!(
        !ok && out.contains("lo_unlink() on a large object refused"),
        "{out}"
    );
    assert_eq!(large_objects(&w.protected), 1);
    // Credentials that end while the session is open end it on the fast
    // path too: the DBA moves VALID UNTIL to the past from another session
    // (psql's \! runs it between the two calls).
    let script = format!(
        "SELECT 1;\n\\! psql -X -q -h /tmp -p {port} -U postgres -d postgres -c \"ALTER ROLE {agent} VALID UNTIL '2000-01-01'\"\n\\lo_unlink {lo}",
        port = port(),
        agent = w.agent
    );
    let out = Command::new("psql")
        .args([
            "-X",
            "-h",
            "/tmp",
            "-p",
            &port().to_string(),
            "-U",
            &w.agent,
            "-d",
            &w.open,
        ])
        .env("PATH", "/usr/lib/postgresql/15/bin:/usr/bin:/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "credentials of agent role \"{}\" expired",
            w.agent
        )),
        "{text}"
    );
    assert_eq!(large_objects(&w.protected), 1);
}

#[test]
fn agents_may_not_prepare_transactions() {
    let w = World::new("prepared");
    // A role that is not an agent can leave a transaction behind its
    // session, holding its lock.
    let mut o = w.owner_in(&w.protected);
    let gid = unique("gid");
    o.batch_execute(&format!(
        "BEGIN; LOCK public.orders IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION '{gid}'"
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut admin("postgres"),
            &format!("SELECT count(*) FROM pg_prepared_xacts WHERE gid = '{gid}'")
        ),
        1
    );
    admin(&w.protected)
        .batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
        .unwrap();
    // An agent cannot, in any database.
    for db in [&w.protected, &w.open] {
        let mut a = w.agent_in(db);
        let msg = assert_refused(a.batch_execute(&format!(
            "BEGIN; UPDATE public.orders SET note = note WHERE id = 1; PREPARE TRANSACTION '{gid}x'"
        )));
        assert!(
            msg.contains(&format!(
                "PREPARE TRANSACTION refused: agent role \"{}\" may not prepare transactions",
                w.agent
            )),
            "{msg}"
        );
    }
    // (Only this test's: others prepare reviews meanwhile.)
    assert_eq!(
        count(
            &mut admin("postgres"),
            &format!("SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE '{gid}%'")
        ),
        0
    );
}

#[test]
fn an_idle_session_ends_when_its_credentials_do() {
    let w = World::new("idleexp");
    let bot = unique("idleexp_bot");
    let mut su = admin("postgres");
    su.batch_execute(&format!(
        "DO $$ BEGIN EXECUTE format('CREATE ROLE {bot} LOGIN IN ROLE ai_agent VALID UNTIL %L',
                                    now() + interval '2 seconds'); END $$"
    ))
    .unwrap();
    let mut a = connect(&bot, &w.open);
    let pid: i32 = a.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // The session now idles. It ends on its own at VALID UNTIL: no
    // statement, no DBA.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &mut su,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
    ) > 0
    {
        assert!(Instant::now() < deadline, "session {pid} still open");
        std::thread::sleep(Duration::from_millis(50));
    }
    let e = a.batch_execute("SELECT 1").expect_err("the session ended");
    assert!(
        e.is_closed() || describe(&e).contains("communicating"),
        "{}",
        describe(&e)
    );
    // A session busy at that moment ends too, and the client reads why.
    let bot2 = unique("idleexp_bot2");
    su.batch_execute(&format!(
        "DO $$ BEGIN EXECUTE format('CREATE ROLE {bot2} LOGIN IN ROLE ai_agent VALID UNTIL %L',
                                    now() + interval '2 seconds'); END $$"
    ))
    .unwrap();
    let out = Command::new("psql")
        .args([
            "-X",
            "-h",
            "/tmp",
            "-p",
            &port().to_string(),
            "-U",
            &bot2,
            "-d",
            &w.open,
        ])
        .args(["-c", "SELECT pg_sleep(120)"])
        .env("PATH", "/usr/lib/postgresql/15/bin:/usr/bin:/bin")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("credentials of agent role \"{bot2}\" expired at")),
        "{text}"
    );
}

fn agent_valid_for_two_seconds(su: &mut Client, tag: &str) -> String {
    let bot = unique(tag);
    su.batch_execute(&format!(
        "DO $$ BEGIN EXECUTE format('CREATE ROLE {bot} LOGIN IN ROLE ai_agent VALID UNTIL %L',
                                    now() + interval '2 seconds'); END $$"
    ))
    .unwrap();
    bot
}

fn wait_until_gone(su: &mut Client, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        su,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
    ) > 0
    {
        assert!(Instant::now() < deadline, "session {pid} still open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An error's recovery disables every timeout; the expiry is armed again,
/// so a session idle in a transaction that holds a lock still ends. A
/// superuser who took an agent's identity for a while and gave it back is
/// not ended at the agent's expiry.
#[test]
fn the_expiry_survives_errors_and_leaves_others_alone() {
    let w = World::new("exparm");
    let mut su = admin("postgres");
    let bot = agent_valid_for_two_seconds(&mut su, "exparm_bot");
    admin(&w.open)
        .batch_execute(&format!("GRANT ALL ON public.orders TO {bot}"))
        .unwrap();
    let mut a = connect(&bot, &w.open);
    let pid: i32 = a.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    a.batch_execute("BEGIN; LOCK public.orders IN ACCESS EXCLUSIVE MODE; SAVEPOINT s")
        .unwrap();
    a.batch_execute("SELECT 1/0").expect_err("division by zero");
    a.batch_execute("ROLLBACK TO s").unwrap();
    wait_until_gone(&mut su, pid);

    let bot2 = agent_valid_for_two_seconds(&mut su, "exparm_bot2");
    let mut d = admin(&w.open);
    d.batch_execute(&format!(
        "SET SESSION AUTHORIZATION {bot2}; SELECT 1; RESET SESSION AUTHORIZATION"
    ))
    .unwrap();
    // Past the agent's expiry (the server's clock), the superuser's session
    // still answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let past: bool = su
            .query_one(
                &format!(
                    "SELECT now() > rolvaliduntil + interval '1 second' FROM pg_authid WHERE rolname = '{bot2}'"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        if past {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&mut d, "SELECT 1::bigint"), 1);
}
