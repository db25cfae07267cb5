//! Tests for `decision.rs`: who and where, DROP DATABASE target facts, and the
//! small helpers `token_target_text` and `needs_approval`.

use super::*;

// ---------------------------------------------------------------------------
// decide(): who and where
// ---------------------------------------------------------------------------

#[test]
fn non_agent_always_allowed_even_in_protected_db() {
    let here = db("shop", true, OpSet::of(&OpClass::ALL), Some("production"));
    let ops = [drop_orders(), delete_orders(), drop_database("shop")];
    assert_eq!(
        decide(
            &human(),
            &here,
            Some(&here),
            &ops,
            &TokenPresented::None,
            NOW
        ),
        Decision::Allow
    );
    // Even when presenting garbage, or with a task environment mismatch.
    let mut h = human();
    h.task_environment = Some("development".into());
    assert_eq!(
        run(&h, &here, &ops, &TokenPresented::Malformed("x".into())),
        Decision::Allow
    );
}

#[test]
fn agent_with_no_operations_is_allowed() {
    assert_eq!(
        run(&agent(), &protected_db("shop"), &[], &TokenPresented::None),
        Decision::Allow
    );
}

#[test]
fn agent_in_unprotected_db_allowed() {
    let ops = [drop_orders(), delete_orders()];
    assert_eq!(
        run(&agent(), &open_db("scratch"), &ops, &TokenPresented::None),
        Decision::Allow
    );
    // require_approval on but nothing protected.
    let nothing = db("scratch", true, OpSet::empty(), None);
    assert_eq!(
        run(&agent(), &nothing, &ops, &TokenPresented::None),
        Decision::Allow
    );
}

#[test]
fn agent_protected_drop_without_token_denied_with_full_message() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::None,
    ));
    assert_eq!(
        refusal(&d),
        "DROP TABLE public.orders refused: agent role \"agent_bot\" needs an approval token in database \"shop\""
    );
    assert_contains(&d.message, "DROP TABLE");
    assert_contains(&d.message, "public.orders");
    assert_contains(&d.message, "agent_bot");
    assert_contains(&d.message, "\"shop\"");
    assert_contains(&d.detail, "require_approval");
    assert_contains(&d.detail, "Database \"shop\"");
    assert_contains(&d.detail, "(DROP, DELETE, TRUNCATE) includes DROP");
    assert_contains(&d.detail, "Task: TASK-42.");
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text",
    );
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text, 'TASK-42'::text, 'public.orders'::text)",
    );
    assert_contains(&d.hint, "SET ai_agent_safety.approval_token");
    assert_eq!(d.reason(), format!("{}. {}", d.message, d.detail));
}

#[test]
fn deny_hint_uses_placeholder_without_task_id() {
    let mut s = agent();
    s.task_id = None;
    let d = denial(run(
        &s,
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::None,
    ));
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text, '<task id>'::text, 'public.orders'::text)",
    );
    assert_not_contains(&d.detail, "Task:");
}

#[test]
fn deny_message_names_acting_role_when_different() {
    let mut s = agent();
    s.current_user = "app_owner".into();
    let d = denial(run(
        &s,
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::None,
    ));
    assert_contains(&d.message, "agent role \"agent_bot\"");
    assert_contains(&d.message, "(acting as \"app_owner\")");

    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::None,
    ));
    assert_not_contains(&d.message, "acting as");
}

#[test]
fn deny_hint_escapes_quotes_in_task_and_target() {
    let mut s = agent();
    s.task_id = Some("fix o'brien".into());
    let o = op(
        OpClass::Drop,
        "DROP TABLE",
        obj(PG_CLASS, 7, "public.\"it's\""),
    );
    let d = denial(run(&s, &protected_db("shop"), &[o], &TokenPresented::None));
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text, 'fix o''brien'::text, 'public.\"it''s\"'::text)",
    );
}

#[test]
// Moved verbatim from the old tests.rs; the newer clippy lint would rewrite
// `&[x.clone()]` as `std::slice::from_ref(&x)`, which is not worth changing a test for.
#[allow(clippy::cloned_ref_to_slice_refs)]
fn each_default_class_is_protected() {
    for (o, word) in [
        (drop_orders(), "DROP TABLE public.orders"),
        (delete_orders(), "DELETE on public.orders"),
        (
            op(OpClass::Truncate, "TRUNCATE", orders()),
            "TRUNCATE public.orders",
        ),
    ] {
        let d = denial(run(
            &agent(),
            &protected_db("shop"),
            &[o.clone()],
            &TokenPresented::None,
        ));
        assert!(d.message.starts_with(word), "{}", d.message);
        assert_contains(
            &d.hint,
            &format!("ai_agent_safety.request_approval_token('{}'::text", o.class),
        );
    }
}

