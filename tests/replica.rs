//! Streaming replication and failover: tokens and audit events are in
//! WAL-logged tables, so a standby has them; on the standby PostgreSQL
//! itself refuses an agent's writes, and the extension neither crashes nor
//! fills the log; after promotion a token granted on the old primary and
//! not yet used works once, and the audit writer runs there.

use aas_integration::*;
use postgres::Client;
use std::time::{Duration, Instant};

const PRIMARY: &str = "replprimary";
const PRIMARY_PORT: u16 = 55474;
const STANDBY: &str = "replstandby";
const STANDBY_PORT: u16 = 55475;
const DB: &str = "replicated";

fn exec(c: &mut Client, sql: &str) {
    c.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
}

/// Polls `sql` (a bigint) on `port` until it is `want`: replay and the
/// writer run in other processes; bounded, never a bare sleep.
fn until(port: u16, role: &str, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = connect_port(port, role, DB);
    loop {
        let have = count(&mut c, sql);
        if have == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {have}, wanted {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn server_log(name: &str) -> String {
    std::fs::read_to_string(format!("/tmp/aas-{name}/server.log")).unwrap_or_default()
}

#[test]
fn a_standby_refuses_agents_writes_itself_and_after_failover_a_granted_token_works_once() {
    run_lib_sh(&format!("cluster_start {PRIMARY} {PRIMARY_PORT}"));
    let mut su = connect_port(PRIMARY_PORT, "postgres", "postgres");
    let until_ = in_one_hour(&mut su);
    for sql in [
        "CREATE EXTENSION ai_agent_safety".to_string(),
        format!("CREATE ROLE repl_agent LOGIN IN ROLE ai_agent VALID UNTIL '{until_}'"),
        "ALTER ROLE repl_agent SET ai_agent_safety.audit_level = 'all'".to_string(),
        "CREATE ROLE repl_dba LOGIN".to_string(),
        format!("CREATE DATABASE {DB}"),
        format!("ALTER DATABASE {DB} SET ai_agent_safety.require_approval = on"),
    ] {
        exec(&mut su, &sql);
    }
    let mut p = connect_port(PRIMARY_PORT, "postgres", DB);
    exec(
        &mut p,
        "CREATE EXTENSION ai_agent_safety;
         GRANT ai_agent_approver TO repl_dba;
         CREATE TABLE public.orders (id int PRIMARY KEY);
         INSERT INTO public.orders SELECT generate_series(1, 10);
         GRANT ALL ON public.orders TO repl_agent;",
    );
    // A token requested and granted on the primary, not used.
    let token: String = connect_port(PRIMARY_PORT, "repl_agent", DB)
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 'repl', 'public.orders')::text",
            &[],
        )
        .unwrap()
        .get(0);
    connect_port(PRIMARY_PORT, "repl_dba", DB)
        .query_one(
            "SELECT ai_agent_safety.grant_approval_token($1::text::uuid)",
            &[&token],
        )
        .unwrap();
    until(
        PRIMARY_PORT,
        "postgres",
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE event IN ('requested', 'granted')",
        2,
    );

    run_lib_sh(&format!(
        "standby_start {STANDBY} {STANDBY_PORT} {PRIMARY_PORT}"
    ));
    until(
        STANDBY_PORT,
        "postgres",
        &format!("SELECT count(*) FROM ai_agent_safety.tokens WHERE id = '{token}' AND state = 'granted'"),
        1,
    );
    // On the standby: the agent logs in (its credentials are checked there
    // too), and PostgreSQL itself refuses its writes, token or not.
    let mut a = connect_port(STANDBY_PORT, "repl_agent", DB);
    for _ in 0..20 {
        let e = a
            .batch_execute(&format!(
                "DELETE FROM public.orders WHERE id = 1 /*ai_agent_safety_token='{token}'*/"
            ))
            .unwrap_err();
        assert_eq!(
            e.code().map(|c| c.code()),
            Some("25006"),
            "{}",
            describe(&e)
        );
    }
    // Without a token, the guard refuses there as anywhere; the event waits
    // in the standby's spool.
    let msg = assert_refused(a.batch_execute("DELETE FROM public.orders WHERE id = 7"));
    assert!(msg.contains("needs an approval token"), "{msg}");
    // An allowed read (audit_level = all) is logged at once, by the agent's
    // backend: no writer runs on a standby to write its line later.
    let pid: i32 = a.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    a.batch_execute("SELECT 'read on the standby'").unwrap();
    let log = server_log(STANDBY);
    let read = log
        .lines()
        .find(|l| l.contains("ai_agent_safety: {") && l.contains("read on the standby"));
    assert!(
        read.is_some_and(|l| l.contains(&format!("[{pid}]"))),
        "the read's line, by its backend {pid}: {read:?}"
    );
    // Nothing crashed, and no error of the extension's (a writer trying to
    // load on a standby) is in its log.
    let log = server_log(STANDBY);
    assert!(!log.contains("terminated by signal"), "{log}");
    let errors = log
        .lines()
        .filter(|l| {
            l.contains("ERROR")
                && !l.contains("read-only transaction")
                && !l.contains("needs an approval token")
        })
        .count();
    assert!(errors == 0, "errors in the standby's log:\n{log}");
    assert_eq!(
        count(
            &mut connect_port(STANDBY_PORT, "postgres", DB),
            "SELECT count(*) FROM public.orders"
        ),
        10
    );

    // Failover: the primary stops, the standby is promoted.
    run_lib_sh(&format!("cluster_stop {PRIMARY}"));
    exec(
        &mut connect_port(STANDBY_PORT, "postgres", DB),
        "SELECT pg_catalog.pg_promote(true, 60)",
    );
    let mut a = connect_port(STANDBY_PORT, "repl_agent", DB);
    exec(
        &mut a,
        &format!("DELETE FROM public.orders WHERE id = 1 /*ai_agent_safety_token='{token}'*/"),
    );
    let msg = assert_refused(a.batch_execute(&format!(
        "DELETE FROM public.orders WHERE id = 2 /*ai_agent_safety_token='{token}'*/"
    )));
    assert!(msg.contains("already used"), "{msg}");
    assert_eq!(
        count(
            &mut connect_port(STANDBY_PORT, "postgres", DB),
            "SELECT count(*) FROM public.orders"
        ),
        9
    );
    // The writer runs on the promoted server: the token's use, and the
    // refusals spooled while it was a standby, reach its audit log.
    until(
        STANDBY_PORT,
        "postgres",
        &format!("SELECT count(*) FROM ai_agent_safety.audit_log WHERE event = 'consumed' AND token = '{token}'"),
        1,
    );
    until(
        STANDBY_PORT,
        "postgres",
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE decision = 'refuse' AND statement = 'DELETE FROM public.orders WHERE id = 7'",
        1,
    );
    // Events loaded on the primary appear once, not again from the copy of
    // its spool that pg_basebackup took.
    assert_eq!(
        count(
            &mut connect_port(STANDBY_PORT, "postgres", DB),
            &format!("SELECT count(*) FROM ai_agent_safety.audit_log WHERE event = 'granted' AND token = '{token}'")
        ),
        1
    );
    run_lib_sh(&format!("cluster_stop {STANDBY}"));
}
