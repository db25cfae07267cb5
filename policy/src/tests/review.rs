use super::*;

fn in_review() -> SessionFacts {
    SessionFacts {
        review: Some("cleanup-7".into()),
        ..agent()
    }
}

#[test]
fn a_review_lets_row_changes_run_without_a_token() {
    let shop = db(
        "shop",
        true,
        OpSet::of(&[OpClass::Delete, OpClass::Update, OpClass::Drop]),
        None,
    );
    for ops in [
        vec![delete_orders()],
        vec![update_orders()],
        vec![delete_orders(), update_orders()],
    ] {
        assert_eq!(
            run(&in_review(), &shop, &ops, &TokenPresented::None),
            Decision::AllowInReview
        );
        // Outside a review the same statement needs its token.
        assert!(matches!(
            run(&agent(), &shop, &ops, &TokenPresented::None),
            Decision::Deny(_)
        ));
    }
    // What needs no approval is simply allowed.
    assert_eq!(
        run(
            &in_review(),
            &open_db("scratch"),
            &[delete_orders()],
            &TokenPresented::None
        ),
        Decision::Allow
    );
}

#[test]
fn a_review_covers_no_drop_truncate_or_alter_even_with_a_token() {
    let shop = protected_db("shop");
    let token = found(granted(OpClass::Drop, Some(orders())));
    for ops in [vec![drop_orders()], vec![delete_orders(), drop_customers()]] {
        let d = denial(run(&in_review(), &shop, &ops, &token));
        assert_contains(
            &d.message,
            "agent role \"agent_bot\" is in a review (task cleanup-7), which covers DELETE and UPDATE only",
        );
        assert_contains(&d.hint, "ai_agent_safety.request_approval_token(");
        assert_not_contains(&d.message, "DELETE on public.orders");
    }
}

#[test]
fn the_environment_rules_still_hold_in_a_review() {
    let session = SessionFacts {
        task_environment: Some("development".into()),
        ..in_review()
    };
    let prod = db("shop", true, OpSet::default_set(), Some("production"));
    let d = denial(run(
        &session,
        &prod,
        &[delete_orders()],
        &TokenPresented::None,
    ));
    assert_eq!(d.source, Source::Environment);
}

#[test]
fn only_a_review_ends_with_prepare_transaction() {
    let prepare = Statement {
        writes: true,
        verb: "DDL",
        side_door: Some(("PREPARE TRANSACTION", SideDoor::PreparedTransaction)),
        ..Default::default()
    };
    let shop = protected_db("shop");
    assert_eq!(
        decide_statement(
            &in_review(),
            &shop,
            None,
            &prepare,
            &TokenPresented::None,
            NOW
        ),
        Decision::AllowInReview
    );
    assert!(matches!(
        decide_statement(&agent(), &shop, None, &prepare, &TokenPresented::None, NOW),
        Decision::Deny(_)
    ));
    // Other doors stay shut in a review.
    let program = Statement {
        side_door: Some(("COPY ... TO PROGRAM", SideDoor::Program)),
        ..prepare
    };
    assert!(matches!(
        decide_statement(
            &in_review(),
            &shop,
            None,
            &program,
            &TokenPresented::None,
            NOW
        ),
        Decision::Deny(_)
    ));
}
