//! Approval tokens (issue: an agent asks, a human grants, the agent runs exactly
//! one protected statement). Every test uses real roles and real connections:
//! the agent, the approver (a DBA in ai_agent_approver) and the superuser each
//! have their own session.

use aas_integration::postgres::fallible_iterator::FallibleIterator;
use aas_integration::postgres::Client;
use aas_integration::*;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// Another agent role (short-lived credentials, as every agent must have),
/// in `groups` besides ai_agent, with ALL on public.orders in both databases.
fn new_agent(w: &World, tag: &str, groups: &[&str]) -> String {
    let name = unique(&format!("{tag}_agent"));
    let mut a = admin("postgres");
    let until = in_one_hour(&mut a);
    let mut roles = vec!["ai_agent"];
    roles.extend_from_slice(groups);
    a.batch_execute(&format!(
        "CREATE ROLE {name} LOGIN IN ROLE {} VALID UNTIL '{until}'",
        roles.join(", ")
    ))
    .unwrap_or_else(|e| panic!("create agent {name}: {}", describe(&e)));
    for db in [&w.protected, &w.open] {
        admin(db)
            .batch_execute(&format!(
                "GRANT ALL ON SCHEMA public TO {name}; GRANT ALL ON public.orders TO {name};"
            ))
            .unwrap();
    }
    name
}

/// request_approval_token as this session; the token id as text.
fn try_request(
    c: &mut Client,
    op: &str,
    task: Option<&str>,
    target: Option<&str>,
    reason: Option<&str>,
) -> Result<String, postgres::Error> {
    c.query_one(
        "SELECT request_approval_token($1, $2, $3, $4)::text",
        &[&op, &task, &target, &reason],
    )
    .map(|r| r.get(0))
}

fn request(c: &mut Client, op: &str, target: Option<&str>) -> String {
    try_request(c, op, Some("task-42"), target, Some("integration test"))
        .unwrap_or_else(|e| panic!("request_approval_token({op}, {target:?}): {}", describe(&e)))
}

fn try_grant(c: &mut Client, token: &str) -> Result<String, postgres::Error> {
    c.query_one(
        "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'ok by test')::text",
        &[&token],
    )
    .map(|r| r.get(0))
}

fn grant(c: &mut Client, token: &str) {
    try_grant(c, token).unwrap_or_else(|e| panic!("grant {token}: {}", describe(&e)));
}

fn try_deny(c: &mut Client, token: &str) -> Result<u64, postgres::Error> {
    c.execute(
        "SELECT ai_agent_safety.deny_approval_token($1::text::uuid, 'not today')",
        &[&token],
    )
}

fn try_cancel(c: &mut Client, token: &str) -> Result<u64, postgres::Error> {
    c.execute(
        "SELECT ai_agent_safety.cancel_approval_token($1::text::uuid)",
        &[&token],
    )
}

/// ai_agent_safety.approval_token_status(token).status, as the calling session sees it.
fn status(c: &mut Client, token: &str) -> String {
    c.query_one(
        "SELECT status FROM ai_agent_safety.approval_token_status($1::text::uuid)",
        &[&token],
    )
    .unwrap_or_else(|e| {
        panic!(
            "ai_agent_safety.approval_token_status({token}): {}",
            describe(&e)
        )
    })
    .get(0)
}

fn present(c: &mut Client, token: &str) {
    c.batch_execute(&format!("SET ai_agent_safety.approval_token = '{token}'"))
        .unwrap_or_else(|e| panic!("SET approval_token: {}", describe(&e)));
}

fn orders_left(w: &World, ids: &str) -> i64 {
    count(
        &mut admin(&w.protected),
        &format!("SELECT count(*) FROM public.orders WHERE id IN ({ids})"),
    )
}

/// The DETAIL of a 42501 refusal (asserting it is one).
fn refused_detail(r: Result<impl std::fmt::Debug, postgres::Error>) -> String {
    let full = assert_refused(r);
    full.split(" DETAIL: ")
        .nth(1)
        .and_then(|s| s.split(" HINT: ").next())
        .unwrap_or("")
        .to_string()
}

/// A world plus a human approver, with the agent's token granted for `op` on `target`.
fn granted(w: &World, dba: &str, op: &str, target: Option<&str>) -> String {
    let mut a = w.agent_in(&w.protected);
    let t = request(&mut a, op, target);
    grant(&mut connect(dba, &w.protected), &t);
    t
}

// ---------------------------------------------------------------- the workflow

