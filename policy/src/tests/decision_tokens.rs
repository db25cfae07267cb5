//! Tests for `decision.rs`: token checks.

use super::*;

// ---------------------------------------------------------------------------
// decide(): token checks
// ---------------------------------------------------------------------------

#[test]
fn malformed_token_denied() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::Malformed("not-a-uuid".into()),
    ));
    assert_contains(&d.message, "DROP TABLE public.orders refused");
    assert_contains(&d.detail, "\"not-a-uuid\", which is not a token id");
    assert_contains(&d.hint, "RESET ai_agent_safety.approval_token");
    assert_contains(&d.hint, "and request approval with");
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text, 'TASK-42'::text, 'public.orders'::text)",
    );
}

#[test]
fn malformed_token_long_value_is_shortened() {
    let raw = "x".repeat(200);
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::Malformed(raw),
    ));
    assert_contains(&d.detail, &format!("\"{}...\"", "x".repeat(80)));
    assert_not_contains(&d.detail, &"x".repeat(81));
}

#[test]
fn unknown_token_denied() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::NotFound(token_id()),
    ));
    assert_contains(
        &d.detail,
        &format!("Approval token {TOKEN_ID} does not exist in database \"shop\""),
    );
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text",
    );
}

#[test]
fn unavailable_tokens_fail_closed() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::Unavailable("relation \"approval_tokens\" does not exist".into()),
    ));
    assert_contains(&d.message, "refused");
    assert_contains(
        &d.detail,
        "could not be checked: relation \"approval_tokens\" does not exist.",
    );
    assert_contains(&d.hint, "CREATE EXTENSION ai_agent_safety");
}

#[test]
fn sql_objects_the_library_does_not_serve_fail_closed_with_the_update_to_run() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::NotServed(crate::versions::served("0.2.0", "0.0.9").unwrap_err()),
    ));
    assert_contains(&d.message, "refused");
    assert_contains(
        &d.detail,
        "SQL objects in this database are at version 0.0.9",
    );
    assert_contains(&d.hint, "ALTER EXTENSION ai_agent_safety UPDATE;");
}

#[test]
fn pending_token_denied() {
    let mut t = granted(OpClass::Drop, None);
    t.state = TokenState::Pending;
    t.decided_by = None;
    let d = deny_drop_orders_with(t);
    assert_contains(
        &d.detail,
        &format!("Approval token {TOKEN_ID} cannot be used"),
    );
    assert_contains(&d.detail, "still pending");
    assert_contains(
        &d.hint,
        &format!("SELECT ai_agent_safety.grant_approval_token('{TOKEN_ID}'::uuid);"),
    );
    assert_contains(
        &d.hint,
        &format!("SELECT * FROM ai_agent_safety.approval_token_status('{TOKEN_ID}'::uuid);"),
    );
}

#[test]
fn denied_token_denied() {
    let mut t = granted(OpClass::Drop, None);
    t.state = TokenState::Denied;
    let d = deny_drop_orders_with(t.clone());
    assert_contains(&d.detail, "it was denied by dba_carol.");
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text",
    );

    t.decided_by = None;
    let d = deny_drop_orders_with(t);
    assert_contains(&d.detail, "it was denied.");
}

#[test]
fn cancelled_token_denied() {
    let mut t = granted(OpClass::Drop, None);
    t.state = TokenState::Cancelled;
    let d = deny_drop_orders_with(t);
    assert_contains(&d.detail, "it was cancelled.");
}

#[test]
fn used_token_denied_with_time_and_pid() {
    let mut t = granted(OpClass::Drop, None);
    t.used = Some(TokenUse {
        at: "2025-05-09 12:03:00+00".into(),
        pid: 4242,
    });
    let d = deny_drop_orders_with(t);
    assert_contains(
        &d.detail,
        "already used at 2025-05-09 12:03:00+00 by pid 4242",
    );
    assert_contains(&d.detail, "A token covers one statement.");
}

#[test]
fn expired_token_denied_at_and_after_expiry() {
    let mut t = granted(OpClass::Drop, None);
    t.expires_at_us = Some(NOW);
    let d = deny_drop_orders_with(t.clone());
    assert_contains(&d.detail, "it expired at 2025-05-09 12:10:00+00.");

    t.expires_at_us = Some(NOW - 1);
    let d = deny_drop_orders_with(t.clone());
    assert_contains(&d.detail, "expired at");

    // One microsecond before expiry still works.
    t.expires_at_us = Some(NOW + 1);
    assert_eq!(
        run(&agent(), &protected_db("shop"), &[drop_orders()], &found(t)),
        Decision::AllowWithToken { token: token_id() }
    );
}

