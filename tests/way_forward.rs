//! The way forward works for real agents: through pools, poolers and
//! clients that show only the primary message. The token travels with the
//! statement as a comment tag, over the simple and the extended protocol; a
//! token a SET presented is cleared once used; a lost SET is diagnosed; a
//! read-only transaction gets a clear message; no error carries a Rust
//! backtrace, though the test cluster runs with RUST_BACKTRACE=full.

use aas_integration::*;
use postgres::Client;

fn request(agent: &mut Client, target: &str, task: &str) -> String {
    agent
        .query_one(
            "SELECT request_approval_token('DELETE', $1, $2)::text",
            &[&task, &target],
        )
        .unwrap()
        .get(0)
}

fn granted(w: &World, agent: &mut Client, approver: &str) -> String {
    let token = request(agent, "public.orders", "task-wf");
    w.grant(approver, &token);
    token
}

fn orders(w: &World, id: i32) -> i64 {
    count(
        &mut admin(&w.protected),
        &format!("SELECT count(*) FROM public.orders WHERE id = {id}"),
    )
}

#[test]
fn the_refusal_message_itself_says_what_to_run() {
    let w = World::new("wf_msg");
    let mut agent = w.agent_in(&w.protected);
    let e = agent
        .batch_execute("DELETE FROM orders WHERE id = 1")
        .unwrap_err();
    let d = e.as_db_error().expect("a refusal");
    assert_eq!(d.code().code(), "42501");
    // What survives a client that drops DETAIL and HINT: the message alone.
    assert!(
        d.message().ends_with(
            "; request one with SELECT ai_agent_safety.request_approval_token('DELETE'::text, '<task id>'::text, 'public.orders'::text), and once a human grants it add /*ai_agent_safety_token='<token id>'*/ to the statement"
        ),
        "{}",
        d.message()
    );
}

#[test]
fn the_token_travels_in_the_statement_over_both_protocols_once() {
    let w = World::new("wf_tag");
    let approver = new_approver("wf_tag");
    let mut agent = w.agent_in(&w.protected);
    // Extended protocol, with a bind parameter.
    let token = granted(&w, &mut agent, &approver);
    let sql = format!("DELETE FROM orders WHERE id = $1 /*ai_agent_safety_token='{token}'*/");
    assert_eq!(agent.execute(&sql, &[&1i32]).unwrap(), 1);
    assert_eq!(orders(&w, 1), 0);
    assert_eq!(w.token_status(&token), "used");
    let e = assert_refused(agent.execute(&sql, &[&2i32]));
    assert!(
        e.contains(&format!(
            "approval token {token} was already used; request a new one"
        )),
        "{e}"
    );
    assert_eq!(orders(&w, 2), 1);
    // Simple protocol, the tag leading, in sqlcommenter's list form, with a task.
    let token = granted(&w, &mut agent, &approver);
    agent
        .batch_execute(&format!(
            "/*ai_agent_safety_task='ticket%2042',ai_agent_safety_token='{token}'*/ DELETE FROM orders WHERE id = 3"
        ))
        .unwrap();
    assert_eq!(orders(&w, 3), 0);
    let task: String = admin(&w.protected)
        .query_one(
            "SELECT task_id FROM ai_agent_safety.audit_log WHERE token = $1::text::uuid AND event = 'consumed'",
            &[&token],
        )
        .map(|r| r.get(0))
        .unwrap_or_default();
    // The audit event is loaded by the writer: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut task = task;
    while task.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        task = admin(&w.protected)
            .query_opt(
                "SELECT task_id FROM ai_agent_safety.audit_log WHERE token = $1::text::uuid AND event = 'consumed'",
                &[&token],
            )
            .unwrap()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .unwrap_or_default();
    }
    assert_eq!(task, "ticket 42");
}

#[test]
fn a_tag_inside_a_string_presents_nothing() {
    let w = World::new("wf_lit");
    let approver = new_approver("wf_lit");
    let mut agent = w.agent_in(&w.protected);
    let token = granted(&w, &mut agent, &approver);
    let e = assert_refused(agent.batch_execute(&format!(
        "DELETE FROM orders WHERE note = '/*ai_agent_safety_token=''{token}''*/'"
    )));
    assert!(e.contains("did not present it"), "{e}");
    assert_eq!(w.token_status(&token), "granted");
}

#[test]
fn a_token_set_for_the_session_is_cleared_once_used_and_kept_if_rolled_back() {
    let w = World::new("wf_set");
    let approver = new_approver("wf_set");
    let mut agent = w.agent_in(&w.protected);
    let token = granted(&w, &mut agent, &approver);
    let show = |c: &mut Client| -> String {
        c.query_one("SHOW ai_agent_safety.approval_token", &[])
            .unwrap()
            .get(0)
    };
    agent
        .batch_execute(&format!("SET ai_agent_safety.approval_token = '{token}'"))
        .unwrap();
    // Used in a transaction that rolls back: still set, still unused.
    agent
        .batch_execute("BEGIN; DELETE FROM orders WHERE id = 4; ROLLBACK")
        .unwrap();
    assert_eq!(show(&mut agent), token);
    assert_eq!(w.token_status(&token), "granted");
    // Used and committed: the setting is empty, so the next client of a
    // pooled connection finds nothing.
    agent
        .batch_execute("DELETE FROM orders WHERE id = 4")
        .unwrap();
    assert_eq!(show(&mut agent), "");
    assert_eq!(w.token_status(&token), "used");
    let e = assert_refused(agent.batch_execute("DELETE FROM orders WHERE id = 5"));
    assert!(e.contains("needs an approval token"), "{e}");
}