#[test]
fn class_not_in_protected_set_allowed() {
    let here = db("shop", true, OpSet::of(&[OpClass::Drop]), None);
    assert_eq!(
        run(&agent(), &here, &[delete_orders()], &TokenPresented::None),
        Decision::Allow
    );
    assert_eq!(
        run(
            &agent(),
            &here,
            &[op(OpClass::Alter, "ALTER TABLE ... DROP COLUMN", orders())],
            &TokenPresented::None
        ),
        Decision::Allow
    );
}

#[test]
fn update_protected_only_when_listed() {
    let default = protected_db("shop");
    assert_eq!(
        run(
            &agent(),
            &default,
            &[update_orders()],
            &TokenPresented::None
        ),
        Decision::Allow
    );
    let with_update = db("shop", true, OpSet::parse("DROP, UPDATE").unwrap(), None);
    let d = denial(run(
        &agent(),
        &with_update,
        &[update_orders()],
        &TokenPresented::None,
    ));
    assert_contains(&d.message, "UPDATE on public.orders refused");
    assert_contains(&d.detail, "(DROP, UPDATE) includes UPDATE");
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('UPDATE'::text",
    );
}

#[test]
// Moved verbatim from the old tests.rs; the newer clippy lint would rewrite
// `&[x.clone()]` as `std::slice::from_ref(&x)`, which is not worth changing a test for.
#[allow(clippy::cloned_ref_to_slice_refs)]
fn alter_protected_only_when_listed() {
    let alter = op(OpClass::Alter, "ALTER TABLE ... DROP COLUMN", orders());
    assert_eq!(
        run(
            &agent(),
            &protected_db("shop"),
            &[alter.clone()],
            &TokenPresented::None
        ),
        Decision::Allow
    );
    let with_alter = db("shop", true, OpSet::of(&[OpClass::Alter]), None);
    let d = denial(run(&agent(), &with_alter, &[alter], &TokenPresented::None));
    assert_contains(&d.message, "ALTER TABLE public.orders DROP COLUMN refused");
}

#[test]
fn mixed_statement_denied_if_any_op_protected() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[update_orders(), delete_orders()],
        &TokenPresented::None,
    ));
    // Only the protected op is named.
    assert!(d.message.starts_with("DELETE on public.orders refused"));
    assert_not_contains(&d.message, "UPDATE");
}

#[test]
fn multi_op_statement_without_token_names_all_and_hints_one_at_a_time() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders(), drop_customers()],
        &TokenPresented::None,
    ));
    assert_contains(
        &d.message,
        "DROP TABLE public.orders, DROP TABLE public.customers refused",
    );
    assert_contains(&d.hint, "one statement at a time");
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text, 'TASK-42'::text, '<object>'::text)",
    );
}

#[test]
fn multi_op_hint_escapes_quotes_in_task_id() {
    let mut s = agent();
    s.task_id = Some("o'brien".into());
    let d = denial(run(
        &s,
        &protected_db("shop"),
        &[drop_orders(), drop_customers()],
        &TokenPresented::None,
    ));
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text, 'o''brien'::text, '<object>'::text)",
    );
}

// ---------------------------------------------------------------------------
// decide(): DROP DATABASE uses the target's facts
// ---------------------------------------------------------------------------

#[test]
fn drop_database_target_protected_current_not_denied() {
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
    assert_contains(&d.message, "DROP DATABASE sales refused");
    assert_contains(&d.message, "in database \"postgres\"");
    assert_contains(
        &d.detail,
        "Database \"sales\" has ai_agent_safety.require_approval = on",
    );
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text, 'TASK-42'::text, 'DATABASE sales'::text)",
    );
}