#[test]
fn token_without_expiry_is_accepted() {
    let mut t = granted(OpClass::Drop, None);
    t.expires_at_us = None;
    assert_eq!(
        run(&agent(), &protected_db("shop"), &[drop_orders()], &found(t)),
        Decision::AllowWithToken { token: token_id() }
    );
}

#[test]
fn token_of_other_requester_denied() {
    let mut t = granted(OpClass::Drop, None);
    t.requested_by = "other_agent".into();
    let d = deny_drop_orders_with(t);
    assert_contains(
        &d.detail,
        "requested by role \"other_agent\", not by \"agent_bot\"",
    );
}

#[test]
fn token_requester_is_session_user_not_current_user() {
    let mut s = agent();
    s.current_user = "app_owner".into();
    let t = granted(OpClass::Drop, None);
    assert_eq!(
        run(
            &s,
            &protected_db("shop"),
            &[drop_orders()],
            &found(t.clone())
        ),
        Decision::AllowWithToken { token: token_id() }
    );
    let mut t2 = t;
    t2.requested_by = "app_owner".into();
    let d = denial(run(&s, &protected_db("shop"), &[drop_orders()], &found(t2)));
    assert_contains(&d.detail, "requested by role \"app_owner\"");
}

#[test]
fn token_for_wrong_operation_denied() {
    let t = granted(OpClass::Drop, None);
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[delete_orders()],
        &found(t),
    ));
    assert_contains(&d.detail, "granted for DROP but this is DELETE.");
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DELETE'::text, 'TASK-42'::text, 'public.orders'::text)",
    );
}

#[test]
fn token_for_wrong_target_denied() {
    let t = granted(OpClass::Drop, Some(orders()));
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_customers()],
        &found(t),
    ));
    assert_contains(
        &d.detail,
        "granted for public.orders but this is public.customers.",
    );
    assert_contains(
        &d.hint,
        "ai_agent_safety.request_approval_token('DROP'::text, 'TASK-42'::text, 'public.customers'::text)",
    );
}

#[test]
fn token_target_matched_by_oid_not_display() {
    // Same display text, different oid (object was dropped and recreated): denied.
    let t = granted(OpClass::Drop, Some(obj(PG_CLASS, 99999, "public.orders")));
    let d = deny_drop_orders_with(t);
    assert_contains(
        &d.detail,
        "granted for the object then named public.orders (oid 99999), and that name is now another object's (oid 16384)",
    );

    // Same oid, different catalog: denied.
    let t = granted(
        OpClass::Drop,
        Some(obj(PG_NAMESPACE, 16384, "public.orders")),
    );
    assert!(matches!(
        run(&agent(), &protected_db("shop"), &[drop_orders()], &found(t)),
        Decision::Deny(_)
    ));
}

#[test]
fn token_target_does_not_cover_nonexistent_object() {
    // DROP ... IF EXISTS on an absent object has objid 0.
    let t = granted(OpClass::Drop, Some(orders()));
    let absent = op(
        OpClass::Drop,
        "DROP TABLE",
        obj(PG_CLASS, 0, "public.orders"),
    );
    assert!(matches!(
        run(&agent(), &protected_db("shop"), &[absent], &found(t)),
        Decision::Deny(_)
    ));
}

#[test]
fn valid_token_with_null_target_allows() {
    let t = granted(OpClass::Drop, None);
    assert_eq!(
        run(&agent(), &protected_db("shop"), &[drop_orders()], &found(t)),
        Decision::AllowWithToken { token: token_id() }
    );
}

#[test]
fn valid_token_with_matching_target_allows() {
    // Display differs but classid + objid match: the token applies.
    let t = granted(OpClass::Drop, Some(obj(PG_CLASS, 16384, "orders")));
    assert_eq!(
        run(&agent(), &protected_db("shop"), &[drop_orders()], &found(t)),
        Decision::AllowWithToken { token: token_id() }
    );
}

#[test]
fn valid_token_with_null_target_does_not_cover_a_multi_op_statement() {
    // The approver read "one DROP on any object": one object, not two.
    let t = granted(OpClass::Drop, None);
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders(), drop_customers()],
        &found(t),
    ));
    assert_contains(&d.message, "covers one object");
}

