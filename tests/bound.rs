//! Tokens bound to what was approved: the exact statement (when the request
//! carries it) and the object's identity (always).

use aas_integration::*;
use postgres::Client;

fn request_for(agent: &mut Client, statement: &str) -> String {
    agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 'bound-task', statement => $1)::text",
            &[&statement],
        )
        .unwrap_or_else(|e| panic!("request: {}", describe(&e)))
        .get(0)
}

fn left(w: &World, filter: &str) -> i64 {
    count(
        &mut admin(&w.protected),
        &format!("SELECT count(*) FROM public.orders {filter}"),
    )
}

#[test]
fn a_token_requested_with_its_statement_covers_that_statement_only() {
    let w = World::new("bound_stmt");
    let approver = new_approver("bound_stmt");
    let mut agent = w.agent_in(&w.protected);
    let token = request_for(&mut agent, "DELETE FROM orders WHERE id <= 2");
    // The approver reads the statement itself.
    let shown: String = connect(&approver, &w.protected)
        .query_one(
            "SELECT statement FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
            &[&token],
        )
        .unwrap()
        .get(0);
    assert_eq!(shown, "DELETE FROM orders WHERE id <= 2");
    w.grant(&approver, &token);
    // Without the binding, any DELETE on orders would do; bound, a wider one
    // is refused, and says what was approved.
    let e = assert_refused(agent.batch_execute(&format!(
        "DELETE FROM orders WHERE id <= 9 /*ai_agent_safety_token='{token}'*/"
    )));
    assert!(e.contains("was granted for another statement"), "{e}");
    assert!(
        e.contains("Approved: DELETE FROM orders WHERE id <= 2. This one: DELETE FROM orders WHERE id <= 9"),
        "{e}"
    );
    // A bind parameter in place of the constant is another statement too.
    let e = assert_refused(agent.execute(
        &format!("DELETE FROM orders WHERE id <= $1 /*ai_agent_safety_token='{token}'*/"),
        &[&2i32],
    ));
    assert!(e.contains("was granted for another statement"), "{e}");
    assert_eq!(left(&w, ""), 10);
    assert_eq!(w.token_status(&token), "granted");
    // Case, whitespace and comments do not matter.
    agent
        .batch_execute(&format!(
            "delete   from ORDERS\n where id<=2 -- the approved one\n /*ai_agent_safety_token='{token}'*/"
        ))
        .unwrap();
    assert_eq!(left(&w, ""), 8);
    assert_eq!(w.token_status(&token), "used");
}

#[test]
fn requests_with_a_statement_that_cannot_be_bound_are_refused_and_create_nothing() {
    let w = World::new("bound_bad");
    let mut agent = w.agent_in(&w.protected);
    let big = format!("DELETE FROM orders WHERE note = '{}'", "x".repeat(100_001));
    for (statement, op, target, expect) in [
        (
            "DELETE FROM orders WHERE id = 1; DELETE FROM orders",
            "DELETE",
            None,
            "exactly one statement",
        ),
        (
            "TRUNCATE orders",
            "DELETE",
            None,
            "the statement is a TRUNCATE, but the request is for DELETE",
        ),
        (
            "SELECT * FROM orders",
            "DELETE",
            None,
            "only to a DELETE, UPDATE, MERGE, INSERT ... ON CONFLICT DO UPDATE, TRUNCATE, DROP or ALTER TABLE",
        ),
        (
            "DELETE FROM orders WHERE id = 1",
            "DELETE",
            Some("pg_catalog.pg_class"),
            "the statement acts on public.orders",
        ),
        (
            "DELETE FROM no_such_table",
            "DELETE",
            None,
            "does not exist",
        ),
        (big.as_str(), "DELETE", None, "too long"),
    ] {
        let e = agent
            .query_one(
                "SELECT ai_agent_safety.request_approval_token($1, 'bound-task', $2, statement => $3)::text",
                &[&op, &target, &statement],
            )
            .expect_err(statement);
        assert!(
            describe(&e).contains(expect),
            "{}: {}",
            &statement[..statement.len().min(60)],
            describe(&e)
        );
    }
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM ai_agent_safety.approval_tokens"
        ),
        0
    );
}

