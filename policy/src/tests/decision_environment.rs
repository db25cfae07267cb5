//! Tests for `decision.rs`: environment rules.

use super::*;

// ---------------------------------------------------------------------------
// decide(): environment rules
// ---------------------------------------------------------------------------

fn dev_task_agent() -> SessionFacts {
    let mut s = agent();
    s.task_environment = Some("development".into());
    s.allowed_environments = Some(vec!["development".into(), "staging".into()]);
    s
}

#[test]
fn task_env_mismatch_denies_writes_even_unprotected() {
    let here = db("shop", false, OpSet::empty(), Some("production"));
    let d = denial(run(
        &dev_task_agent(),
        &here,
        &[update_orders()],
        &TokenPresented::None,
    ));
    assert_contains(&d.message, "UPDATE on public.orders refused");
    assert_contains(&d.message, "database \"shop\" is environment production");
    assert_contains(&d.message, "task TASK-42 declared environment development");
    assert_contains(
        &d.detail,
        "production-tier access during a development task",
    );
    assert_contains(
        &d.hint,
        "SET ai_agent_safety.task_environment = 'production'",
    );
}

#[test]
fn task_env_mismatch_with_unlabelled_db_denies_writes() {
    let here = db("shop", false, OpSet::empty(), None);
    let d = denial(run(
        &dev_task_agent(),
        &here,
        &[delete_orders()],
        &TokenPresented::None,
    ));
    assert_contains(&d.message, "is environment (unlabelled)");
    assert_contains(
        &d.detail,
        "unlabelled-tier access during a development task",
    );
    assert_contains(&d.hint, "'<environment>'");
}

#[test]
fn task_env_mismatch_not_overridden_by_valid_token() {
    let here = db("shop", true, OpSet::default_set(), Some("production"));
    let d = denial(run(
        &dev_task_agent(),
        &here,
        &[drop_orders()],
        &found(granted(OpClass::Drop, None)),
    ));
    assert_contains(
        &d.detail,
        "production-tier access during a development task",
    );
}

#[test]
fn task_env_mismatch_mentions_placeholder_without_task_id() {
    let mut s = dev_task_agent();
    s.task_id = None;
    let here = db("shop", false, OpSet::empty(), Some("production"));
    let d = denial(run(&s, &here, &[update_orders()], &TokenPresented::None));
    assert_contains(
        &d.message,
        "task (no task id) declared environment development",
    );
}

#[test]
fn task_env_mismatch_allows_reads() {
    let here = db("shop", false, OpSet::empty(), Some("production"));
    assert_eq!(
        run(
            &dev_task_agent(),
            &here,
            &[select_orders()],
            &TokenPresented::None
        ),
        Decision::Allow
    );
}

#[test]
fn task_env_match_allows_writes() {
    let here = db("shop", false, OpSet::empty(), Some("development"));
    assert_eq!(
        run(
            &dev_task_agent(),
            &here,
            &[update_orders()],
            &TokenPresented::None
        ),
        Decision::Allow
    );
}

#[test]
fn no_task_env_means_no_env_rule_for_current_db() {
    let mut s = agent();
    s.allowed_environments = Some(vec!["production".into()]);
    let here = db("shop", false, OpSet::empty(), Some("production"));
    assert_eq!(
        run(&s, &here, &[update_orders()], &TokenPresented::None),
        Decision::Allow
    );
}