#[test]
fn multi_op_statement_with_token_matching_only_one_denied() {
    let t = granted(OpClass::Drop, Some(orders()));
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders(), drop_customers()],
        &found(t),
    ));
    assert_contains(
        &d.detail,
        "granted for public.orders but this is public.customers.",
    );
    assert_contains(
        &d.message,
        "DROP TABLE public.orders, DROP TABLE public.customers",
    );
}

#[test]
fn multi_op_mixed_classes_with_single_class_token_denied() {
    let t = granted(OpClass::Delete, Some(orders()));
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[delete_orders(), drop_customers()],
        &found(t),
    ));
    assert_contains(&d.detail, "granted for DELETE but this is DROP.");
}

#[test]
fn token_not_needed_for_unprotected_op_is_not_consumed() {
    // A token presented for an unprotected statement: Allow, not AllowWithToken.
    let t = granted(OpClass::Update, None);
    assert_eq!(
        run(
            &agent(),
            &protected_db("shop"),
            &[update_orders()],
            &found(t)
        ),
        Decision::Allow
    );
    // Even a broken token does not matter when nothing needs approval.
    assert_eq!(
        run(
            &agent(),
            &protected_db("shop"),
            &[update_orders()],
            &TokenPresented::Unavailable("x".into())
        ),
        Decision::Allow
    );
}

#[test]
fn unprotected_op_ignored_when_checking_token_class() {
    // UPDATE (unprotected) beside a DELETE: a DELETE token suffices.
    let t = granted(OpClass::Delete, Some(orders()));
    assert_eq!(
        run(
            &agent(),
            &protected_db("shop"),
            &[update_orders(), delete_orders()],
            &found(t)
        ),
        Decision::AllowWithToken { token: token_id() }
    );
}

#[test]
fn token_state_checked_before_use_and_expiry() {
    // A pending token that is also expired reports pending first.
    let mut t = granted(OpClass::Drop, None);
    t.state = TokenState::Pending;
    t.expires_at_us = Some(NOW - 1);
    let d = deny_drop_orders_with(t);
    assert_contains(&d.detail, "pending");
    assert_not_contains(&d.detail, "expired");
}

// ---------------------------------------------------------------------------
// The way forward ends the primary message
// ---------------------------------------------------------------------------

#[test]
fn the_message_ends_with_the_request_and_how_to_present_the_token() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::None,
    ));
    assert_eq!(
        next_step(&d),
        "request one with SELECT ai_agent_safety.request_approval_token('DROP'::text, 'TASK-42'::text, 'public.orders'::text), and once a human grants it add /*ai_agent_safety_token='<token id>'*/ to the statement"
    );
    assert_contains(&d.hint, "send the token in the same call as the statement");
}

#[test]
fn a_token_that_failed_is_named_in_the_message_with_the_next_step() {
    let mut used = granted(OpClass::Drop, None);
    used.used = Some(TokenUse {
        at: "2026-11-30 10:00:00".into(),
        pid: 7,
    });
    let d = deny_drop_orders_with(used);
    assert_contains(
        &d.message,
        &format!("; approval token {TOKEN_ID} was already used; request a new one with SELECT ai_agent_safety.request_approval_token('DROP'::text"),
    );
    let mut pending = granted(OpClass::Drop, None);
    pending.state = TokenState::Pending;
    let d = deny_drop_orders_with(pending);
    assert_contains(&d.message, &format!("approval token {TOKEN_ID} is still pending; wait until a human grants it (SELECT * FROM ai_agent_safety.approval_token_status('{TOKEN_ID}'::uuid);)"));
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::Malformed("nope".into()),
    ));
    assert_contains(
        &d.message,
        "; the token presented is not a token id; request a new one with",
    );
}

#[test]
fn a_held_token_the_statement_did_not_present_is_named_and_never_allows() {
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::Held(granted(OpClass::Drop, None)),
    ));
    assert_contains(
        &d.message,
        &format!("needs an approval token in database \"shop\"; it holds granted approval token {TOKEN_ID} for this, but the statement did not present it; send it in the same call: add /*ai_agent_safety_token='{TOKEN_ID}'*/ to the statement"),
    );
    assert_contains(&d.detail, "another pooled connection");
    assert_contains(
        &d.hint,
        &format!("SET LOCAL ai_agent_safety.approval_token = '{TOKEN_ID}'"),
    );
}

