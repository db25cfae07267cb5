//! Plain unit tests for the pure decision core.
//!
//! This module holds the shared fixtures; the tests live in one submodule per
//! source file of the crate (`decision` is split by theme).

use crate::credentials::SECOND_US;
use crate::*;

mod api;
mod cluster_node;
mod credentials;
mod decision;
mod decision_environment;
mod decision_later_rules;
mod decision_roles;
mod decision_tokens;
mod facts;
mod handover;
mod operation;
mod recycle;
mod recycle_objects;
mod review;
mod side_door;
mod sql_comment;
mod sql_lexer;
mod statement_form;
mod unplanned_writes;
mod versions;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const TOKEN_ID: &str = "3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f";

fn token_id() -> uuid::Uuid {
    uuid::Uuid::parse_str(TOKEN_ID).unwrap()
}
const PG_CLASS: u32 = 1259;
const PG_NAMESPACE: u32 = 2615;
const PG_DATABASE: u32 = 1262;
const NOW: i64 = 800_000_000_000_000;

/// A refusal's message without the next step that ends it.
fn refusal(d: &Denial) -> &str {
    d.message.split("; ").next().unwrap_or_default()
}

/// The next step that ends a refusal's message.
fn next_step(d: &Denial) -> &str {
    d.message.split_once("; ").map_or("", |(_, n)| n)
}

fn agent() -> SessionFacts {
    SessionFacts {
        session_user: "agent_bot".into(),
        current_user: "agent_bot".into(),
        is_agent: true,
        task_id: Some("TASK-42".into()),
        task_environment: None,
        allowed_environments: None,
        run_by: None,
        token_from_setting: false,
        review: None,
        from_cluster_node: false,
    }
}

fn human() -> SessionFacts {
    SessionFacts {
        session_user: "alice".into(),
        current_user: "alice".into(),
        is_agent: false,
        ..Default::default()
    }
}

fn db(name: &str, require: bool, protected: OpSet, env: Option<&str>) -> DatabaseFacts {
    DatabaseFacts {
        name: name.into(),
        require_approval: require,
        protected,
        environment: env.map(String::from),
    }
}

/// A database with require_approval = on and the default protected set, unlabelled.
fn protected_db(name: &str) -> DatabaseFacts {
    db(name, true, OpSet::default_set(), None)
}

/// A database with require_approval = off, unlabelled.
fn open_db(name: &str) -> DatabaseFacts {
    db(name, false, OpSet::default_set(), None)
}

fn obj(classid: u32, objid: u32, display: &str) -> ObjectRef {
    ObjectRef {
        classid,
        objid,
        display: display.into(),
    }
}

fn op(class: OpClass, verb: &str, object: ObjectRef) -> Operation {
    Operation {
        class,
        verb: verb.into(),
        object,
        target_database: None,
        is_write: true,
    }
}

fn orders() -> ObjectRef {
    obj(PG_CLASS, 16384, "public.orders")
}

fn customers() -> ObjectRef {
    obj(PG_CLASS, 16390, "public.customers")
}

fn drop_orders() -> Operation {
    op(OpClass::Drop, "DROP TABLE", orders())
}

fn drop_customers() -> Operation {
    op(OpClass::Drop, "DROP TABLE", customers())
}

fn delete_orders() -> Operation {
    op(OpClass::Delete, "DELETE", orders())
}

fn update_orders() -> Operation {
    op(OpClass::Update, "UPDATE", orders())
}

fn select_orders() -> Operation {
    Operation {
        is_write: false,
        ..op(OpClass::Update, "SELECT", orders())
    }
}

fn drop_database(name: &str) -> Operation {
    Operation {
        class: OpClass::Drop,
        verb: "DROP DATABASE".into(),
        object: obj(PG_DATABASE, 50000, name),
        target_database: Some(name.into()),
        is_write: true,
    }
}

fn granted(operation: OpClass, target: Option<ObjectRef>) -> TokenFacts {
    TokenFacts {
        id: token_id(),
        state: TokenState::Granted,
        requested_by: "agent_bot".into(),
        decided_by: Some("dba_carol".into()),
        operation,
        target,
        verb: None,
        expires_at_us: Some(NOW + 600 * SECOND_US),
        expires_at_text: "2025-05-09 12:10:00+00".into(),
        used: None,
        bound: None,
    }
}

fn found(t: TokenFacts) -> TokenPresented {
    TokenPresented::Found(t)
}

fn run(
    session: &SessionFacts,
    here: &DatabaseFacts,
    ops: &[Operation],
    token: &TokenPresented,
) -> Decision {
    decide(session, here, None, ops, token, NOW)
}

#[track_caller]
fn denial(d: Decision) -> Denial {
    match d {
        Decision::Deny(x) => x,
        other => panic!("expected Deny, got {other:?}"),
    }
}

/// Runs a single DROP TABLE public.orders in a protected database with the given token
/// and returns the denial.
#[track_caller]
fn deny_drop_orders_with(t: TokenFacts) -> Denial {
    denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &found(t),
    ))
}

#[track_caller]
fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in {haystack:?}"
    );
}

#[track_caller]
fn assert_not_contains(haystack: &str, needle: &str) {
    assert!(
        !haystack.contains(needle),
        "did not expect {needle:?} in {haystack:?}"
    );
}

/// A statement that touches the guard: decided in every database, enforced
/// in shadow mode, covered by no token, allowed to a human. Returns the
/// agent's refusal in a database without require_approval.
fn refused_everywhere(stmt: &Statement) -> Denial {
    assert!(Shape::of(stmt).touches_guard, "always decided");
    assert_eq!(Mode::Audit.for_statement(stmt), Mode::Enforce);
    assert!(!token_can_matter(stmt));
    let decide = |who: &SessionFacts| {
        decide_statement(
            who,
            &open_db("scratch"),
            None,
            stmt,
            &TokenPresented::None,
            NOW,
        )
    };
    assert_eq!(decide(&human()), Decision::Allow);
    denial(decide(&agent()))
}