#[test]
fn whole_workflow_over_real_connections() {
    let w = World::new("flow");
    let dba_role = new_approver("flow");
    let mut agent = connect_with_task(&w, "cleanup-task-7");
    let mut dba = connect(&dba_role, &w.protected);
    dba.batch_execute("LISTEN ai_agent_safety_requests")
        .unwrap();

    // 1. Refused without a token.
    let msg = assert_refused(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(msg.contains("needs an approval token"), "{msg}");
    assert!(msg.contains("cleanup-task-7"), "{msg}");

    // 2. The agent asks, and listens for the decision.
    agent
        .batch_execute("LISTEN ai_agent_safety_decisions")
        .unwrap();
    let token: String = agent
        .query_one(
            "SELECT request_approval_token('DELETE', 'cleanup-task-7', 'orders', 'stale order')::text",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(status(&mut agent, &token), "pending");
    // A pending token does not open anything yet.
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(d.contains("still pending"), "{d}");

    // 3. The DBA is told.
    let n = dba
        .notifications()
        .timeout_iter(Duration::from_secs(30))
        .next()
        .unwrap()
        .expect("no NOTIFY on ai_agent_safety_requests within 30 s");
    assert_eq!(n.channel(), "ai_agent_safety_requests");
    // The notice carries the token id and the database, and what is asked
    // at a glance; anyone can NOTIFY this channel, so the approver reads the
    // request itself from the table.
    let p: serde_json::Value = serde_json::from_str(n.payload())
        .unwrap_or_else(|e| panic!("payload {:?} is not JSON: {e}", n.payload()));
    assert_eq!(
        p,
        serde_json::json!({"token": token, "database": w.protected,
                           "operation": "DELETE", "target": "public.orders"}),
        "{}",
        n.payload()
    );

    // 4. The DBA sees the request and grants it.
    let rows = dba
        .query(
            "SELECT token::text, requested_by::text, operation, target, task_id, would_allow \
               FROM ai_agent_safety.pending_requests",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.get::<_, String>(0), token);
    assert_eq!(r.get::<_, String>(1), w.agent);
    assert_eq!(r.get::<_, String>(2), "DELETE");
    assert_eq!(r.get::<_, String>(3), "public.orders");
    assert_eq!(r.get::<_, String>(4), "cleanup-task-7");
    let would: String = r.get(5);
    assert!(would.contains("one DELETE on public.orders"), "{would}");
    grant(&mut dba, &token);
    assert_eq!(
        count(
            &mut dba,
            "SELECT count(*) FROM ai_agent_safety.pending_requests"
        ),
        0
    );
    assert_eq!(status(&mut agent, &token), "granted");
    // The agent was told, with the token id only: it reads the decision.
    let n = agent
        .notifications()
        .timeout_iter(Duration::from_secs(30))
        .next()
        .unwrap()
        .expect("no NOTIFY on ai_agent_safety_decisions within 30 s");
    assert_eq!(n.channel(), "ai_agent_safety_decisions");
    let p: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
    assert_eq!(
        p,
        serde_json::json!({"token": token, "database": w.protected})
    );

    // 5. The agent runs its one statement.
    assert_eq!(
        agent
            .execute("DELETE FROM orders WHERE id = 1", &[])
            .unwrap(),
        1
    );
    assert_eq!(orders_left(&w, "1"), 0);
    assert_eq!(status(&mut agent, &token), "used");
    let used = dba
        .query_one(
            "SELECT status, used_statement FROM ai_agent_safety.approval_tokens WHERE token = $1::text::uuid",
            &[&token],
        )
        .unwrap();
    assert_eq!(used.get::<_, String>(0), "used");
    assert_eq!(
        used.get::<_, Option<String>>(1).as_deref(),
        Some("DELETE FROM orders WHERE id = 1")
    );

    // 6. Once only.
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 2", &[]));
    assert!(d.contains("already used"), "{d}");
    assert!(d.contains(&token), "{d}");
    assert_eq!(orders_left(&w, "2"), 1);
}

fn connect_with_task(w: &World, task: &str) -> Client {
    try_connect_with(
        &w.agent,
        &w.protected,
        &format!("-c ai_agent_safety.task_id={task}"),
    )
    .unwrap_or_else(|e| panic!("agent connect: {}", describe(&e)))
}

/// The exact call from the issue, unqualified, with no target.
#[test]
fn unqualified_request_without_target_means_any_object() {
    let w = World::new("anyobj");
    let dba_role = new_approver("anyobj");
    let mut agent = w.agent_in(&w.protected);
    let rows = agent
        .simple_query(
            "SELECT request_approval_token('delete_operation', 'database_cleanup_task_id_12345')",
        )
        .unwrap();
    let token = rows
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a token id");
    assert_eq!(token.len(), 36, "{token}");

    let mut dba = connect(&dba_role, &w.protected);
    let r = dba
        .query_one(
            "SELECT operation, target, task_id, would_allow FROM ai_agent_safety.pending_requests \
              WHERE token = $1::text::uuid",
            &[&token],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "DELETE");
    let target: String = r.get(1);
    assert!(target.contains("any object"), "{target}");
    assert!(target.contains(&w.protected), "{target}");
    assert_eq!(r.get::<_, String>(2), "database_cleanup_task_id_12345");
    let would: String = r.get(3);
    assert!(would.contains("one DELETE on any object"), "{would}");

    grant(&mut dba, &token);
    present(&mut agent, &token);
    assert_eq!(
        agent
            .execute("DELETE FROM orders WHERE id = 3", &[])
            .unwrap(),
        1
    );
    assert_eq!(orders_left(&w, "3"), 0);
}

// ---------------------------------------------------------------- refusals

#[test]
fn refused_expired() {
    let w = World::with_settings("expired", &[("ai_agent_safety.token_ttl", "1s")]);
    let dba_role = new_approver("expired");
    let mut agent = w.agent_in(&w.protected);
    let token = request(&mut agent, "DELETE", Some("orders"));
    let mut dba = connect(&dba_role, &w.protected);
    grant(&mut dba, &token);

    // Wait (bounded) until the server's clock is past expires_at.
    let start = Instant::now();
    loop {
        let past: bool = dba
            .query_one(
                "SELECT now() > expires_at FROM ai_agent_safety.approval_tokens WHERE token = $1::text::uuid",
                &[&token],
            )
            .unwrap()
            .get(0);
        if past {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "token with token_ttl = 1s did not expire within 3 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    assert_eq!(status(&mut agent, &token), "expired");
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(d.contains("expired at"), "{d}");
    assert_eq!(orders_left(&w, "1"), 1);
}

#[test]
fn refused_used() {
    let w = World::new("used");
    let dba = new_approver("used");
    let token = granted(&w, &dba, "DELETE", Some("public.orders"));
    let mut agent = w.agent_in(&w.protected);
    present(&mut agent, &token);
    assert_eq!(
        agent
            .execute("DELETE FROM orders WHERE id = 1", &[])
            .unwrap(),
        1
    );
    // The setting was cleared once the token was used (a pooled connection
    // never hands a spent token on); presented again, in the same session
    // and in a fresh one, it is refused.
    let shown: String = agent
        .query_one("SHOW ai_agent_safety.approval_token", &[])
        .unwrap()
        .get(0);
    assert_eq!(shown, "");
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 2", &[]));
    assert!(d.contains("already used"), "{d}");
    let mut again = w.agent_in(&w.protected);
    present(&mut again, &token);
    let d = refused_detail(again.execute("DELETE FROM orders WHERE id = 2", &[]));
    assert!(d.contains("already used"), "{d}");
    assert_eq!(orders_left(&w, "2"), 1);
}

#[test]
fn refused_wrong_operation() {
    let w = World::new("wrongop");
    let dba = new_approver("wrongop");
    let token = granted(&w, &dba, "DROP", Some("orders"));
    let mut agent = w.agent_in(&w.protected);
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(d.contains("granted for DROP but this is DELETE"), "{d}");
    assert_eq!(orders_left(&w, "1"), 1);
    // Refusal does not consume it.
    assert_eq!(status(&mut agent, &token), "granted");
}

#[test]
fn refused_wrong_target() {
    let w = World::new("wrongtgt");
    admin(&w.protected)
        .batch_execute(&format!(
            "SET ROLE {owner};
             CREATE TABLE public.customers (id int PRIMARY KEY);
             INSERT INTO public.customers SELECT generate_series(1, 5);
             GRANT ALL ON public.customers TO {agent};",
            owner = w.owner,
            agent = w.agent
        ))
        .unwrap();
    let dba = new_approver("wrongtgt");
    let token = granted(&w, &dba, "DELETE", Some("public.orders"));
    let mut agent = w.agent_in(&w.protected);
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM customers WHERE id = 1", &[]));
    assert!(
        d.contains("granted for public.orders but this is public.customers"),
        "{d}"
    );
    assert_eq!(
        count(&mut admin(&w.protected), "SELECT count(*) FROM customers"),
        5
    );
    assert_eq!(status(&mut agent, &token), "granted");
}

#[test]
fn refused_other_requester() {
    let w = World::new("otherreq");
    let second = new_agent(&w, "otherreq2", &[]);
    let dba = new_approver("otherreq");
    let token = granted(&w, &dba, "DELETE", Some("orders"));
    let mut b = connect(&second, &w.protected);
    present(&mut b, &token);
    let d = refused_detail(b.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(
        d.contains(&format!("requested by role \"{}\"", w.agent)),
        "{d}"
    );
    assert_eq!(orders_left(&w, "1"), 1);
    // The second agent cannot see the first agent's token either.
    let e = assert_sqlstate(
        b.query(
            "SELECT * FROM ai_agent_safety.approval_token_status($1::text::uuid)",
            &[&token],
        ),
        "P0002",
    );
    assert!(e.contains("no approval token"), "{e}");
    // The rightful requester still can use it.
    let mut a = w.agent_in(&w.protected);
    present(&mut a, &token);
    assert_eq!(
        a.execute("DELETE FROM orders WHERE id = 1", &[]).unwrap(),
        1
    );
}

#[test]
fn refused_wrong_database() {
    let w = World::new("wrongdb");
    let dba_role = new_approver("wrongdb");
    let mut agent_open = w.agent_in(&w.open);
    let token = request(&mut agent_open, "DELETE", Some("orders"));
    grant(&mut connect(&dba_role, &w.open), &token);

    let mut agent = w.agent_in(&w.protected);
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(
        d.contains(&format!("does not exist in database \"{}\"", w.protected)),
        "{d}"
    );
    assert_eq!(orders_left(&w, "1"), 1);
}

#[test]
fn refused_malformed_and_unknown_token() {
    let w = World::new("malformed");
    let mut agent = w.agent_in(&w.protected);
    let e = assert_sqlstate(
        agent.batch_execute("SET ai_agent_safety.approval_token = 'not-a-uuid'"),
        "22023",
    );
    assert!(
        e.contains("invalid value for parameter \"ai_agent_safety.approval_token\""),
        "{e}"
    );
    assert!(
        e.contains("\"not-a-uuid\" is not an approval token id"),
        "{e}"
    );
    let e = assert_sqlstate(
        agent.query(
            "SELECT set_config('ai_agent_safety.approval_token', 'x' || repeat('0', 35), false)",
            &[],
        ),
        "22023",
    );
    assert!(e.contains("is not an approval token id"), "{e}");
    // Nothing was set: the plain refusal.
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(d.contains("require_approval = on"), "{d}");

    // Well formed, but no such token.
    let random = "3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f";
    present(&mut agent, random);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(
        d.contains(&format!(
            "Approval token {random} does not exist in database \"{}\"",
            w.protected
        )),
        "{d}"
    );
    assert_eq!(orders_left(&w, "1"), 1);
}

#[test]
fn requester_cannot_grant_own_request() {
    let w = World::new("ownreq");
    let human = new_approver("ownreq");
    let mut h = connect(&human, &w.protected);
    let token = request(&mut h, "DELETE", Some("orders"));
    let e = assert_refused(try_grant(&mut h, &token));
    assert!(e.contains("may not grant its own request"), "{e}");
    let e = assert_refused(try_deny(&mut h, &token));
    assert!(e.contains("may not deny its own request"), "{e}");
    assert_eq!(status(&mut h, &token), "pending");

    // An agent requester is refused too (as an agent, first).
    let mut agent = w.agent_in(&w.protected);
    let t2 = request(&mut agent, "DELETE", Some("orders"));
    let e = assert_refused(try_grant(&mut agent, &t2));
    assert!(e.contains("may not grant approval tokens"), "{e}");
    assert_eq!(status(&mut agent, &t2), "pending");
}

#[test]
fn agent_in_approver_group_cannot_grant() {
    let w = World::new("agentappr");
    let sly = new_agent(&w, "agentappr_sly", &["ai_agent_approver"]);
    let mut agent = w.agent_in(&w.protected);
    let token = request(&mut agent, "DELETE", Some("orders"));
    let mut s = connect(&sly, &w.protected);
    let e = assert_refused(try_grant(&mut s, &token));
    assert!(
        e.contains(&format!(
            "agent role \"{sly}\" may not grant approval tokens"
        )),
        "{e}"
    );
    assert!(e.contains("separation of duties"), "{e}");
    assert_refused(try_deny(&mut s, &token));
    assert_refused(try_cancel(&mut s, &token));
    // Even with SELECT on the views, an agent sees no rows.
    assert_eq!(
        count(
            &mut s,
            "SELECT count(*) FROM ai_agent_safety.pending_requests"
        ),
        0
    );
    assert_eq!(
        count(
            &mut s,
            "SELECT count(*) FROM ai_agent_safety.approval_tokens"
        ),
        0
    );
    assert_eq!(status(&mut agent, &token), "pending");
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(d.contains("still pending"), "{d}");
}

#[test]
fn ordinary_role_cannot_grant() {
    let w = World::new("ordinary");
    let mut agent = w.agent_in(&w.protected);
    let token = request(&mut agent, "DELETE", Some("orders"));
    let mut o = w.owner_in(&w.protected);
    let e = assert_refused(try_grant(&mut o, &token));
    assert!(
        e.contains(&format!(
            "role \"{}\" may not grant approval tokens",
            w.owner
        )),
        "{e}"
    );
    assert!(e.contains("ai_agent_approver"), "{e}");
    assert_refused(try_deny(&mut o, &token));
    assert_refused(try_cancel(&mut o, &token));
    assert_refused(o.query("SELECT * FROM ai_agent_safety.pending_requests", &[]));
    assert_eq!(status(&mut agent, &token), "pending");
}

#[test]
fn denied_token_is_refused() {
    let w = World::new("denied");
    let dba_role = new_approver("denied");
    let mut agent = w.agent_in(&w.protected);
    let token = request(&mut agent, "DELETE", Some("orders"));
    let mut dba = connect(&dba_role, &w.protected);
    try_deny(&mut dba, &token).unwrap();
    assert_eq!(status(&mut agent, &token), "denied");
    let comment: String = agent
        .query_one(
            "SELECT comment FROM ai_agent_safety.approval_token_status($1::text::uuid)",
            &[&token],
        )
        .unwrap()
        .get(0);
    assert_eq!(comment, "not today");
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(d.contains(&format!("it was denied by {dba_role}")), "{d}");
    assert_eq!(orders_left(&w, "1"), 1);
    // A denial needs a reason.
    let t2 = request(&mut agent, "DELETE", Some("orders"));
    assert_sqlstate(
        dba.execute(
            "SELECT ai_agent_safety.deny_approval_token($1::text::uuid, NULL)",
            &[&t2],
        ),
        "22004",
    );
}

#[test]
fn cancelled_token_is_refused() {
    let w = World::new("cancel");
    let dba_role = new_approver("cancel");
    let mut agent = w.agent_in(&w.protected);
    // Cancelled while pending.
    let token = request(&mut agent, "DELETE", Some("orders"));
    try_cancel(&mut agent, &token).unwrap();
    assert_eq!(status(&mut agent, &token), "cancelled");
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(d.contains("it was cancelled"), "{d}");
    // Cancelled after the grant.
    let t2 = request(&mut agent, "DELETE", Some("orders"));
    grant(&mut connect(&dba_role, &w.protected), &t2);
    try_cancel(&mut agent, &t2).unwrap();
    present(&mut agent, &t2);
    let d = refused_detail(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(d.contains("it was cancelled"), "{d}");
    assert_eq!(orders_left(&w, "1"), 1);
}

#[test]
fn deciding_a_decided_token_names_its_state() {
    let w = World::new("decided");
    let dba_role = new_approver("decided");
    let mut dba = connect(&dba_role, &w.protected);
    let mut agent = w.agent_in(&w.protected);

    let t = request(&mut agent, "DELETE", Some("orders"));
    grant(&mut dba, &t);
    let e = assert_sqlstate(try_grant(&mut dba, &t), "55000");
    assert!(e.contains("is not pending: it is granted"), "{e}");
    let e = assert_sqlstate(try_deny(&mut dba, &t), "55000");
    assert!(e.contains("is not pending: it is granted"), "{e}");

    present(&mut agent, &t);
    agent
        .execute("DELETE FROM orders WHERE id = 1", &[])
        .unwrap();
    let e = assert_sqlstate(try_grant(&mut dba, &t), "55000");
    assert!(e.contains("is not pending: it is used"), "{e}");
    let e = assert_sqlstate(try_cancel(&mut agent, &t), "55000");
    assert!(e.contains("cannot be cancelled: it is used"), "{e}");

    let t = request(&mut agent, "DELETE", Some("orders"));
    try_deny(&mut dba, &t).unwrap();
    let e = assert_sqlstate(try_grant(&mut dba, &t), "55000");
    assert!(e.contains("is not pending: it is denied"), "{e}");

    let t = request(&mut agent, "DELETE", Some("orders"));
    try_cancel(&mut agent, &t).unwrap();
    let e = assert_sqlstate(try_grant(&mut dba, &t), "55000");
    assert!(e.contains("is not pending: it is cancelled"), "{e}");
    let e = assert_sqlstate(try_cancel(&mut agent, &t), "55000");
    assert!(e.contains("cannot be cancelled: it is cancelled"), "{e}");

    // Unknown token.
    let e = assert_sqlstate(
        try_grant(&mut dba, "3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        "P0002",
    );
    assert!(e.contains("does not exist in database"), "{e}");
}

// ---------------------------------------------------------------- rollback

#[test]
fn rolled_back_statement_leaves_token_usable() {
    let w = World::new("rollback");
    let dba = new_approver("rollback");
    let token = granted(&w, &dba, "DELETE", Some("orders"));
    let mut agent = w.agent_in(&w.protected);

    let mut tx = agent.transaction().unwrap();
    tx.batch_execute(&format!(
        "SET LOCAL ai_agent_safety.approval_token = '{token}'"
    ))
    .unwrap();
    assert_eq!(
        tx.execute("DELETE FROM orders WHERE id = 1", &[]).unwrap(),
        1
    );
    tx.rollback().unwrap();
    assert_eq!(orders_left(&w, "1"), 1);
    assert_eq!(status(&mut agent, &token), "granted");
    // SET LOCAL ended with the transaction: the refusal names the token
    // the agent holds but did not present.
    let m = assert_refused(agent.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(
        m.contains(&format!("holds granted approval token {token}")),
        "{m}"
    );

    // A statement that fails after the check leaves it usable too.
    present(&mut agent, &token);
    assert_sqlstate(
        agent.execute("DELETE FROM orders WHERE id = 1 AND note::int > 0", &[]),
        "22P02",
    );
    assert_eq!(status(&mut agent, &token), "granted");

    assert_eq!(
        agent
            .execute("DELETE FROM orders WHERE id = 1", &[])
            .unwrap(),
        1
    );
    assert_eq!(orders_left(&w, "1"), 0);
    assert_eq!(status(&mut agent, &token), "used");
}

// ---------------------------------------------------------------- races

#[test]
fn concurrent_sessions_one_token_exactly_one_wins() {
    const N: usize = 10;
    let w = World::new("race");
    let dba = new_approver("race");
    let token = granted(&w, &dba, "DELETE", Some("orders"));
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (1..=N)
        .map(|id| {
            let barrier = Arc::clone(&barrier);
            let (agent, db, token) = (w.agent.clone(), w.protected.clone(), token.clone());
            std::thread::spawn(move || {
                let mut c = connect(&agent, &db);
                c.batch_execute(&format!("SET ai_agent_safety.approval_token = '{token}'"))
                    .unwrap();
                barrier.wait();
                c.execute(&format!("DELETE FROM orders WHERE id = {id}"), &[])
                    .map_err(|e| {
                        (
                            e.as_db_error().map(|d| d.code().code().to_string()),
                            describe(&e),
                        )
                    })
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins: Vec<_> = results.iter().filter(|r| matches!(r, Ok(1))).collect();
    assert_eq!(wins.len(), 1, "{results:?}");
    for r in &results {
        match r {
            Ok(n) => assert_eq!(*n, 1, "{results:?}"),
            Err((code, msg)) => {
                assert_eq!(code.as_deref(), Some("42501"), "{msg}");
                assert!(
                    msg.contains("already used") || msg.contains("could not be consumed"),
                    "{msg}"
                );
            }
        }
    }
    assert_eq!(
        count(&mut admin(&w.protected), "SELECT count(*) FROM orders"),
        9
    );
}

// ---------------------------------------------------------------- coverage

#[test]
fn token_covers_fk_cascade_but_not_a_second_statement() {
    let w = World::new("cascade");
    admin(&w.protected)
        .batch_execute(&format!(
            "SET ROLE {owner};
             CREATE TABLE public.parent (id int PRIMARY KEY);
             CREATE TABLE public.child (id int PRIMARY KEY,
                 parent_id int NOT NULL REFERENCES public.parent ON DELETE CASCADE);
             INSERT INTO public.parent SELECT generate_series(1, 3);
             INSERT INTO public.child SELECT g, 1 + g % 3 FROM generate_series(1, 9) g;
             GRANT ALL ON public.parent, public.child TO {agent};",
            owner = w.owner,
            agent = w.agent
        ))
        .unwrap();
    let dba = new_approver("cascade");
    let token = granted(&w, &dba, "DELETE", Some("parent"));
    let mut agent = w.agent_in(&w.protected);
    present(&mut agent, &token);
    assert_eq!(
        agent
            .execute("DELETE FROM parent WHERE id = 1", &[])
            .unwrap(),
        1
    );
    let mut a = admin(&w.protected);
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM child WHERE parent_id = 1"),
        0
    );
    assert_eq!(count(&mut a, "SELECT count(*) FROM child"), 6);

    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM parent WHERE id = 2", &[]));
    assert!(d.contains("already used"), "{d}");
    let d = refused_detail(agent.execute("DELETE FROM child WHERE parent_id = 2", &[]));
    assert!(d.contains("already used"), "{d}");
    assert_eq!(count(&mut a, "SELECT count(*) FROM parent"), 2);
    assert_eq!(count(&mut a, "SELECT count(*) FROM child"), 6);
}

/// A token approves one operation on one object, not the code the statement
/// calls. In the open database the attack works: an agent's DELETE on its
/// own scratch table runs a function in its WHERE clause, and that function
/// destroys `orders` as a side effect. In the protected database, with a
/// token granted for `DELETE on public.scratch`, each side effect (a
/// function's DELETE, a trigger's DELETE, a function's role change) is
/// judged on its own and refused, the statement rolls back with it, and the
/// token stays usable for the plain DELETE it was granted for.
#[test]
fn token_does_not_cover_code_the_statement_calls() {
    let w = World::new("callee");
    let dba = new_approver("callee");
    let setup = format!(
        "CREATE TABLE public.scratch (id int);
         INSERT INTO public.scratch SELECT generate_series(1, 3);
         CREATE FUNCTION public.evil() RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN DELETE FROM public.orders; RETURN true; END $$;
         CREATE FUNCTION public.promote() RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN EXECUTE 'ALTER ROLE {agent} PASSWORD ''mine'''; RETURN true; END $$;
         CREATE TABLE public.trig (id int);
         INSERT INTO public.trig SELECT generate_series(1, 3);
         CREATE FUNCTION public.purge() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN DELETE FROM public.orders WHERE id > 5; RETURN OLD; END $$;
         CREATE TRIGGER purge AFTER DELETE ON public.trig
           FOR EACH ROW EXECUTE FUNCTION public.purge();",
        agent = w.agent
    );
    for db in [&w.protected, &w.open] {
        w.agent_in(db)
            .batch_execute(&setup)
            .unwrap_or_else(|e| panic!("setup in {db}: {}", describe(&e)));
    }
    // Unprotected: the side effect happens.
    let mut open = w.agent_in(&w.open);
    open.batch_execute("DELETE FROM scratch WHERE id = 1 AND evil()")
        .unwrap();
    assert_eq!(count(&mut admin(&w.open), "SELECT count(*) FROM orders"), 0);

    // Protected: a token for DELETE on public.scratch.
    let token = granted(&w, &dba, "DELETE", Some("public.scratch"));
    let mut agent = w.agent_in(&w.protected);
    present(&mut agent, &token);
    let msg =
        assert_guard_refused(agent.batch_execute("DELETE FROM scratch WHERE id = 1 AND evil()"));
    assert!(msg.contains("DELETE on public.orders refused"), "{msg}");
    let msg = assert_refused(agent.batch_execute("DELETE FROM scratch WHERE id = 1 AND promote()"));
    assert!(
        msg.contains("may not create, alter, drop or grant roles"),
        "{msg}"
    );
    let on_trig = granted(&w, &dba, "DELETE", Some("public.trig"));
    present(&mut agent, &on_trig);
    let msg = assert_guard_refused(agent.batch_execute("DELETE FROM trig WHERE id = 1"));
    assert!(msg.contains("DELETE on public.orders refused"), "{msg}");
    let mut a = admin(&w.protected);
    assert_eq!(count(&mut a, "SELECT count(*) FROM orders"), 10);
    assert_eq!(count(&mut a, "SELECT count(*) FROM scratch"), 3);
    assert_eq!(count(&mut a, "SELECT count(*) FROM trig"), 3);
    assert_eq!(
        count(
            &mut a,
            &format!(
                "SELECT count(*) FROM pg_authid WHERE rolname = '{}' AND rolpassword IS NOT NULL",
                w.agent
            )
        ),
        0
    );
    // The token still covers the operation it was granted for, once.
    present(&mut agent, &token);
    assert_eq!(
        agent
            .execute("DELETE FROM scratch WHERE id = 1", &[])
            .unwrap(),
        1
    );
    present(&mut agent, &token);
    let d = refused_detail(agent.execute("DELETE FROM scratch WHERE id = 2", &[]));
    assert!(d.contains("already used"), "{d}");
}

#[test]
fn drop_table_with_token() {
    let w = World::new("droptbl");
    let dba_role = new_approver("droptbl");
    let mut dba = connect(&dba_role, &w.protected);
    let mut agent = w.agent_in(&w.protected);
    agent
        .batch_execute("CREATE TABLE scratch_a (id int); CREATE TABLE scratch_b (id int);")
        .unwrap();
    let msg = assert_refused(agent.batch_execute("DROP TABLE scratch_a"));
    assert!(msg.contains("DROP"), "{msg}");

    for (table, target) in [("scratch_a", "TABLE scratch_a"), ("scratch_b", "scratch_b")] {
        let t = request(&mut agent, "DROP", Some(target));
        let shown: String = dba
            .query_one(
                "SELECT target FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
                &[&t],
            )
            .unwrap()
            .get(0);
        assert_eq!(shown, format!("public.{table}"));
        grant(&mut dba, &t);
        present(&mut agent, &t);
        agent
            .batch_execute(&format!("DROP TABLE {table}"))
            .unwrap_or_else(|e| {
                panic!(
                    "DROP TABLE {table} with token for {target}: {}",
                    describe(&e)
                )
            });
        assert_eq!(
            count(
                &mut agent,
                &format!("SELECT count(*) FROM pg_class WHERE relname = '{table}'")
            ),
            0
        );
        assert_eq!(status(&mut agent, &t), "used");
    }
}

#[test]
fn drop_database_with_token_from_another_database() {
    let w = World::new("dropdb");
    let victim = unique("dropdb_victim");
    let mut su = admin("postgres");
    su.batch_execute(&format!("CREATE DATABASE {victim} OWNER {}", w.agent))
        .unwrap();
    su.batch_execute(&format!(
        "ALTER DATABASE {victim} SET ai_agent_safety.require_approval = on"
    ))
    .unwrap();
    let dba_role = new_approver("dropdb");
    let exists = |su: &mut Client| {
        count(
            su,
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{victim}'"),
        )
    };

    // From the open database: refused without a token (judged by the target's settings).
    let mut agent = w.agent_in(&w.open);
    let msg = assert_refused(agent.batch_execute(&format!("DROP DATABASE {victim}")));
    assert!(msg.contains(&victim), "{msg}");
    assert_eq!(exists(&mut su), 1);

    // A token for a table does not cover it.
    let wrong = request(&mut agent, "DROP", Some("orders"));
    grant(&mut connect(&dba_role, &w.open), &wrong);
    present(&mut agent, &wrong);
    assert_refused(agent.batch_execute(&format!("DROP DATABASE {victim}")));
    assert_eq!(exists(&mut su), 1);

    let t = request(&mut agent, "DROP", Some(&format!("DATABASE {victim}")));
    let mut dba = connect(&dba_role, &w.open);
    let shown: String = dba
        .query_one(
            "SELECT target FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
            &[&t],
        )
        .unwrap()
        .get(0);
    assert_eq!(shown, format!("DATABASE {victim}"));
    grant(&mut dba, &t);
    present(&mut agent, &t);
    agent
        .batch_execute(&format!("DROP DATABASE {victim}"))
        .unwrap_or_else(|e| panic!("DROP DATABASE with token: {}", describe(&e)));
    assert_eq!(exists(&mut su), 0);
    assert_eq!(status(&mut agent, &t), "used");
}

// ---------------------------------------------------------------- tampering

#[test]
fn agent_cannot_touch_the_tokens_table() {
    let w = World::new("tamper");
    // In the open database no guard rule applies: this is plain privilege.
    let mut agent = w.agent_in(&w.open);
    let own = request(&mut agent, "DELETE", Some("orders"));
    for sql in [
        "SELECT * FROM ai_agent_safety.tokens".to_string(),
        "INSERT INTO ai_agent_safety.tokens (requested_by, operation, task_id, state, expires_at) \
         VALUES (session_user, 'DELETE', 't', 'granted', now() + interval '1 hour')"
            .to_string(),
        format!(
            "UPDATE ai_agent_safety.tokens SET state = 'granted', expires_at = now() + interval '1 hour' \
             WHERE id = '{own}'"
        ),
        "DELETE FROM ai_agent_safety.tokens".to_string(),
        "TRUNCATE ai_agent_safety.tokens".to_string(),
        "DROP TABLE ai_agent_safety.tokens".to_string(),
        "ALTER TABLE ai_agent_safety.tokens DISABLE ROW LEVEL SECURITY".to_string(),
        format!("SELECT ai_agent_safety._decide('{own}', 'granted', NULL, 'grant')"),
        "SELECT * FROM ai_agent_safety.approval_tokens".to_string(),
        "SELECT * FROM ai_agent_safety.pending_requests".to_string(),
    ] {
        let e = assert_refused(agent.batch_execute(&sql));
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "{sql}: {e}"
        );
    }
    // Through a SECURITY DEFINER function the agent owns: still the agent's rights.
    agent
        .batch_execute(&format!(
            "CREATE FUNCTION public.sneak() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
             BEGIN
                 UPDATE ai_agent_safety.tokens SET state = 'granted', decided_by = 'postgres',
                        expires_at = now() + interval '1 hour' WHERE id = '{own}';
             END $f$;"
        ))
        .unwrap();
    let e = assert_refused(agent.batch_execute("SELECT public.sneak()"));
    assert!(e.contains("permission denied for table tokens"), "{e}");
    assert_eq!(status(&mut agent, &own), "pending");

    // In the protected database: refused as well, nothing changed.
    let mut p = w.agent_in(&w.protected);
    let t = request(&mut p, "DELETE", Some("orders"));
    for sql in [
        format!("UPDATE ai_agent_safety.tokens SET state = 'granted' WHERE id = '{t}'"),
        "DELETE FROM ai_agent_safety.tokens".to_string(),
        "TRUNCATE ai_agent_safety.tokens".to_string(),
        "DROP TABLE ai_agent_safety.tokens".to_string(),
    ] {
        assert_refused(p.batch_execute(&sql));
    }
    p.batch_execute(&format!(
        "CREATE FUNCTION public.sneak() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
         BEGIN
             UPDATE ai_agent_safety.tokens SET state = 'granted',
                    expires_at = now() + interval '1 hour' WHERE id = '{t}';
         END $f$;"
    ))
    .unwrap();
    assert_refused(p.batch_execute("SELECT public.sneak()"));
    assert_eq!(status(&mut p, &t), "pending");
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM ai_agent_safety.tokens WHERE state = 'pending'"
        ),
        1
    );
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_requests_are_rejected() {
    let w = World::new("badinput");
    let mut agent = w.agent_in(&w.protected);

    for task in [None, Some(""), Some("   ")] {
        let e = assert_sqlstate(try_request(&mut agent, "DELETE", task, None, None), "22004");
        assert!(e.contains("task_id is required"), "{task:?}: {e}");
    }

    let e = assert_sqlstate(
        try_request(&mut agent, "explode", Some("t"), None, None),
        "22023",
    );
    assert!(e.contains("unknown operation \"explode\""), "{e}");
    for name in [
        "DROP",
        "DELETE",
        "TRUNCATE",
        "delete_operation",
        "drop_operation",
    ] {
        assert!(e.contains(name), "accepted names not listed: {e}");
    }
    assert_sqlstate(try_request(&mut agent, "", Some("t"), None, None), "22004");
    assert_sqlstate(
        try_request(&mut agent, "delete_", Some("t"), None, None),
        "22023",
    );

    for (spelled, stored) in [
        ("DELETE_OPERATION", "DELETE"),
        ("drop", "DROP"),
        ("Truncate_Operation", "TRUNCATE"),
        ("  delete  ", "DELETE"),
    ] {
        let t = try_request(&mut agent, spelled, Some("t"), Some("orders"), None)
            .unwrap_or_else(|e| panic!("{spelled}: {}", describe(&e)));
        let op: String = agent
            .query_one(
                "SELECT operation FROM ai_agent_safety.approval_token_status($1::text::uuid)",
                &[&t],
            )
            .unwrap()
            .get(0);
        assert_eq!(op, stored, "{spelled}");
    }

    for target in [
        "no_such_table",
        "DATABASE no_such_db",
        "SCHEMA no_such_schema",
        "public.\"bad",
    ] {
        let e = assert_sqlstate(
            try_request(&mut agent, "DROP", Some("t"), Some(target), None),
            "42704",
        );
        assert!(e.contains("does not exist"), "{target}: {e}");
    }

    let long_task = "t".repeat(201);
    let e = assert_sqlstate(
        try_request(&mut agent, "DELETE", Some(&long_task), None, None),
        "22001",
    );
    assert!(
        e.contains("task_id is too long: 201 characters, at most 200"),
        "{e}"
    );
    try_request(&mut agent, "DELETE", Some(&"t".repeat(200)), None, None).unwrap();

    let long_reason = "r".repeat(2001);
    let e = assert_sqlstate(
        try_request(&mut agent, "DELETE", Some("t"), None, Some(&long_reason)),
        "22001",
    );
    assert!(
        e.contains("reason is too long: 2001 characters, at most 2000"),
        "{e}"
    );
    try_request(
        &mut agent,
        "DELETE",
        Some("t"),
        None,
        Some(&"r".repeat(2000)),
    )
    .unwrap();

    // NULL tokens.
    let dba_role = new_approver("badinput");
    let mut dba = connect(&dba_role, &w.protected);
    for sql in [
        "SELECT ai_agent_safety.grant_approval_token(NULL)",
        "SELECT ai_agent_safety.deny_approval_token(NULL, 'x')",
        "SELECT ai_agent_safety.cancel_approval_token(NULL)",
        "SELECT * FROM ai_agent_safety.approval_token_status(NULL)",
    ] {
        let e = assert_sqlstate(dba.batch_execute(sql), "22004");
        assert!(e.contains("token is required"), "{sql}: {e}");
    }
    // Nothing oversized got in.
    assert_eq!(
        count(
            &mut dba,
            "SELECT count(*) FROM ai_agent_safety.approval_tokens \
              WHERE length(task_id) > 200 OR length(reason) > 2000"
        ),
        0
    );
}

/// A reason within the 2000-character limit must never make the request fail,
/// whatever its characters (4-byte characters; control characters that JSON
/// escapes as \u00XX): the notice carries only the token id and database, and
/// the approver reads the whole reason from the table.
#[test]
fn long_reason_still_requests_and_notifies() {
    let w = World::new("longreason");
    let dba_role = new_approver("longreason");
    let mut dba = connect(&dba_role, &w.protected);
    dba.batch_execute("LISTEN ai_agent_safety_requests")
        .unwrap();
    let mut agent = w.agent_in(&w.protected);
    let emoji = "\u{1F600}".repeat(2000);
    let control = "\u{1}".repeat(2000);
    let mut tokens = vec![];
    for reason in [&emoji, &control] {
        let t = try_request(
            &mut agent,
            "DELETE",
            Some(&"\u{1}".repeat(200)),
            Some("orders"),
            Some(reason),
        )
        .unwrap_or_else(|e| panic!("request with a 2000-character reason: {}", describe(&e)));
        tokens.push(t);
    }
    for (t, reason) in tokens.iter().zip([&emoji, &control]) {
        let n = dba
            .notifications()
            .timeout_iter(Duration::from_secs(30))
            .next()
            .unwrap()
            .expect("no NOTIFY within 30 s");
        let p: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"token": t, "database": w.protected,
                               "operation": "DELETE", "target": "public.orders"})
        );
        let full: String = dba
            .query_one(
                "SELECT reason FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
                &[&t],
            )
            .unwrap()
            .get(0);
        assert_eq!(&full, reason);
    }
}

/// A token requested with no target is shown to the approver as "one DROP on
/// any object in database <here>": it must not let the agent DROP DATABASE of a
/// different, protected database.
#[test]
fn any_object_token_does_not_cover_another_database() {
    let w = World::new("anydb");
    let victim = unique("anydb_victim");
    let mut su = admin("postgres");
    su.batch_execute(&format!("CREATE DATABASE {victim} OWNER {}", w.agent))
        .unwrap();
    su.batch_execute(&format!(
        "ALTER DATABASE {victim} SET ai_agent_safety.require_approval = on"
    ))
    .unwrap();
    let dba_role = new_approver("anydb");
    let mut agent = w.agent_in(&w.open);
    let t = request(&mut agent, "DROP", None);
    let mut dba = connect(&dba_role, &w.open);
    let would: String = dba
        .query_one(
            "SELECT would_allow FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
            &[&t],
        )
        .unwrap()
        .get(0);
    assert!(
        would.contains(&format!("any object in database {}", w.open)),
        "{would}"
    );
    grant(&mut dba, &t);
    present(&mut agent, &t);
    let r = agent.batch_execute(&format!("DROP DATABASE {victim}"));
    let gone = count(
        &mut su,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{victim}'"),
    ) == 0;
    if !gone {
        su.batch_execute(&format!("DROP DATABASE {victim}"))
            .unwrap();
    }
    assert_refused(r);
}

/// A token names what the approver approves. For a role that is only ever
/// DROP OWNED BY (an agent's DROP ROLE is never approved by token): a
/// request naming `ROLE x` is refused and points at `OWNED BY x`, which is
/// what the approver then reads, and the token does not cover DROP ROLE.
#[test]
fn a_role_is_a_target_only_as_drop_owned_by() {
    let w = World::new("ownedtok");
    // Without the recycle bin: with it, a DROP OWNED BY that would remove
    // tables is refused even when approved (tests/recycle_objects.rs).
    admin("postgres")
        .batch_execute(&format!(
            "ALTER ROLE {} SET ai_agent_safety.recycle_retention = 0",
            w.agent
        ))
        .unwrap();
    let dba_role = new_approver("ownedtok");
    let mut dba = connect(&dba_role, &w.protected);
    let mut a = w.agent_in(&w.protected);
    a.batch_execute("CREATE TABLE public.agent_notes (t text)")
        .unwrap();
    let e = try_request(
        &mut a,
        "DROP",
        Some("t"),
        Some(&format!("ROLE {}", w.agent)),
        None,
    )
    .expect_err("a role target is refused");
    let text = describe(&e);
    assert!(
        text.contains("no approval token covers a change to a role")
            && text.contains(&format!("'OWNED BY {}'", w.agent)),
        "{text}"
    );
    let stmt = format!("DROP OWNED BY {}", w.agent);
    let msg = assert_guard_refused(a.batch_execute(&stmt));
    assert!(
        msg.contains(&format!("'OWNED BY {}'::text", w.agent)),
        "{msg}"
    );
    let token = request(&mut a, "DROP", Some(&format!("OWNED BY {}", w.agent)));
    let (target, would): (String, String) = dba
        .query_one(
            "SELECT target, would_allow FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
            &[&token],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(target, format!("OWNED BY {}", w.agent));
    assert!(
        would.contains(&format!("one DROP OWNED BY (DROP) on OWNED BY {}", w.agent)),
        "{would}"
    );
    grant(&mut dba, &token);
    present(&mut a, &token);
    let msg = assert_refused(a.batch_execute(&format!("DROP ROLE {}", w.agent)));
    assert!(
        msg.contains("may not create, alter, drop or grant roles"),
        "{msg}"
    );
    a.batch_execute(&stmt)
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.agent_notes')"
        ),
        0
    );
}

/// What an approver reads about a target, which the agent cannot dress up:
/// its oid, owner, size, estimated rows, and the names the extension saw
/// it have (an agent renamed `customers` to `tmp_import_2019` before asking
/// to drop "an old import table").
#[test]
fn approvers_see_facts_and_earlier_names() {
    let w = World::new("facts");
    let dba_role = new_approver("facts");
    let mut a = w.agent_in(&w.protected);
    a.batch_execute(
        "CREATE TABLE public.customers AS SELECT g AS id FROM generate_series(1, 1000) g;
         ANALYZE public.customers;
         ALTER TABLE public.customers RENAME TO tmp_import_2019;",
    )
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let token = request(&mut a, "DROP", Some("public.tmp_import_2019"));
    let mut dba = connect(&dba_role, &w.protected);
    let r = dba
        .query_one(
            "SELECT target, target_oid = 'public.tmp_import_2019'::regclass, target_owner::text,
                    target_size IS NOT NULL, target_estimated_rows, target_earlier_names
               FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
            &[&token],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(r.get::<_, String>(0), "public.tmp_import_2019");
    assert!(r.get::<_, bool>(1));
    assert_eq!(r.get::<_, String>(2), w.agent);
    assert!(r.get::<_, bool>(3));
    assert_eq!(r.get::<_, i64>(4), 1000);
    let names: Vec<String> = r.get(5);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].starts_with("public.customers (until ")
            && names[0].ends_with(&format!("renamed by {})", w.agent)),
        "{names:?}"
    );
    // Agents cannot read or write that record.
    let msg = assert_refused(a.batch_execute("DELETE FROM ai_agent_safety.renames"));
    assert!(msg.contains("permission denied"), "{msg}");
}

/// A token names the exact form of the operation when it is not the plain
/// one: the approver who read "DROP on public.v" did not approve a CREATE OR
/// REPLACE VIEW of it, nor the reverse.
#[test]
fn a_token_names_the_exact_form() {
    let w = World::new("exactverb");
    let dba_role = new_approver("exactverb");
    let mut dba = connect(&dba_role, &w.protected);
    let mut a = w.agent_in(&w.protected);
    a.batch_execute("CREATE VIEW public.v AS SELECT id FROM public.orders")
        .unwrap();
    let replace = "CREATE OR REPLACE VIEW public.v AS SELECT id FROM public.orders WHERE false";
    // A token naming only the class: refused, and the hint names the form.
    let plain = request(&mut a, "DROP", Some("public.v"));
    grant(&mut dba, &plain);
    present(&mut a, &plain);
    let msg = assert_refused(a.batch_execute(replace));
    assert!(
        msg.contains("a token must name that form")
            && msg.contains("verb => 'CREATE OR REPLACE VIEW'::text"),
        "{msg}"
    );
    // Asked for by name, the approver reads it, and it covers that form only.
    let named: String = a
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DROP', 'task-42', 'public.v', verb => 'CREATE OR REPLACE VIEW')::text",
            &[],
        )
        .unwrap()
        .get(0);
    let would: String = dba
        .query_one(
            "SELECT would_allow FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
            &[&named],
        )
        .unwrap()
        .get(0);
    assert!(
        would.contains("one CREATE OR REPLACE VIEW (DROP) on public.v"),
        "{would}"
    );
    grant(&mut dba, &named);
    present(&mut a, &named);
    let msg = assert_refused(a.batch_execute("DROP VIEW public.v"));
    assert!(
        msg.contains("it was granted for CREATE OR REPLACE VIEW but this is DROP VIEW"),
        "{msg}"
    );
    a.batch_execute(replace)
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(count(&mut a, "SELECT count(*) FROM public.v"), 0);
}