#[test]
fn a_token_from_the_setting_that_is_not_ours_says_it_may_be_left_over() {
    let mut t = granted(OpClass::Drop, None);
    t.requested_by = "other_bot".into();
    let mut s = agent();
    s.token_from_setting = true;
    let d = denial(run(
        &s,
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::Found(t.clone()),
    ));
    assert_contains(&d.message, "was requested by role \"other_bot\"");
    assert_contains(&d.detail, "left over from another client");
    // Presented in the statement's own comment, there is no such guess.
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &[drop_orders()],
        &TokenPresented::Found(t),
    ));
    assert_not_contains(&d.detail, "left over");
}

#[test]
fn refusals_that_no_token_covers_end_with_what_to_do_instead() {
    let stmt = Statement {
        verb: "CREATE ROLE",
        changes_roles: true,
        ..Default::default()
    };
    let d = refused_everywhere(&stmt);
    assert_eq!(
        next_step(&d),
        "role changes are made by a DBA, from a role that is not an agent"
    );
}

// ---------------------------------------------------------------------------
// Tokens bound to one statement, and to an object's identity
// ---------------------------------------------------------------------------

fn bound(presented_form: Option<&str>) -> TokenFacts {
    TokenFacts {
        bound: Some(BoundStatement {
            approved: "DELETE FROM orders WHERE id <= 10".into(),
            approved_form: "{DELETESTMT ... 10}".into(),
            presented: "DELETE FROM orders WHERE id <= 1000".into(),
            presented_form: presented_form.map(str::to_string),
        }),
        ..granted(OpClass::Delete, Some(orders()))
    }
}

#[test]
fn a_bound_token_covers_only_its_statement() {
    let delete = op(OpClass::Delete, "DELETE", orders());
    let ok = run(
        &agent(),
        &protected_db("shop"),
        std::slice::from_ref(&delete),
        &found(bound(Some("{DELETESTMT ... 10}"))),
    );
    assert!(matches!(ok, Decision::AllowWithToken { .. }));
    for other in [Some("{DELETESTMT ... 1000}"), None] {
        let d = denial(run(
            &agent(),
            &protected_db("shop"),
            std::slice::from_ref(&delete),
            &found(bound(other)),
        ));
        assert_contains(&d.message, "was granted for another statement; send exactly the approved statement with it: DELETE FROM orders WHERE id <= 10 /*ai_agent_safety_token=");
        assert_contains(&d.detail, "Approved: DELETE FROM orders WHERE id <= 10. This one: DELETE FROM orders WHERE id <= 1000.");
    }
}

#[test]
fn a_bound_token_needs_no_verb_for_a_form_that_is_not_plain() {
    let alter = op(OpClass::Alter, "ALTER TABLE ... DROP COLUMN note", orders());
    let mut t = bound(Some("{DELETESTMT ... 10}"));
    t.operation = OpClass::Alter;
    let all = db("shop", true, OpSet::ALL, None);
    assert!(matches!(
        decide(&agent(), &all, None, &[alter], &found(t), NOW),
        Decision::AllowWithToken { .. }
    ));
}

