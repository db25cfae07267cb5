//! Tests for `decision.rs` added with later rules (any-object tokens, DROP DATABASE
//! target facts, writes outside the task environment). Self-contained: these use
//! their own fixtures, not the shared ones in `tests/mod.rs`.

use crate::*;

fn agent() -> SessionFacts {
    SessionFacts {
        session_user: "bot".into(),
        current_user: "bot".into(),
        is_agent: true,
        ..Default::default()
    }
}
fn db(name: &str, protected: bool, env: Option<&str>) -> DatabaseFacts {
    DatabaseFacts {
        name: name.into(),
        require_approval: protected,
        protected: OpSet::default_set(),
        environment: env.map(str::to_string),
    }
}
fn drop_db(name: &str) -> Operation {
    Operation {
        class: OpClass::Drop,
        verb: "DROP DATABASE".into(),
        object: ObjectRef {
            classid: 1262,
            objid: 99,
            display: name.into(),
        },
        target_database: Some(name.into()),
        is_write: true,
    }
}
fn any_object_token() -> TokenPresented {
    TokenPresented::Found(TokenFacts {
        id: super::token_id(),
        state: TokenState::Granted,
        requested_by: "bot".into(),
        decided_by: Some("dba".into()),
        operation: OpClass::Drop,
        target: None,
        verb: None,
        expires_at_us: Some(i64::MAX),
        expires_at_text: "later".into(),
        used: None,
        bound: None,
    })
}

#[test]
fn any_object_token_does_not_cover_another_database() {
    let d = decide(
        &agent(),
        &db("dev", true, None),
        Some(&db("victim", true, None)),
        &[drop_db("victim")],
        &any_object_token(),
        0,
    );
    match d {
        Decision::Deny(x) => assert!(x.detail.contains("does not cover"), "{}", x.detail),
        other => panic!("{other:?}"),
    }
}

#[test]
fn any_object_token_does_not_cover_roles() {
    let op = Operation {
        class: OpClass::Drop,
        verb: "DROP ROLE".into(),
        object: ObjectRef {
            classid: 1260,
            objid: 5,
            display: "alice".into(),
        },
        target_database: None,
        is_write: true,
    };
    assert!(matches!(
        decide(
            &agent(),
            &db("dev", true, None),
            None,
            &[op],
            &any_object_token(),
            0
        ),
        Decision::Deny(_)
    ));
}

#[test]
fn missing_target_facts_fail_closed() {
    let d = decide(
        &agent(),
        &db("dev", false, None),
        None,
        &[drop_db("victim")],
        &TokenPresented::None,
        0,
    );
    assert!(matches!(d, Decision::Deny(_)), "{d:?}");
}

#[test]
fn drop_database_judged_by_target_environment_only() {
    let mut s = agent();
    s.task_environment = Some("development".into());
    s.allowed_environments = Some(vec!["development".into()]);
    // Connected to an unlabelled database, dropping a development one: allowed.
    let d = decide(
        &s,
        &db("postgres", false, None),
        Some(&db("old", false, Some("development"))),
        &[drop_db("old")],
        &TokenPresented::None,
        0,
    );
    assert_eq!(d, Decision::Allow);
}

#[test]
fn writes_refused_outside_task_environment() {
    let mut s = agent();
    s.task_environment = Some("development".into());
    let d = decide_write(&s, &db("prod", false, Some("production")), "INSERT");
    match d {
        Decision::Deny(x) => assert!(
            x.detail
                .contains("production-tier access during a development task"),
            "{}",
            x.detail
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decide_write(&s, &db("dev", false, Some("development")), "INSERT"),
        Decision::Allow
    );
    let mut human = s.clone();
    human.is_agent = false;
    assert_eq!(
        decide_write(&human, &db("prod", false, Some("production")), "INSERT"),
        Decision::Allow
    );
}
