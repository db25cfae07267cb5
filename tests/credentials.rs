//! Credentials that really expire, and agents that stay in their environment.
//! The test cluster uses trust authentication on its socket, so every login
//! check here is the extension's, not PostgreSQL's password check.

use aas_integration::*;

/// The refusal a login as `role` gets. The server closes the socket right
/// after its FATAL, and on a Unix socket the client can then read a reset
/// instead of the message; a refused login refuses again with the same
/// words, so such an attempt is repeated.
fn login_error(role: &str, db: &str) -> String {
    for _ in 0..5 {
        match try_connect(role, db) {
            Ok(_) => panic!("login as {role} to {db} should have been refused"),
            Err(e) if e.as_db_error().is_some() => return describe(&e),
            Err(_) => continue,
        }
    }
    panic!("login as {role} to {db} never returned the server's message")
}

fn exec(c: &mut postgres::Client, sql: &str) {
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

/// A fresh agent role (member of ai_agent) with the given VALID UNTIL clause.
fn agent_with(valid_until: &str) -> String {
    prepare_cluster();
    let r = unique("cred_agent");
    exec(
        &mut admin("postgres"),
        &format!("CREATE ROLE {r} LOGIN IN ROLE ai_agent {valid_until}"),
    );
    r
}

#[test]
fn login_refused_without_expiry() {
    let r = agent_with("");
    let e = login_error(&r, "postgres");
    assert!(e.contains("no credential expiry"), "{e}");
    assert!(e.contains("issue_agent_credentials"), "{e}");
}

/// An expired agent's login is refused in the extension's words even right
/// after a change to a shared catalog (a GRANT on pg_database here; also
/// autovacuum of pg_authid, or roles created and dropped) invalidated the
/// shared relcache init file: before a database is selected, the login
/// reads pg_database as PostgreSQL does, by a heap scan. (Looking the
/// database up through its name index ended such a login with PostgreSQL's
/// FATAL "cannot read pg_class without having selected a database", about
/// one login in seven.)
#[test]
fn an_expired_login_is_refused_in_words_right_after_a_shared_catalog_changed() {
    let r = agent_with("VALID UNTIL '2020-01-01 00:00:00+00'");
    let grantee = unique("cred_grantee");
    let mut su = admin("postgres");
    exec(&mut su, &format!("CREATE ROLE {grantee}"));
    for _ in 0..30 {
        exec(
            &mut su,
            &format!(
                "GRANT SELECT ON pg_catalog.pg_database TO {grantee};
                 REVOKE SELECT ON pg_catalog.pg_database FROM {grantee};"
            ),
        );
        let e = login_error(&r, "postgres");
        assert!(
            e.contains(&format!("credentials of agent role \"{r}\" expired")),
            "{e}"
        );
    }
    exec(&mut su, &format!("DROP ROLE {grantee}"));
}

#[test]
fn login_refused_with_infinite_expiry() {
    let r = agent_with("VALID UNTIL 'infinity'");
    assert!(login_error(&r, "postgres").contains("no credential expiry"));
}

#[test]
fn login_refused_when_expired() {
    let r = agent_with("VALID UNTIL '2020-01-01 00:00:00+00'");
    let e = login_error(&r, "postgres");
    assert!(
        e.contains(&format!(
            "credentials of agent role \"{r}\" expired at 2020-01-01"
        )),
        "{e}"
    );
}

#[test]
fn login_refused_when_expiry_too_far_ahead() {
    let r = agent_with("");
    exec(
        &mut admin("postgres"),
        &format!("ALTER ROLE {r} VALID UNTIL '{}'", {
            let mut a = admin("postgres");
            let t: String = a
                .query_one("SELECT (now() + interval '30 days')::text", &[])
                .unwrap()
                .get(0);
            t
        }),
    );
    let e = login_error(&r, "postgres");
    assert!(e.contains("max_credential_lifetime"), "{e}");
}

#[test]
fn login_refused_for_superuser_agent() {
    let r = agent_with("SUPERUSER");
    let mut a = admin("postgres");
    let until = in_one_hour(&mut a);
    exec(&mut a, &format!("ALTER ROLE {r} VALID UNTIL '{until}'"));
    let e = login_error(&r, "postgres");
    assert!(e.contains("superuser"), "{e}");
}

#[test]
fn login_allowed_with_valid_expiry_and_for_non_agents() {
    let mut a = admin("postgres");
    let until = in_one_hour(&mut a);
    let r = agent_with(&format!("VALID UNTIL '{until}'"));
    let mut c = connect(&r, "postgres");
    assert_eq!(count(&mut c, "SELECT 1::bigint"), 1);
    // A non-agent without any expiry is never touched.
    let human = unique("human");
    exec(&mut a, &format!("CREATE ROLE {human} LOGIN"));
    let mut h = connect(&human, "postgres");
    assert_eq!(count(&mut h, "SELECT 1::bigint"), 1);
    // The client is told whether the session is an agent's.
    let v: String = c
        .query_one("SHOW ai_agent_safety.agent_session", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, "on");
    let v: String = h
        .query_one("SHOW ai_agent_safety.agent_session", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, "off");
}

/// The session's next statement must end it with a FATAL that gives the expiry.
/// The FATAL reaches the client, but the Rust client sometimes reports only the
/// closed connection (the server closes the socket right after the message);
/// then the same text is checked in the audit event the server recorded.
fn assert_ended_at_expiry(c: &mut postgres::Client, role: &str, expiry_text: &str) {
    let e = c
        .simple_query("SELECT 1")
        .expect_err("the session must end");
    match e.as_db_error() {
        Some(d) => {
            assert_eq!(d.severity(), "FATAL", "{}", describe(&e));
            assert!(d.message().contains(expiry_text), "{}", describe(&e));
        }
        None => {
            // Closed by the server: at the statement, or already by the
            // timeout at VALID UNTIL (then writing the statement fails).
            assert!(
                e.is_closed() || e.to_string().contains("communicating"),
                "unexpected error {e:?}"
            );
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut a = admin("postgres");
            loop {
                let n = count(
                    &mut a,
                    &format!(
                        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE session_user_name = '{role}'
                           AND event = 'session_expired' AND reason LIKE '%{expiry_text}%ending the session'"
                    ),
                );
                if n == 1 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no session_expired event for {role}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    assert!(
        c.simple_query("SELECT 1").is_err(),
        "the session must be gone"
    );
}

#[test]
fn open_session_ends_when_expiry_moved_into_the_past() {
    let mut a = admin("postgres");
    let until = in_one_hour(&mut a);
    let r = agent_with(&format!("VALID UNTIL '{until}'"));
    let mut c = connect(&r, "postgres");
    assert_eq!(count(&mut c, "SELECT 1::bigint"), 1);
    exec(
        &mut a,
        &format!("ALTER ROLE {r} VALID UNTIL '2020-01-01 00:00:00+00'"),
    );
    assert_ended_at_expiry(&mut c, &r, "expired at 2020-01-01");
}

#[test]
fn open_session_ends_when_expiry_time_runs_out() {
    let mut a = admin("postgres");
    let until: String = a
        .query_one(
            "SELECT (clock_timestamp() + interval '1500 milliseconds')::text",
            &[],
        )
        .unwrap()
        .get(0);
    let r = agent_with(&format!("VALID UNTIL '{until}'"));
    let mut c = connect(&r, "postgres");
    assert_eq!(count(&mut c, "SELECT 1::bigint"), 1);
    // Wait for the server's clock to pass the expiry (bounded; not a synchronisation sleep).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let passed: bool = a
            .query_one(
                &format!("SELECT clock_timestamp() > '{until}'::timestamptz"),
                &[],
            )
            .unwrap()
            .get(0);
        if passed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server clock never passed {until}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_ended_at_expiry(&mut c, &r, "expired at");
}

/// The server's clock `ms` milliseconds from now, as timestamptz text.
fn server_time_in(a: &mut postgres::Client, ms: u32) -> String {
    a.query_one(
        &format!("SELECT (clock_timestamp() + interval '{ms} milliseconds')::text"),
        &[],
    )
    .unwrap()
    .get(0)
}

/// Polls until `sql` (a boolean query) is true, up to `secs` seconds.
fn wait_for(a: &mut postgres::Client, sql: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !a.query_one(sql, &[]).unwrap().get::<_, bool>(0) {
        assert!(std::time::Instant::now() < deadline, "never true: {sql}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn backend_alive(a: &mut postgres::Client, pid: i32) -> bool {
    a.query_one(
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1",
        &[&pid],
    )
    .unwrap()
    .get(0)
}

/// The agent logs in and never sends a statement: its session still ends at
/// VALID UNTIL, by itself, and the audit log says why.
#[test]
fn idle_session_that_never_ran_a_statement_ends_at_expiry() {
    let mut a = admin("postgres");
    let until = server_time_in(&mut a, 1500);
    let r = agent_with(&format!("VALID UNTIL '{until}'"));
    let _c = connect(&r, "postgres");
    let pid: i32 = a
        .query_one("SELECT pid FROM pg_stat_activity WHERE usename = $1", &[&r])
        .unwrap()
        .get(0);
    // Nothing is sent on the agent's connection: only the timeout can end it.
    wait_for(
        &mut a,
        &format!("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = {pid}"),
        15,
    );
    wait_for(
        &mut a,
        &format!(
            "SELECT count(*) = 1 FROM ai_agent_safety.audit_log WHERE session_user_name = '{r}'
               AND event = 'session_expired' AND reason LIKE '%expired at%ending the session'"
        ),
        10,
    );
}

/// PostgreSQL's error recovery switches every timeout off: an agent whose
/// last statement failed, idle (here in an aborted transaction, holding a
/// lock), still ends at VALID UNTIL.
#[test]
fn a_failed_last_statement_does_not_keep_an_expired_session_alive() {
    let mut a = admin("postgres");
    let until = server_time_in(&mut a, 2000);
    let r = agent_with(&format!("VALID UNTIL '{until}'"));
    let mut sessions = Vec::new();
    for sql in ["SELEC 1", "BEGIN; SAVEPOINT s; SELECT 1/0"] {
        let mut c = connect(&r, "postgres");
        let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        assert!(c.batch_execute(sql).is_err());
        sessions.push((c, pid));
    }
    for (_c, pid) in &sessions {
        wait_for(
            &mut a,
            &format!("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = {pid}"),
            15,
        );
    }
}

/// A DBA extends an idle agent's VALID UNTIL: the session is not ended at
/// the old time, and ends at the new one.
#[test]
fn extended_expiry_moves_the_end_of_an_idle_session() {
    let mut a = admin("postgres");
    let first = server_time_in(&mut a, 2500);
    let r = agent_with(&format!("VALID UNTIL '{first}'"));
    let mut c = connect(&r, "postgres");
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let second = server_time_in(&mut a, 5000);
    exec(&mut a, &format!("ALTER ROLE {r} VALID UNTIL '{second}'"));
    // Past the first expiry (plus time for the timeout to act): still there.
    wait_for(
        &mut a,
        &format!("SELECT clock_timestamp() > '{first}'::timestamptz + interval '700 milliseconds'"),
        15,
    );
    assert!(
        backend_alive(&mut a, pid),
        "the session ended at the old VALID UNTIL"
    );
    // Then it ends at the new one, by itself.
    wait_for(
        &mut a,
        &format!("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = {pid}"),
        15,
    );
    assert!(a
        .query_one(
            &format!("SELECT clock_timestamp() >= '{second}'::timestamptz"),
            &[]
        )
        .unwrap()
        .get::<_, bool>(0));
    drop(c);
}

#[test]
fn revoke_ends_live_sessions_and_counts_them() {
    let mut a = admin("postgres");
    let r = unique("revoked");
    let _pw: String = a
        .query_one(
            "SELECT ai_agent_safety.issue_agent_credentials($1, '1 hour')",
            &[&r],
        )
        .unwrap()
        .get(0);
    let mut s1 = connect(&r, "postgres");
    let mut s2 = connect(&r, "postgres");
    assert_eq!(
        count(&mut s1, "SELECT 1::bigint") + count(&mut s2, "SELECT 1::bigint"),
        2
    );
    let ended: i32 = a
        .query_one("SELECT ai_agent_safety.revoke_agent_credentials($1)", &[&r])
        .unwrap()
        .get(0);
    assert_eq!(ended, 2);
    assert!(s1.simple_query("SELECT 1").is_err());
    assert!(s2.simple_query("SELECT 1").is_err());
    let e = login_error(&r, "postgres");
    assert!(e.contains("expired at"), "{e}");
    // Revoking a role that is not an agent is an error, never silent.
    let e = assert_sqlstate(
        a.query_one(
            "SELECT ai_agent_safety.revoke_agent_credentials('postgres')",
            &[],
        ),
        "22023",
    );
    assert!(e.contains("not an agent"), "{e}");
    assert_sqlstate(
        a.query_one(
            "SELECT ai_agent_safety.revoke_agent_credentials('no_such_role_xyz')",
            &[],
        ),
        "42704",
    );
}

fn tcp_login(role: &str, password: &str) -> Result<postgres::Client, postgres::Error> {
    let mut cfg = postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port())
        .user(role)
        .password(password)
        .dbname("postgres");
    cfg.connect(postgres::NoTls)
}

#[test]
fn issued_credentials_log_in_with_scram_and_are_capped() {
    let mut a = admin("postgres");
    let r = unique("issued");
    let pw: String = a
        .query_one(
            "SELECT ai_agent_safety.issue_agent_credentials($1, '30 minutes', ARRAY['development'])",
            &[&r],
        )
        .unwrap()
        .get(0);
    assert!(pw.len() >= 32, "password too short: {pw}");
    let mut c = tcp_login(&r, &pw).unwrap_or_else(|e| panic!("password login: {}", describe(&e)));
    assert_eq!(count(&mut c, "SELECT 1::bigint"), 1);
    assert!(tcp_login(&r, "wrong password").is_err());
    let stored: String = a
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&r],
        )
        .unwrap()
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");
    let in_group: bool = a
        .query_one("SELECT pg_has_role($1::name, 'ai_agent', 'MEMBER')", &[&r])
        .unwrap()
        .get(0);
    assert!(in_group);
    let row = a
        .query_one(
            "SELECT valid_until > now() + interval '29 minutes' AND valid_until < now() + interval '31 minutes',
                    allowed_environments, problems
               FROM ai_agent_safety.credential_report WHERE role = $1",
            &[&r],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(
        row.get::<_, Vec<String>>(1),
        vec!["development".to_string()]
    );
    assert!(row.get::<_, Vec<String>>(2).is_empty());
    // Refreshing gives a new password; the old one stops working.
    let pw2: String = a
        .query_one(
            "SELECT ai_agent_safety.issue_agent_credentials($1, '10 minutes')",
            &[&r],
        )
        .unwrap()
        .get(0);
    assert_ne!(pw, pw2);
    assert!(tcp_login(&r, &pw).is_err());
    assert!(tcp_login(&r, &pw2).is_ok());
    // Over-long ttl and bad input are refused.
    let e = assert_sqlstate(
        a.query_one(
            "SELECT ai_agent_safety.issue_agent_credentials($1, '2 days')",
            &[&r],
        ),
        "22023",
    );
    assert!(e.contains("max_credential_lifetime"), "{e}");
    assert_sqlstate(
        a.query_one(
            "SELECT ai_agent_safety.issue_agent_credentials($1, '-1 hour')",
            &[&r],
        ),
        "22023",
    );
    assert_sqlstate(
        a.query_one(
            "SELECT ai_agent_safety.issue_agent_credentials(NULL, '1 hour')",
            &[],
        ),
        "22004",
    );
    assert_sqlstate(
        a.query_one(
            "SELECT ai_agent_safety.issue_agent_credentials($1, '1 hour', ARRAY['a,b'])",
            &[&r],
        ),
        "22023",
    );
    // Never turns a human or a superuser into an agent.
    let e = assert_refused(a.query_one(
        "SELECT ai_agent_safety.issue_agent_credentials('postgres', '1 hour')",
        &[],
    ));
    assert!(e.contains("superuser"), "{e}");
}

#[test]
fn credential_report_flags_dangerous_agents() {
    let mut a = admin("postgres");
    let no_expiry = agent_with("PASSWORD 'x'");
    let far = agent_with("");
    let t: String = a
        .query_one("SELECT (now() + interval '10 days')::text", &[])
        .unwrap()
        .get(0);
    exec(&mut a, &format!("ALTER ROLE {far} VALID UNTIL '{t}'"));
    let sup = agent_with("SUPERUSER VALID UNTIL '2020-01-01'");
    let problems = |a: &mut postgres::Client, r: &str| -> String {
        let v: Vec<String> = a
            .query_one(
                "SELECT problems FROM ai_agent_safety.credential_report WHERE role = $1",
                &[&r],
            )
            .unwrap()
            .get(0);
        v.join("; ")
    };
    assert!(problems(&mut a, &no_expiry).contains("password but no expiry"));
    assert!(problems(&mut a, &far).contains("lifetime above the maximum"));
    assert!(problems(&mut a, &sup).contains("superuser"));
}

#[test]
fn environment_scope_at_connect() {
    let mut a = admin("postgres");
    let prod = unique("env_prod");
    let dev = unique("env_dev");
    let plain = unique("env_plain");
    for db in [&prod, &dev, &plain] {
        exec(&mut a, &format!("CREATE DATABASE {db}"));
    }
    exec(
        &mut a,
        &format!("ALTER DATABASE {prod} SET ai_agent_safety.environment = 'production'"),
    );
    exec(
        &mut a,
        &format!("ALTER DATABASE {dev} SET ai_agent_safety.environment = 'development'"),
    );
    let until = in_one_hour(&mut a);
    let scoped = agent_with(&format!("VALID UNTIL '{until}'"));
    exec(
        &mut a,
        &format!("ALTER ROLE {scoped} SET ai_agent_safety.allowed_environments = 'development'"),
    );
    let unscoped = agent_with(&format!("VALID UNTIL '{until}'"));

    let e = login_error(&scoped, &prod);
    assert!(e.contains("production") && e.contains("development"), "{e}");
    assert!(try_connect(&scoped, &dev).is_ok());
    assert!(try_connect(&scoped, &plain).is_ok());

    let e = login_error(&unscoped, &dev);
    assert!(e.contains("development") && e.contains("none set"), "{e}");
    assert!(try_connect(&unscoped, &plain).is_ok());

    // Non-agents go anywhere.
    assert!(try_connect("postgres", &prod).is_ok());
}

#[test]
fn drop_database_requires_target_environment_in_scope() {
    let mut a = admin("postgres");
    let until = in_one_hour(&mut a);
    let agent = agent_with(&format!("VALID UNTIL '{until}' CREATEDB"));
    exec(
        &mut a,
        &format!("ALTER ROLE {agent} SET ai_agent_safety.allowed_environments = 'development'"),
    );
    let prod = unique("dd_prod");
    let dev = unique("dd_dev");
    for db in [&prod, &dev] {
        exec(&mut a, &format!("CREATE DATABASE {db} OWNER {agent}"));
    }
    exec(
        &mut a,
        &format!("ALTER DATABASE {prod} SET ai_agent_safety.environment = 'production'"),
    );
    exec(
        &mut a,
        &format!("ALTER DATABASE {dev} SET ai_agent_safety.environment = 'development'"),
    );
    let mut c = connect(&agent, "postgres");
    let e = assert_refused(c.batch_execute(&format!("DROP DATABASE {prod}")));
    assert!(e.contains("outside the scope"), "{e}");
    let still: i64 = count(
        &mut a,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{prod}'"),
    );
    assert_eq!(still, 1);
    // With a development task declared, the production target is refused too;
    // the development target is fine.
    exec(
        &mut c,
        "SET ai_agent_safety.task_environment = 'development'",
    );
    assert_refused(c.batch_execute(&format!("DROP DATABASE {prod} WITH (FORCE)")));
    c.batch_execute(&format!("DROP DATABASE {dev}"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
}

#[test]
fn task_environment_mismatch_refuses_writes() {
    let w = World::new("task");
    let mut a = admin("postgres");
    exec(
        &mut a,
        &format!(
            "ALTER DATABASE {} SET ai_agent_safety.environment = 'production'",
            w.open
        ),
    );
    exec(
        &mut a,
        &format!(
            "ALTER ROLE {} SET ai_agent_safety.allowed_environments = 'production, development'",
            w.agent
        ),
    );
    let opts =
        "-c ai_agent_safety.task_id=cleanup_42 -c ai_agent_safety.task_environment=development";
    let mut c =
        try_connect_with(&w.agent, &w.open, opts).unwrap_or_else(|e| panic!("{}", describe(&e)));
    // Reads are fine.
    assert_eq!(count(&mut c, "SELECT count(*) FROM orders"), 10);
    for sql in [
        "INSERT INTO orders VALUES (100, 'x')",
        "UPDATE orders SET note = 'y'",
        "DELETE FROM orders",
        "CREATE TABLE scratch (id int)",
    ] {
        let e = assert_refused(c.batch_execute(sql));
        assert!(
            e.contains("production-tier access during a development task"),
            "{sql}: {e}"
        );
        assert!(e.contains("cleanup_42"), "{sql}: {e}");
    }
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM orders"),
        10
    );
    // The matching task environment writes normally (this database is not protected).
    exec(
        &mut c,
        "SET ai_agent_safety.task_environment = 'production'",
    );
    exec(&mut c, "INSERT INTO orders VALUES (100, 'x')");
    // A non-agent declaring a task is never refused.
    let mut o = try_connect_with(&w.owner, &w.open, opts).unwrap();
    exec(&mut o, "INSERT INTO orders VALUES (101, 'y')");
}

#[test]
fn agents_cannot_change_these_settings_or_call_these_functions() {
    let w = World::new("credset");
    let mut c = w.agent_in(&w.open);
    for sql in [
        "SET ai_agent_safety.allowed_environments = 'production'",
        "SET ai_agent_safety.environment = 'development'",
        "SET ai_agent_safety.max_credential_lifetime = '30d'",
        "SET ai_agent_safety.agent_role = 'nobody'",
        "SET ai_agent_safety.token_ttl = '1d'",
    ] {
        assert!(
            c.batch_execute(sql).is_err(),
            "{sql} should fail for an agent"
        );
    }
    let me = w.agent.clone();
    assert!(c
        .batch_execute(&format!(
            "ALTER ROLE {me} SET ai_agent_safety.allowed_environments = 'production'"
        ))
        .is_err());
    assert!(c
        .batch_execute(&format!("ALTER ROLE {me} VALID UNTIL 'infinity'"))
        .is_err());
    let e = assert_refused(c.query_one(
        "SELECT ai_agent_safety.issue_agent_credentials($1, '1 hour')",
        &[&me],
    ));
    assert!(e.contains("may not"), "{e}");
    assert_refused(c.query_one(
        "SELECT ai_agent_safety.revoke_agent_credentials($1)",
        &[&me],
    ));
    assert!(c
        .query("SELECT * FROM ai_agent_safety.credential_report", &[])
        .is_err());
}

/// An agent may not log in while it holds a privilege that reaches around
/// the guard, directly or through a role it belongs to; the error names the
/// privilege and the hint is the SQL that takes it away, which then works.
/// Given such a privilege in the middle of a session, the agent loses the
/// session at its next statement.
#[test]
fn agents_holding_privileges_that_reach_around_the_guard_cannot_log_in() {
    let mut a = admin("postgres");
    let until = in_one_hour(&mut a);
    let powerful = unique("powerful");
    exec(&mut a, &format!("CREATE ROLE {powerful} NOLOGIN BYPASSRLS"));
    let cases = [
        (
            "CREATEROLE",
            "CREATEROLE".to_string(),
            "NOCREATEROLE".to_string(),
        ),
        (
            "REPLICATION",
            "REPLICATION".to_string(),
            "NOREPLICATION".to_string(),
        ),
        (
            "BYPASSRLS",
            "BYPASSRLS".to_string(),
            "NOBYPASSRLS".to_string(),
        ),
    ];
    for (attr, held, fix) in &cases {
        let r = agent_with(&format!("VALID UNTIL '{until}' {attr}"));
        let e = login_error(&r, "postgres");
        assert!(
            e.contains(&format!(
                "agent role \"{r}\" holds {held}, which an agent must never hold"
            )) && e.contains(&format!("ALTER ROLE {r} {fix};")),
            "{e}"
        );
        exec(&mut a, &format!("ALTER ROLE {r} {fix}"));
        assert!(
            try_connect(&r, "postgres").is_ok(),
            "{r} logs in once {fix}"
        );
    }
    let mut grants = vec![
        (
            "pg_execute_server_program".to_string(),
            "pg_execute_server_program".to_string(),
        ),
        (
            "pg_write_server_files".to_string(),
            "pg_write_server_files".to_string(),
        ),
        (
            "pg_read_server_files".to_string(),
            "pg_read_server_files".to_string(),
        ),
        // Every table whatever its grants: a token written in as granted,
        // the recycle bin's kept rows read.
        (
            "pg_write_all_data".to_string(),
            "pg_write_all_data".to_string(),
        ),
        (
            "pg_read_all_data".to_string(),
            "pg_read_all_data".to_string(),
        ),
        (
            powerful.clone(),
            format!("BYPASSRLS (through role \"{powerful}\")"),
        ),
    ];
    if server_major(&mut a) >= 16 {
        // Subscriptions: their apply workers write as their owner, outside
        // any session, after its credentials are gone.
        grants.push((
            "pg_create_subscription".to_string(),
            "pg_create_subscription".to_string(),
        ));
    } else {
        let e = a
            .batch_execute("GRANT pg_create_subscription TO postgres")
            .unwrap_err();
        assert!(describe(&e).contains("does not exist"), "{}", describe(&e));
    }
    for (grant, shown) in grants {
        let r = agent_with(&format!("VALID UNTIL '{until}'"));
        exec(&mut a, &format!("GRANT {grant} TO {r}"));
        let e = login_error(&r, "postgres");
        assert!(
            e.contains(&format!("holds {shown}"))
                && e.contains(&format!("REVOKE {grant} FROM {r};")),
            "{e}"
        );
        exec(&mut a, &format!("REVOKE {grant} FROM {r}"));
        assert!(
            try_connect(&r, "postgres").is_ok(),
            "{r} logs in once {grant} is revoked"
        );
    }
    // The same role without the agent group is nobody's business.
    let human = unique("human_replication");
    exec(&mut a, &format!("CREATE ROLE {human} LOGIN REPLICATION"));
    assert!(try_connect(&human, "postgres").is_ok());

    // Mid-session: the next statement ends the session.
    let r = agent_with(&format!("VALID UNTIL '{until}'"));
    let mut c = connect(&r, "postgres");
    assert_eq!(count(&mut c, "SELECT 1::bigint"), 1);
    exec(&mut a, &format!("GRANT pg_execute_server_program TO {r}"));
    let e = c
        .simple_query("SELECT 1")
        .expect_err("the session must end");
    match e.as_db_error() {
        Some(d) => {
            assert_eq!(d.severity(), "FATAL", "{}", describe(&e));
            assert!(
                d.message().contains("now holds pg_execute_server_program"),
                "{}",
                describe(&e)
            );
        }
        None => assert!(e.is_closed(), "unexpected error {e:?}"),
    }
}

/// A role's prepared transactions outlive its sessions and keep their locks;
/// revoking the role's credentials rolls them back in every database (here
/// the current one and another), and says how many.
#[test]
fn revoke_rolls_back_prepared_transactions_in_every_database() {
    let w = World::new("prep");
    for (db, gid) in [(&w.open, "here"), (&w.protected, "elsewhere")] {
        let mut o = connect(&w.owner, db);
        exec(&mut o, "CREATE TABLE public.t (id int)");
        exec(
            &mut o,
            &format!(
                "BEGIN; INSERT INTO public.t VALUES (1);
                 LOCK public.t IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION '{}_{gid}'",
                w.owner
            ),
        );
    }
    // Its sessions are gone; the transactions and their locks are not.
    let mut a = admin(&w.open);
    let owned = format!(
        "SELECT count(*) FROM pg_prepared_xacts WHERE owner = '{}'",
        w.owner
    );
    assert_eq!(count(&mut a, &owned), 2);
    assert_sqlstate(
        admin(&w.open).batch_execute("BEGIN; LOCK public.t IN ACCESS SHARE MODE NOWAIT; COMMIT"),
        "55P03",
    );
    // The role becomes an agent, and its credentials are revoked.
    let until = in_one_hour(&mut a);
    exec(
        &mut a,
        &format!(
            "GRANT ai_agent TO {o}; ALTER ROLE {o} VALID UNTIL '{until}'",
            o = w.owner
        ),
    );
    let _: i32 = a
        .query_one(
            "SELECT ai_agent_safety.revoke_agent_credentials($1)",
            &[&w.owner],
        )
        .unwrap()
        .get(0);
    assert_eq!(count(&mut a, &owned), 0);
    for db in [&w.open, &w.protected] {
        let mut d = admin(db);
        exec(
            &mut d,
            "BEGIN; LOCK public.t IN ACCESS SHARE MODE NOWAIT; COMMIT",
        );
        assert_eq!(count(&mut d, "SELECT count(*) FROM public.t"), 0);
    }
    wait_for(
        &mut a,
        &format!(
            "SELECT count(*) = 1 FROM ai_agent_safety.audit_log WHERE event = 'revoked' AND object = '{}'
               AND reason LIKE '%rolled back 2 prepared transaction(s)%'",
            w.owner
        ),
        10,
    );
}