#[test]
fn drop_database_target_unprotected_current_protected_allowed() {
    let here = protected_db("postgres");
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
fn drop_database_target_protects_other_classes_only() {
    // Target protects only DELETE: DROP DATABASE is allowed.
    let here = protected_db("postgres");
    let target = db("sales", true, OpSet::of(&[OpClass::Delete]), None);
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
fn target_db_facts_do_not_apply_to_ordinary_ops() {
    // Ordinary ops are judged by the current database even when target facts exist.
    let here = open_db("postgres");
    let target = protected_db("sales");
    assert_eq!(
        decide(
            &agent(),
            &here,
            Some(&target),
            &[drop_orders()],
            &TokenPresented::None,
            NOW
        ),
        Decision::Allow
    );
}

#[test]
fn drop_database_with_valid_token_allowed() {
    let here = open_db("postgres");
    let target = protected_db("sales");
    let t = granted(OpClass::Drop, Some(obj(PG_DATABASE, 50000, "sales")));
    assert_eq!(
        decide(
            &agent(),
            &here,
            Some(&target),
            &[drop_database("sales")],
            &found(t),
            NOW
        ),
        Decision::AllowWithToken { token: token_id() }
    );
}

// ---------------------------------------------------------------------------
// token_target_text / needs_approval
// ---------------------------------------------------------------------------

#[test]
fn token_target_text_forms() {
    assert_eq!(token_target_text(&drop_orders()), "public.orders");
    assert_eq!(token_target_text(&drop_database("sales")), "DATABASE sales");
    let schema = op(
        OpClass::Drop,
        "DROP SCHEMA",
        obj(PG_NAMESPACE, 2200, "staging"),
    );
    assert_eq!(token_target_text(&schema), "SCHEMA staging");
}

#[test]
fn needs_approval_requires_both_switch_and_class() {
    assert!(needs_approval(&protected_db("d"), OpClass::Drop));
    assert!(!needs_approval(&protected_db("d"), OpClass::Update));
    assert!(!needs_approval(&open_db("d"), OpClass::Drop));
}

#[test]
fn agent_code_run_by_another_role_is_refused_as_the_agents() {
    let mut s = agent();
    s.current_user = "alice".into();
    s.run_by = Some("alice".into());
    let d = denial(run(
        &s,
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::None,
    ));
    assert_eq!(
        refusal(&d),
        "DROP TABLE public.orders refused: agent role \"agent_bot\" needs an approval token in database \"shop\" (its code, run by \"alice\")"
    );
    // Judged as a statement, the hint speaks to the role that ran the code.
    let d = denial(decide_statement(
        &s,
        &protected_db("shop"),
        None,
        &Statement {
            ops: vec![drop_orders()],
            writes: true,
            verb: "DDL",
            ..Default::default()
        },
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(&d.hint, "code that agent role \"agent_bot\" owns");
    assert_contains(&d.hint, "ALTER FUNCTION <name> OWNER TO alice;");
}

#[test]
fn objects_picked_at_run_time_are_requested_without_a_target() {
    let unlink = Operation {
        class: OpClass::Drop,
        verb: "lo_unlink() on".into(),
        object: ObjectRef::picked_at_run_time("a large object"),
        target_database: None,
        is_write: true,
    };
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        std::slice::from_ref(&unlink),
        &TokenPresented::None,
    ));
    assert_eq!(
        refusal(&d),
        "lo_unlink() on a large object refused: agent role \"agent_bot\" needs an approval token in database \"shop\""
    );
    assert_contains(
        &d.hint,
        "SELECT ai_agent_safety.request_approval_token('DROP'::text, 'TASK-42'::text, verb => 'lo_unlink() on'::text);",
    );
    // A token for a named object never covers it; one for any object does,
    // when it names the call.
    let named = granted(OpClass::Drop, Some(orders()));
    assert!(matches!(
        run(
            &agent(),
            &protected_db("shop"),
            std::slice::from_ref(&unlink),
            &found(named)
        ),
        Decision::Deny(_)
    ));
    let any = granted(OpClass::Drop, None);
    assert!(matches!(
        run(
            &agent(),
            &protected_db("shop"),
            std::slice::from_ref(&unlink),
            &found(any)
        ),
        Decision::Deny(_)
    ));
    let any = TokenFacts {
        verb: Some("LO_UNLINK() ON".into()),
        ..granted(OpClass::Drop, None)
    };
    assert!(matches!(
        run(&agent(), &protected_db("shop"), &[unlink], &found(any)),
        Decision::AllowWithToken { .. }
    ));
}

#[test]
fn a_token_names_the_exact_form_of_its_operation() {
    let replace = op(OpClass::Drop, "CREATE OR REPLACE VIEW", orders());
    let drop = drop_orders();
    // The plain form is covered by a token naming only its class.
    assert!(drop.is_plain() && !replace.is_plain());
    let class_only = granted(OpClass::Drop, Some(orders()));
    assert!(matches!(
        run(
            &agent(),
            &protected_db("shop"),
            std::slice::from_ref(&drop),
            &found(class_only.clone())
        ),
        Decision::AllowWithToken { .. }
    ));
    // Another form of the class is not: the approver read "DROP".
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        std::slice::from_ref(&replace),
        &found(class_only),
    ));
    assert_contains(&d.detail, "a token must name that form");
    assert_contains(&d.hint, "verb => 'CREATE OR REPLACE VIEW'::text");
    // A token naming the form covers that form only.
    let named = TokenFacts {
        verb: Some("CREATE OR REPLACE VIEW".into()),
        ..granted(OpClass::Drop, Some(orders()))
    };
    assert!(matches!(
        run(
            &agent(),
            &protected_db("shop"),
            std::slice::from_ref(&replace),
            &found(named.clone())
        ),
        Decision::AllowWithToken { .. }
    ));
    let d = denial(run(&agent(), &protected_db("shop"), &[drop], &found(named)));
    assert_contains(
        &d.detail,
        "it was granted for CREATE OR REPLACE VIEW but this is DROP TABLE",
    );
    // Every ALTER is named.
    assert!(!op(OpClass::Alter, "ALTER TABLE ... DROP COLUMN note", orders()).is_plain());
}