#[test]
fn drop_database_target_outside_allowed_environments_denied() {
    let here = db("dev_main", false, OpSet::empty(), Some("development"));
    let target = db("sales", false, OpSet::empty(), Some("production"));
    let mut s = agent();
    s.allowed_environments = Some(vec!["development".into(), "staging".into()]);
    let d = denial(decide(
        &s,
        &here,
        Some(&target),
        &[drop_database("sales")],
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(&d.message, "DROP DATABASE sales refused");
    assert_contains(&d.message, "database \"sales\" is environment production");
    assert_contains(&d.message, "outside the scope of agent role \"agent_bot\"");
    assert_contains(&d.detail, "development, staging");
    assert_contains(
        &d.hint,
        "ALTER ROLE \"agent_bot\" SET ai_agent_safety.allowed_environments = 'production'",
    );
}

#[test]
fn drop_database_no_scope_labelled_target_denied() {
    let here = open_db("postgres");
    let target = db("sales", false, OpSet::empty(), Some("staging"));
    let d = denial(decide(
        &agent(),
        &here,
        Some(&target),
        &[drop_database("sales")],
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(&d.message, "outside the scope");
    assert_contains(
        &d.detail,
        "none set (only databases without an environment label)",
    );
}

#[test]
fn drop_database_empty_scope_labelled_target_denied() {
    let mut s = agent();
    s.allowed_environments = Some(vec![]);
    let here = open_db("postgres");
    let target = db("sales", false, OpSet::empty(), Some("staging"));
    let d = denial(decide(
        &s,
        &here,
        Some(&target),
        &[drop_database("sales")],
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(&d.detail, "none set");
}

#[test]
fn drop_database_no_scope_unlabelled_unprotected_target_allowed() {
    let here = open_db("postgres");
    let target = open_db("sales");
    assert_eq!(
        decide(
            &agent(),
            &here,
            Some(&target),
            &[drop_database("sales")],
            &TokenPresented::None,
            NOW
        ),
        Decision::Allow
    );
}

#[test]
fn drop_database_no_scope_unlabelled_protected_target_needs_token() {
    let here = open_db("postgres");
    let target = protected_db("sales");
    let d = denial(decide(
        &agent(),
        &here,
        Some(&target),
        &[drop_database("sales")],
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(&d.detail, "require_approval");
}

#[test]
fn drop_database_task_env_differs_from_target_env_denied() {
    let mut s = dev_task_agent();
    s.allowed_environments = Some(vec!["development".into(), "staging".into()]);
    let here = db("dev_main", false, OpSet::empty(), Some("development"));
    let target = db("stage_db", false, OpSet::empty(), Some("staging"));
    let d = denial(decide(
        &s,
        &here,
        Some(&target),
        &[drop_database("stage_db")],
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(&d.message, "DROP DATABASE stage_db refused");
    assert_contains(&d.message, "staging");
    assert_contains(&d.message, "development");
    assert_contains(&d.message, "database \"stage_db\" is environment staging");
    assert_contains(&d.message, "task TASK-42 declared environment development");
    assert_contains(&d.detail, "staging-tier access during a development task");
}

#[test]
fn drop_database_task_env_with_unlabelled_target_denied() {
    let s = dev_task_agent();
    let here = db("dev_main", false, OpSet::empty(), Some("development"));
    let target = open_db("scratch");
    let d = denial(decide(
        &s,
        &here,
        Some(&target),
        &[drop_database("scratch")],
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(&d.message, "is environment (unlabelled)");
    assert_contains(
        &d.detail,
        "unlabelled-tier access during a development task",
    );
}

#[test]
fn drop_database_task_env_matches_target_and_here_allowed() {
    let s = dev_task_agent();
    let here = db("dev_main", false, OpSet::empty(), Some("development"));
    let target = db("dev_old", false, OpSet::empty(), Some("development"));
    assert_eq!(
        decide(
            &s,
            &here,
            Some(&target),
            &[drop_database("dev_old")],
            &TokenPresented::None,
            NOW
        ),
        Decision::Allow
    );
}

#[test]
fn environment_denial_precedes_token_check() {
    // Target out of scope and also protected: the environment reason wins,
    // and a valid token does not override it.
    let here = open_db("postgres");
    let target = db("sales", true, OpSet::default_set(), Some("production"));
    let t = granted(OpClass::Drop, None);
    let d = denial(decide(
        &agent(),
        &here,
        Some(&target),
        &[drop_database("sales")],
        &found(t),
        NOW,
    ));
    assert_contains(&d.message, "outside the scope");
}