#[test]
fn a_lost_set_is_named_with_the_token_it_lost() {
    let w = World::new("wf_lost");
    let approver = new_approver("wf_lost");
    let mut agent = w.agent_in(&w.protected);
    let token = granted(&w, &mut agent, &approver);
    // The SET went to another pooled connection: this one presents nothing.
    let mut other = w.agent_in(&w.protected);
    let e = other
        .batch_execute("DELETE FROM orders WHERE id = 6")
        .unwrap_err();
    let m = e.as_db_error().unwrap().message().to_string();
    assert!(
        m.contains(&format!(
            "it holds granted approval token {token} for this, but the statement did not present it; send it in the same call: add /*ai_agent_safety_token='{token}'*/ to the statement"
        )),
        "{m}"
    );
    // A token for another object is no explanation: the plain refusal.
    let e = assert_refused(other.batch_execute("DROP TABLE orders"));
    assert!(!e.contains("holds granted"), "{e}");
    assert_eq!(w.token_status(&token), "granted");
}

#[test]
fn read_only_transactions_get_clear_messages() {
    let w = World::new("wf_ro");
    let approver = new_approver("wf_ro");
    let mut agent = w.agent_in(&w.protected);
    let e = assert_sqlstate(
        agent.batch_execute(
            "BEGIN READ ONLY; SELECT request_approval_token('DELETE', 't', 'public.orders')",
        ),
        "25006",
    );
    assert!(
        e.contains("request_approval_token cannot record a request in a read-only transaction; call it in a read-write transaction"),
        "{e}"
    );
    agent.batch_execute("ROLLBACK").unwrap();
    let token = granted(&w, &mut agent, &approver);
    let e = assert_refused(agent.batch_execute(&format!(
        "BEGIN READ ONLY; DELETE FROM orders WHERE id = 7 /*ai_agent_safety_token='{token}'*/"
    )));
    assert!(
        e.contains(&format!(
            "the transaction is read-only, so approval token {token} was not used"
        )),
        "{e}"
    );
    agent.batch_execute("ROLLBACK").unwrap();
    assert_eq!(w.token_status(&token), "granted");
    assert_eq!(orders(&w, 7), 1);
}

#[test]
fn no_error_carries_a_rust_backtrace() {
    let w = World::new("wf_bt");
    // The precondition: the server runs with RUST_BACKTRACE set (read from
    // the postmaster: a backend's environment is overwritten by its title).
    let env: Vec<u8> = admin("postgres")
        .query_one(
            "SELECT pg_read_binary_file('/proc/' || split_part(pg_read_file('postmaster.pid'), E'\\n', 1) || '/environ')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        String::from_utf8_lossy(&env).contains("RUST_BACKTRACE=full"),
        "the test cluster must run with RUST_BACKTRACE=full"
    );
    let mut agent = w.agent_in(&w.protected);
    for sql in [
        "SET ai_agent_safety.approval_token = 'not-a-token'; DELETE FROM orders WHERE id = 8",
        "DELETE FROM orders WHERE id = 8 /*ai_agent_safety_token='x'*/ /*ai_agent_safety_token='y'*/",
        "SELECT request_approval_token('NOPE', 't')",
        "SELECT ai_agent_safety.grant_approval_token(NULL)",
    ] {
        let e = agent.batch_execute(sql).unwrap_err();
        let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        let all = format!(
            "{} {} {}",
            d.message(),
            d.detail().unwrap_or(""),
            d.hint().unwrap_or("")
        );
        for frame in ["stack backtrace", "rust_begin_unwind", "core::panicking", "at src/", ".rs:"] {
            assert!(!all.contains(frame), "{sql}: {all}");
        }
        agent.batch_execute("RESET ai_agent_safety.approval_token").ok();
    }
}

/// A tag belongs to the statement it is in. EXPLAIN's inner statement and a
/// rule's action are given the whole query string by PostgreSQL; a tag in
/// another statement of that string is not read for them.
#[test]
fn a_tag_in_another_statement_of_the_string_presents_nothing() {
    let w = World::new("wf_multi");
    let approver = new_approver("wf_multi");
    let mut agent = w.agent_in(&w.protected);
    let token = granted(&w, &mut agent, &approver);
    let e = assert_refused(agent.batch_execute(&format!(
        "EXPLAIN (ANALYZE, COSTS OFF) DELETE FROM orders WHERE id = 9; SELECT 'unrelated' /*ai_agent_safety_token='{token}'*/"
    )));
    assert!(e.contains("query string of several statements"), "{e}");
    assert_eq!(orders(&w, 9), 1);
    assert_eq!(w.token_status(&token), "granted");
}

/// A token used inside a subtransaction that rolls back was not used: the
/// setting that presented it stays.
#[test]
fn a_rolled_back_savepoint_keeps_the_setting_and_the_token() {
    let w = World::new("wf_sp");
    let approver = new_approver("wf_sp");
    let mut agent = w.agent_in(&w.protected);
    let token = granted(&w, &mut agent, &approver);
    agent
        .batch_execute(&format!(
            "SET ai_agent_safety.approval_token = '{token}';
             BEGIN; SAVEPOINT s; DELETE FROM orders WHERE id = 10; ROLLBACK TO s; COMMIT;"
        ))
        .unwrap();
    let shown: String = agent
        .query_one("SHOW ai_agent_safety.approval_token", &[])
        .unwrap()
        .get(0);
    assert_eq!(shown, token);
    assert_eq!(w.token_status(&token), "granted");
    assert_eq!(orders(&w, 10), 1);
}