/// Without a statement the token still names the object, by identity: an
/// object renamed into the approved name, or recreated under it, is not
/// covered; the approved object, renamed, is.
#[test]
fn a_token_is_bound_to_the_objects_identity() {
    let w = World::new("bound_oid");
    let approver = new_approver("bound_oid");
    let mut owner = w.owner_in(&w.protected);
    owner
        .batch_execute(
            "CREATE TABLE public.archive (id int PRIMARY KEY, note text);
             INSERT INTO public.archive SELECT g, 'old' FROM generate_series(1, 5) g;",
        )
        .unwrap();
    owner
        .batch_execute(&format!("GRANT ALL ON public.archive TO {}", w.agent))
        .unwrap();
    let mut agent = w.agent_in(&w.protected);
    let request = |agent: &mut Client| -> String {
        agent
            .query_one(
                "SELECT request_approval_token('DELETE', 'swap', 'public.orders')::text",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let token = request(&mut agent);
    w.grant(&approver, &token);
    // The swap: the approved table goes aside, another takes its name.
    owner
        .batch_execute(
            "ALTER TABLE public.orders RENAME TO orders_kept; ALTER TABLE public.archive RENAME TO orders;",
        )
        .unwrap();
    let e = assert_refused(agent.batch_execute(&format!(
        "DELETE FROM orders /*ai_agent_safety_token='{token}'*/"
    )));
    assert!(e.contains("that name is now another object's"), "{e}");
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM public.orders"
        ),
        5
    );
    // The approved table under its new name is still covered.
    agent
        .batch_execute(&format!(
            "DELETE FROM orders_kept WHERE id = 1 /*ai_agent_safety_token='{token}'*/"
        ))
        .unwrap();
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM public.orders_kept"
        ),
        9
    );
}

/// The same text can do something else: with an operator the agent put
/// ahead of pg_catalog, or inside a function where a variable shadows the
/// column. A bound token covers neither.
#[test]
fn the_same_text_meaning_something_else_is_not_the_approved_statement() {
    let w = World::new("bound_sem");
    let approver = new_approver("bound_sem");
    let mut agent = w.agent_in(&w.protected);
    let token = request_for(&mut agent, "DELETE FROM orders WHERE id = 5");
    w.grant(&approver, &token);
    // 1. An operator that is always true, first on the agent's path. On the
    // open database the same setup deletes every row: the attack works.
    let setup =
        "CREATE FUNCTION public.always(int, int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
                 CREATE OPERATOR public.= (LEFTARG = int, RIGHTARG = int, FUNCTION = public.always);
                 SET search_path = public, pg_catalog;";
    let mut open = w.agent_in(&w.open);
    open.batch_execute(setup).unwrap();
    assert_eq!(
        open.execute("DELETE FROM orders WHERE id = 5", &[])
            .unwrap(),
        10
    );
    agent.batch_execute(setup).unwrap();
    let e = assert_refused(agent.batch_execute(&format!(
        "DELETE FROM orders WHERE id = 5 /*ai_agent_safety_token='{token}'*/"
    )));
    assert!(e.contains("was granted for another statement"), "{e}");
    assert_eq!(left(&w, ""), 10);
    agent.batch_execute("RESET search_path").unwrap();
    // 2. Inside the agent's function, where id is a variable holding 5.
    agent
        .batch_execute(&format!(
            "CREATE FUNCTION public.sweep() RETURNS void LANGUAGE plpgsql AS $f$
             #variable_conflict use_variable
             DECLARE id int := 5;
             BEGIN DELETE FROM orders WHERE id = 5 /*ai_agent_safety_token='{token}'*/; END $f$"
        ))
        .unwrap();
    let e = assert_refused(agent.batch_execute("SELECT public.sweep()"));
    assert!(
        e.contains("a bound token covers only the statement the client sends"),
        "{e}"
    );
    assert_eq!(left(&w, ""), 10);
    assert_eq!(w.token_status(&token), "granted");
    // The approved statement itself, sent by the client, still runs once.
    agent
        .batch_execute(&format!(
            "DELETE FROM orders WHERE id = 5 /*ai_agent_safety_token='{token}'*/"
        ))
        .unwrap();
    assert_eq!(left(&w, ""), 9);
}

/// An operator of the agent's that matches the types exactly wins over the
/// built-in one (which needs a conversion), whatever the search_path: the
/// approver reading `id = 5.0` cannot see it. Such a statement is not bound.
#[test]
fn a_statement_calling_the_agents_own_operator_cannot_be_bound() {
    let w = World::new("bound_op");
    let mut agent = w.agent_in(&w.protected);
    agent
        .batch_execute(
            "CREATE FUNCTION public.always(int4, numeric) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
             CREATE OPERATOR public.= (LEFTARG = int4, RIGHTARG = numeric, FUNCTION = public.always);",
        )
        .unwrap();
    // The attack: on the open database the same text deletes every row.
    let mut open = w.agent_in(&w.open);
    open.batch_execute(
        "CREATE FUNCTION public.always(int4, numeric) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
         CREATE OPERATOR public.= (LEFTARG = int4, RIGHTARG = numeric, FUNCTION = public.always);",
    )
    .unwrap();
    assert_eq!(
        open.execute("DELETE FROM orders WHERE id = 5.0", &[])
            .unwrap(),
        10
    );
    let e = agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 't', statement => 'DELETE FROM orders WHERE id = 5.0')::text",
            &[],
        )
        .expect_err("bound to the agent's operator");
    assert!(
        describe(&e).contains("not PostgreSQL's own"),
        "{}",
        describe(&e)
    );
    assert_eq!(left(&w, ""), 10);
}