/// A MERGE that deletes and updates (both protected) is approved whole by
/// one token bound to it; unbound, or for a plain UPDATE beside it, the
/// other class still needs its own token.
#[test]
fn a_token_bound_to_a_merge_covers_both_its_classes() {
    let merge = [
        op(OpClass::Delete, "MERGE ... THEN DELETE", orders()),
        op(OpClass::Update, "MERGE ... THEN UPDATE", orders()),
    ];
    let all = db("shop", true, OpSet::ALL, None);
    // Without a token, the way forward is one token bound to the MERGE.
    let d = denial(decide(
        &agent(),
        &all,
        None,
        &merge,
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(
        &d.message,
        "request one bound to this statement with SELECT ai_agent_safety.request_approval_token('DELETE'::text, 'TASK-42'::text, statement => '<this statement>'::text)",
    );
    assert_contains(
        &d.hint,
        "A MERGE that deletes and updates is approved whole",
    );
    let ok = bound(Some("{DELETESTMT ... 10}"));
    assert!(matches!(
        decide(&agent(), &all, None, &merge, &found(ok.clone()), NOW),
        Decision::AllowWithToken { .. }
    ));
    // The form still has to be the approved one.
    let d = denial(decide(
        &agent(),
        &all,
        None,
        &merge,
        &found(bound(Some("{other}"))),
        NOW,
    ));
    assert_contains(&d.message, "was granted for another statement");
    // And the object.
    let mut elsewhere = merge.clone();
    elsewhere[1].object.objid += 1;
    let d = denial(decide(
        &agent(),
        &all,
        None,
        &elsewhere,
        &found(ok.clone()),
        NOW,
    ));
    assert_contains(&d.detail, "that name is now another object's");
    // Unbound, a DELETE token does not cover the MERGE's UPDATE.
    let unbound = TokenFacts {
        verb: Some("MERGE ... THEN DELETE".into()),
        ..granted(OpClass::Delete, Some(orders()))
    };
    let d = denial(decide(&agent(), &all, None, &merge, &found(unbound), NOW));
    assert_contains(&d.detail, "it was granted for DELETE but this is UPDATE.");
    // Nor does a bound token cover an UPDATE that is not its MERGE's.
    let beside = [merge[0].clone(), op(OpClass::Update, "UPDATE", orders())];
    let d = denial(decide(&agent(), &all, None, &beside, &found(ok), NOW));
    assert_contains(&d.detail, "it was granted for DELETE but this is UPDATE.");
}

/// A bound token for ALTER (or any class a MERGE does not perform) does not
/// approve a MERGE: only a previewed, capped DELETE or UPDATE token does.
#[test]
fn only_a_delete_or_update_token_the_merge_performs_approves_it_whole() {
    let all = db("shop", true, OpSet::ALL, None);
    let merge = [
        op(OpClass::Delete, "MERGE ... THEN DELETE", orders()),
        op(OpClass::Update, "MERGE ... THEN UPDATE", orders()),
    ];
    let mut alter = bound(Some("{DELETESTMT ... 10}"));
    alter.operation = OpClass::Alter;
    let d = denial(decide(&agent(), &all, None, &merge, &found(alter), NOW));
    assert_contains(&d.detail, "it was granted for ALTER but this is DELETE.");
    // An UPDATE token for a MERGE that only deletes.
    let mut update = bound(Some("{DELETESTMT ... 10}"));
    update.operation = OpClass::Update;
    let d = denial(decide(
        &agent(),
        &all,
        None,
        &merge[..1],
        &found(update),
        NOW,
    ));
    assert_contains(&d.detail, "it was granted for UPDATE but this is DELETE.");
}

/// The same statement on a table whose triggers, rules, defaults or
/// policies changed since the request is refused, and said so.
#[test]
fn a_bound_token_is_refused_when_the_tables_code_changed() {
    use crate::statement_form::TABLE_CODE;
    let delete = op(OpClass::Delete, "DELETE", orders());
    let mut t = bound(None);
    let b = t.bound.as_mut().unwrap();
    b.approved_form = format!("{{DELETESTMT ... 10}}{TABLE_CODE}aaa");
    b.presented_form = Some(format!("{{DELETESTMT ... 10}}{TABLE_CODE}bbb"));
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        std::slice::from_ref(&delete),
        &found(t.clone()),
    ));
    assert_contains(
        &d.message,
        "was granted while the table's own code was different",
    );
    assert_contains(
        &d.detail,
        "its triggers (and their functions), rules, column defaults and row security policies",
    );
    t.bound.as_mut().unwrap().presented_form =
        Some(format!("{{DELETESTMT ... 10}}{TABLE_CODE}aaa"));
    assert!(matches!(
        run(
            &agent(),
            &protected_db("shop"),
            std::slice::from_ref(&delete),
            &found(t)
        ),
        Decision::AllowWithToken { .. }
    ));
}

#[test]
fn another_object_under_the_approved_name_is_named_as_such() {
    let mut now_there = orders();
    now_there.objid += 1;
    let d = deny_drop_orders_with_op(op(OpClass::Drop, "DROP TABLE", now_there));
    assert_contains(&d.detail, "that name is now another object's");
}

fn deny_drop_orders_with_op(o: Operation) -> Denial {
    denial(run(
        &agent(),
        &protected_db("shop"),
        &[o],
        &found(granted(OpClass::Drop, Some(orders()))),
    ))
}

#[test]
fn a_token_for_any_object_covers_one_object_per_statement() {
    let two = [drop_orders(), {
        let mut o = drop_orders();
        o.object.objid += 1;
        o.object.display = "public.customers".into();
        o
    }];
    let d = denial(run(
        &agent(),
        &protected_db("shop"),
        &two,
        &found(granted(OpClass::Drop, None)),
    ));
    assert_contains(&d.detail, "this statement has 2 protected operations");
    assert!(matches!(
        run(
            &agent(),
            &protected_db("shop"),
            &two[..1],
            &found(granted(OpClass::Drop, None))
        ),
        Decision::AllowWithToken { .. }
    ));
}
