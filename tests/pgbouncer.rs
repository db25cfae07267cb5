//! Through Debian's PgBouncer in transaction pooling mode: the agent keeps
//! its identity (pools are per role), the token travels with the statement
//! over the extended protocol, a spent token never reaches the next client
//! of a shared server connection, and with the recommended reset setting a
//! SET made by one client never reaches another.

use aas_integration::*;
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicU16, Ordering};

/// A PgBouncer in front of the test cluster, stopped when dropped.
struct Bouncer {
    name: String,
    port: u16,
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

impl Bouncer {
    fn start(tag: &str, users: &[&str], ini: &[&str]) -> Bouncer {
        let port = 56400
            + (std::process::id() % 200) as u16 * 4
            + NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let name = format!("{tag}_{port}");
        let extra: Vec<String> = ini.iter().map(|l| format!("'{l}'")).collect();
        run_lib_sh(&format!(
            "pgbouncer_start {name} {port} {} {} {}",
            crate_port(),
            users.join(","),
            extra.join(" ")
        ));
        Bouncer { name, port }
    }

    fn connect(&self, role: &str, db: &str) -> Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(role)
            .dbname(db)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("through pgbouncer as {role}: {}", describe(&e)))
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source scripts/lib.sh && pgbouncer_stop {}",
                self.name
            ))
            .current_dir(repo_root())
            .output();
    }
}

fn crate_port() -> u16 {
    port()
}

fn granted(w: &World, agent: &mut Client, approver: &str) -> String {
    let token: String = agent
        .query_one(
            "SELECT request_approval_token('DELETE', 'bouncer-task', 'public.orders')::text",
            &[],
        )
        .unwrap()
        .get(0);
    w.grant(approver, &token);
    token
}

fn left(w: &World, id: i32) -> i64 {
    count(
        &mut admin(&w.protected),
        &format!("SELECT count(*) FROM public.orders WHERE id = {id}"),
    )
}

#[test]
fn the_loop_works_through_pgbouncer_in_transaction_mode() {
    let w = World::new("pgb_loop");
    let approver = new_approver("pgb_loop");
    let b = Bouncer::start("loop", &[&w.agent], &[]);
    let mut agent = b.connect(&w.agent, &w.protected);
    // The agent is still itself behind the pooler.
    let who: String = agent
        .query_one("SELECT session_user::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(who, w.agent);
    // Refused, and the message alone says what to do.
    let e = agent
        .execute("DELETE FROM orders WHERE id = $1", &[&1i32])
        .unwrap_err();
    let m = e.as_db_error().expect("a refusal").message().to_string();
    assert!(m.contains("needs an approval token"), "{m}");
    assert!(
        m.contains("add /*ai_agent_safety_token='<token id>'*/ to the statement"),
        "{m}"
    );
    // Request, a human grants, and the statement carries its token, in one
    // call, over the extended protocol with a bind parameter.
    let token = granted(&w, &mut agent, &approver);
    let sql = format!("DELETE FROM orders WHERE id = $1 /*ai_agent_safety_token='{token}'*/");
    assert_eq!(agent.execute(&sql, &[&1i32]).unwrap(), 1);
    assert_eq!(left(&w, 1), 0);
    // Once.
    let e = assert_refused(agent.execute(&sql, &[&2i32]));
    assert!(e.contains("was already used"), "{e}");
    assert_eq!(left(&w, 2), 1);
}

#[test]
fn a_spent_token_never_reaches_the_next_client() {
    let w = World::new("pgb_spent");
    let approver = new_approver("pgb_spent");
    let b = Bouncer::start("spent", &[&w.agent], &[]);
    let mut first = b.connect(&w.agent, &w.protected);
    let mut second = b.connect(&w.agent, &w.protected);
    let token = granted(&w, &mut first, &approver);
    // Both clients share the pool's one server connection.
    let pid =
        |c: &mut Client| -> i32 { c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0) };
    assert_eq!(pid(&mut first), pid(&mut second));
    // The first client presents its token by a session SET, in one call
    // with its statement (the form that survives transaction pooling).
    first
        .batch_execute(&format!(
            "SET ai_agent_safety.approval_token = '{token}'; DELETE FROM orders WHERE id = 3"
        ))
        .unwrap();
    assert_eq!(left(&w, 3), 0);
    // The SET stays on the server connection, but the spent token is gone.
    let seen: String = second
        .query_one("SHOW ai_agent_safety.approval_token", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, "");
    let e = assert_refused(second.execute("DELETE FROM orders WHERE id = 4", &[]));
    assert!(e.contains("needs an approval token"), "{e}");
    assert_eq!(left(&w, 4), 1);
}

/// A SET made in a call of its own stays on the server connection in
/// transaction pooling, so by default another client of the same role
/// finds it there. With the setting the README recommends (reset the
/// connection after every transaction), it does not, and the client that
/// made the SET is told its token was not presented.
#[test]
fn with_the_recommended_reset_a_set_never_reaches_another_client() {
    let w = World::new("pgb_reset");
    let approver = new_approver("pgb_reset");
    let show = |c: &mut Client| -> String {
        c.query_one("SHOW ai_agent_safety.approval_token", &[])
            .unwrap()
            .get(0)
    };
    // Default configuration: the first client's SET is seen by the second.
    {
        let b = Bouncer::start("noreset", &[&w.agent], &[]);
        let mut first = b.connect(&w.agent, &w.protected);
        let mut second = b.connect(&w.agent, &w.protected);
        first
            .batch_execute(
                "SET ai_agent_safety.approval_token = '3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f'",
            )
            .unwrap();
        assert_eq!(show(&mut second), "3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f");
    }
    let b = Bouncer::start(
        "reset",
        &[&w.agent],
        &[
            "server_reset_query = RESET ALL",
            "server_reset_query_always = 1",
        ],
    );
    let mut first = b.connect(&w.agent, &w.protected);
    let mut second = b.connect(&w.agent, &w.protected);
    let token = granted(&w, &mut first, &approver);
    first
        .batch_execute(&format!("SET ai_agent_safety.approval_token = '{token}'"))
        .unwrap();
    assert_eq!(show(&mut second), "");
    let e = assert_refused(second.execute("DELETE FROM orders WHERE id = 5", &[]));
    assert!(e.contains("did not present it"), "{e}");
    // The first client's own next call has lost its SET too, and is told
    // how to send the token instead.
    let e = assert_refused(first.execute("DELETE FROM orders WHERE id = 5", &[]));
    assert!(
        e.contains(&format!("it holds granted approval token {token} for this, but the statement did not present it")),
        "{e}"
    );
    assert_eq!(left(&w, 5), 1);
}