/// With standard_conforming_strings off (any session may turn it off), a
/// backslash ends no string: `'a\' /* ' || NULL -- */` is one string to
/// PostgreSQL, where the default reading sees a string and a comment. A
/// token bound under one reading does not cover the text under the other.
#[test]
fn a_bound_statement_read_with_standard_conforming_strings_off_is_another_statement() {
    let w = World::with_settings(
        "bound_scs",
        &[(
            "ai_agent_safety.protected_operations",
            "DROP, DELETE, TRUNCATE, ALTER",
        )],
    );
    let approver = new_approver("bound_scs");
    let approved = r"ALTER TABLE mine ALTER COLUMN note TYPE text USING note || 'a\'";
    let sent =
        r"ALTER TABLE mine ALTER COLUMN note TYPE text USING note || 'a\' /* ' || NULL -- */";
    let nulls = |db: &str| {
        count(
            &mut admin(db),
            "SELECT count(*) FROM public.mine WHERE note IS NULL",
        )
    };
    for db in [&w.protected, &w.open] {
        w.agent_in(db)
            .batch_execute(
                "CREATE TABLE public.mine (id int, note varchar);
                 INSERT INTO public.mine SELECT g, 'n' FROM generate_series(1, 5) g;",
            )
            .unwrap();
    }
    // Where nothing is protected: the text PostgreSQL reads nulls every note.
    // (The setting applies from the next query string: one string is lexed
    // whole before any of it runs.)
    let off = "SET standard_conforming_strings = off; SET escape_string_warning = off;";
    let mut open = w.agent_in(&w.open);
    open.batch_execute(off).unwrap();
    open.batch_execute(sent)
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(nulls(&w.open), 5);
    // Protected: the approver grants "append a\" ...
    let mut agent = w.agent_in(&w.protected);
    let token: String = agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('ALTER', 'bound-scs', 'public.mine', verb => 'ALTER TABLE ... ALTER COLUMN note TYPE', statement => $1)::text",
            &[&approved],
        )
        .unwrap_or_else(|e| panic!("request: {}", describe(&e)))
        .get(0);
    w.grant(&approver, &token);
    // ... and the other reading of the text is not what was approved.
    agent.batch_execute(off).unwrap();
    let msg =
        assert_refused(agent.batch_execute(&format!("{sent} /*ai_agent_safety_token='{token}'*/")));
    assert!(msg.contains("this one differs from it"), "{msg}");
    assert_eq!(nulls(&w.protected), 0);
    assert_eq!(w.token_status(&token), "granted");
}

/// Statements PostgreSQL reads differently from how they read to a person
/// cannot be bound: the approver would approve one statement and
/// PostgreSQL run another (the second adversarial round: a `U&` string, an
/// E-string continued on the next line keeping its escapes). A plain
/// statement with `::` still binds.
#[test]
fn statements_read_differently_by_postgresql_and_a_person_are_not_bound() {
    let w = World::with_settings(
        "bound_lex",
        &[(
            "ai_agent_safety.protected_operations",
            "DROP, DELETE, TRUNCATE, ALTER",
        )],
    );
    let mut agent = w.agent_in(&w.protected);
    agent
        .batch_execute("CREATE TABLE public.mine (c int, u int, keep text, junk text, secret text)")
        .unwrap();
    let request = |a: &mut Client, sql: &str| {
        a.query_one(
            "SELECT ai_agent_safety.request_approval_token('ALTER', 'bound-lex', 'public.mine', statement => $1)::text",
            &[&sql],
        )
    };
    for sql in [
        "ALTER TABLE mine ALTER COLUMN c TYPE bigint USING least(c, U&'-1')",
        "ALTER TABLE mine DROP COLUMN junk, ALTER COLUMN keep SET DEFAULT E'x'\n'\\' /*', ALTER COLUMN keep SET DEFAULT 'z */'",
    ] {
        let e = request(&mut agent, sql).unwrap_err();
        assert!(
            describe(&e).contains("PostgreSQL reads its text differently"),
            "{sql}: {}",
            describe(&e)
        );
    }
    // Requested with standard_conforming_strings off: not bound either.
    agent
        .batch_execute("SET standard_conforming_strings = off")
        .unwrap();
    let e = request(&mut agent, "ALTER TABLE mine DROP COLUMN junk").unwrap_err();
    assert!(
        describe(&e).contains("standard_conforming_strings off"),
        "{}",
        describe(&e)
    );
    agent
        .batch_execute("RESET standard_conforming_strings")
        .unwrap();
    request(
        &mut agent,
        "ALTER TABLE mine ALTER COLUMN c TYPE bigint USING c::bigint",
    )
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM ai_agent_safety.tokens WHERE statement IS NOT NULL"
        ),
        1
    );
}
