//! Plain unit tests for the pure decision core.

use crate::credentials::{human_duration, parse_list, SECOND_US};
use crate::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const TOKEN_ID: &str = "3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f";
const PG_CLASS: u32 = 1259;
const PG_NAMESPACE: u32 = 2615;
const PG_DATABASE: u32 = 1262;
const NOW: i64 = 800_000_000_000_000;

fn agent() -> SessionFacts {
    SessionFacts {
        session_user: "agent_bot".into(),
        current_user: "agent_bot".into(),
        is_agent: true,
        task_id: Some("TASK-42".into()),
        task_environment: None,
        allowed_environments: None,
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
        id: TOKEN_ID.into(),
        state: TokenState::Granted,
        requested_by: "agent_bot".into(),
        decided_by: Some("dba_carol".into()),
        operation,
        target,
        expires_at_us: Some(NOW + 600 * SECOND_US),
        expires_at_text: "2025-05-09 12:10:00+00".into(),
        used: None,
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

// ---------------------------------------------------------------------------
// OpClass
// ---------------------------------------------------------------------------

#[test]
fn opclass_parse_plain_upper() {
    assert_eq!(OpClass::parse("DROP"), Some(OpClass::Drop));
    assert_eq!(OpClass::parse("DELETE"), Some(OpClass::Delete));
    assert_eq!(OpClass::parse("TRUNCATE"), Some(OpClass::Truncate));
    assert_eq!(OpClass::parse("UPDATE"), Some(OpClass::Update));
    assert_eq!(OpClass::parse("ALTER"), Some(OpClass::Alter));
}

#[test]
fn opclass_parse_lower_and_mixed_case() {
    assert_eq!(OpClass::parse("drop"), Some(OpClass::Drop));
    assert_eq!(OpClass::parse("Delete"), Some(OpClass::Delete));
    assert_eq!(OpClass::parse("tRuNcAtE"), Some(OpClass::Truncate));
}

#[test]
fn opclass_parse_operation_suffix() {
    assert_eq!(OpClass::parse("drop_operation"), Some(OpClass::Drop));
    assert_eq!(OpClass::parse("DELETE_OPERATION"), Some(OpClass::Delete));
    assert_eq!(
        OpClass::parse("Truncate_Operation"),
        Some(OpClass::Truncate)
    );
    assert_eq!(OpClass::parse("update_operation"), Some(OpClass::Update));
    assert_eq!(OpClass::parse("alter_operation"), Some(OpClass::Alter));
}

#[test]
fn opclass_parse_ignores_surrounding_blanks() {
    assert_eq!(OpClass::parse("  DROP  "), Some(OpClass::Drop));
    assert_eq!(
        OpClass::parse("\tdelete_operation\n"),
        Some(OpClass::Delete)
    );
}

#[test]
fn opclass_parse_blank_is_none() {
    assert_eq!(OpClass::parse(""), None);
    assert_eq!(OpClass::parse("   "), None);
    assert_eq!(OpClass::parse("\t\n"), None);
}

#[test]
fn opclass_parse_unknown_is_none() {
    assert_eq!(OpClass::parse("INSERT"), None);
    assert_eq!(OpClass::parse("SELECT"), None);
    assert_eq!(OpClass::parse("DROPS"), None);
    assert_eq!(OpClass::parse("_operation"), None);
    assert_eq!(OpClass::parse("operation"), None);
    assert_eq!(OpClass::parse("drop_op"), None);
    assert_eq!(OpClass::parse("drop operation"), None);
    assert_eq!(OpClass::parse("drop_operation_operation"), None);
    assert_eq!(OpClass::parse("DR OP"), None);
}

#[test]
fn opclass_as_str_and_display_round_trip() {
    for c in OpClass::ALL {
        assert_eq!(c.to_string(), c.as_str());
        assert_eq!(OpClass::parse(c.as_str()), Some(c));
        assert_eq!(
            OpClass::parse(&format!("{}_operation", c.as_str().to_lowercase())),
            Some(c)
        );
    }
}

#[test]
fn opclass_accepted_names_lists_all_ten_spellings() {
    let names = OpClass::accepted_names();
    for w in [
        "DROP",
        "DELETE",
        "TRUNCATE",
        "UPDATE",
        "ALTER",
        "drop_operation",
        "delete_operation",
        "truncate_operation",
        "update_operation",
        "alter_operation",
    ] {
        assert_contains(&names, w);
        // Every listed spelling is itself accepted by parse.
        assert!(OpClass::parse(w).is_some(), "{w} not parseable");
    }
    assert_eq!(
        names,
        "DROP, DELETE, TRUNCATE, UPDATE, ALTER, or drop_operation, delete_operation, \
         truncate_operation, update_operation, alter_operation"
    );
    let count = names
        .replace(", or ", ", ")
        .split(", ")
        .filter(|s| !s.is_empty())
        .count();
    assert_eq!(count, 10);
}

// ---------------------------------------------------------------------------
// OpSet
// ---------------------------------------------------------------------------

#[test]
fn opset_parse_default_text() {
    let s = OpSet::parse(OpSet::DEFAULT_TEXT).unwrap();
    assert_eq!(s, OpSet::default_set());
    assert!(s.contains(OpClass::Drop));
    assert!(s.contains(OpClass::Delete));
    assert!(s.contains(OpClass::Truncate));
    assert!(!s.contains(OpClass::Update));
    assert!(!s.contains(OpClass::Alter));
    assert_eq!(s.describe(), "DROP, DELETE, TRUNCATE");
}

#[test]
fn opset_parse_with_update_and_alter() {
    let s = OpSet::parse("DROP, DELETE, TRUNCATE, UPDATE, ALTER").unwrap();
    for c in OpClass::ALL {
        assert!(s.contains(c), "{c} missing");
    }
    assert_eq!(s.describe(), "DROP, DELETE, TRUNCATE, UPDATE, ALTER");

    let s = OpSet::parse("UPDATE,ALTER").unwrap();
    assert_eq!(s, OpSet::of(&[OpClass::Update, OpClass::Alter]));
    assert!(!s.contains(OpClass::Drop));
}

#[test]
fn opset_parse_is_case_insensitive() {
    let s = OpSet::parse("drop, Delete, tRUNCATE").unwrap();
    assert_eq!(s, OpSet::default_set());
}

#[test]
fn opset_parse_accepts_quoted_words_and_blanks() {
    let s = OpSet::parse("  \"DROP\" ,  delete ").unwrap();
    assert_eq!(s, OpSet::of(&[OpClass::Drop, OpClass::Delete]));
}

#[test]
fn opset_parse_duplicates_are_idempotent() {
    let s = OpSet::parse("DROP, drop, DROP").unwrap();
    assert_eq!(s, OpSet::of(&[OpClass::Drop]));
}

#[test]
fn opset_parse_empty_string_is_empty_set() {
    assert_eq!(OpSet::parse(""), Ok(OpSet::empty()));
    assert_eq!(OpSet::parse("   "), Ok(OpSet::empty()));
    assert_eq!(OpSet::empty().describe(), "nothing");
    assert_eq!(OpSet::empty().bits(), 0);
}

#[test]
fn opset_parse_invalid_word_lists_accepted_words() {
    let e = OpSet::parse("DROP, INSERT").unwrap_err();
    assert_contains(&e, "\"INSERT\" is not an operation class");
    assert_contains(&e, "DROP, DELETE, TRUNCATE, UPDATE, ALTER");
}

#[test]
fn opset_parse_rejects_operation_suffix_spelling() {
    // Only plain class words are accepted in the setting.
    let e = OpSet::parse("drop_operation").unwrap_err();
    assert_contains(&e, "drop_operation");
    assert_contains(&e, &OpSet::accepted_words());
}

#[test]
fn opset_parse_trailing_comma_is_error() {
    let e = OpSet::parse("DROP, DELETE,").unwrap_err();
    assert_contains(&e, "empty entry");
    assert_contains(&e, "DROP, DELETE, TRUNCATE, UPDATE, ALTER");
}

#[test]
fn opset_parse_empty_middle_or_leading_entry_is_error() {
    assert!(OpSet::parse("DROP,,DELETE")
        .unwrap_err()
        .contains("empty entry"));
    assert!(OpSet::parse(", DROP").unwrap_err().contains("empty entry"));
    assert!(OpSet::parse(",").unwrap_err().contains("empty entry"));
    assert!(OpSet::parse("DROP, \"\"")
        .unwrap_err()
        .contains("empty entry"));
}

#[test]
fn opset_bits_round_trip_and_mask() {
    let s = OpSet::default_set();
    assert_eq!(OpSet::from_bits(s.bits()), s);
    let all = OpSet::of(&OpClass::ALL);
    assert_eq!(OpSet::from_bits(0xff), all);
    assert_eq!(all.bits(), 0b1_1111);
    let mut m = OpSet::empty();
    m.insert(OpClass::Alter);
    assert!(m.contains(OpClass::Alter));
    assert!(!m.contains(OpClass::Drop));
    assert_eq!(OpSet::default(), OpSet::empty());
}

#[test]
fn opset_accepted_words_are_plain() {
    assert_eq!(
        OpSet::accepted_words(),
        "DROP, DELETE, TRUNCATE, UPDATE, ALTER"
    );
}

// ---------------------------------------------------------------------------
// Operation / ObjectRef
// ---------------------------------------------------------------------------

#[test]
fn operation_describe_forms() {
    assert_eq!(drop_orders().describe(), "DROP TABLE public.orders");
    assert_eq!(delete_orders().describe(), "DELETE on public.orders");
    assert_eq!(update_orders().describe(), "UPDATE on public.orders");
    assert_eq!(
        op(OpClass::Truncate, "TRUNCATE", orders()).describe(),
        "TRUNCATE public.orders"
    );
    assert_eq!(drop_database("sales").describe(), "DROP DATABASE sales");
}

#[test]
fn objectref_same_object() {
    let a = obj(PG_CLASS, 1, "a");
    assert!(a.same_object(&obj(PG_CLASS, 1, "other display")));
    assert!(!a.same_object(&obj(PG_CLASS, 2, "a")));
    assert!(!a.same_object(&obj(PG_NAMESPACE, 1, "a")));
    // A zero oid never matches, even itself.
    let z = obj(PG_CLASS, 0, "a");
    assert!(!z.same_object(&z.clone()));
}

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

// ---------------------------------------------------------------------------
// TokenState / parse_token_id
// ---------------------------------------------------------------------------

#[test]
fn token_state_parse() {
    assert_eq!(TokenState::parse("pending"), Some(TokenState::Pending));
    assert_eq!(TokenState::parse("granted"), Some(TokenState::Granted));
    assert_eq!(TokenState::parse("denied"), Some(TokenState::Denied));
    assert_eq!(TokenState::parse("cancelled"), Some(TokenState::Cancelled));
    assert_eq!(TokenState::parse("GRANTED"), None);
    assert_eq!(TokenState::parse("used"), None);
    assert_eq!(TokenState::parse(""), None);
}

#[test]
fn parse_token_id_canonical() {
    assert_eq!(parse_token_id(TOKEN_ID).as_deref(), Some(TOKEN_ID));
}

#[test]
fn parse_token_id_uppercase_is_lowered() {
    assert_eq!(
        parse_token_id("3F2C1E9A-8B7D-4C6E-9F10-2A3B4C5D6E7F").as_deref(),
        Some(TOKEN_ID)
    );
}

#[test]
fn parse_token_id_braces_and_blanks() {
    assert_eq!(
        parse_token_id("{3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f}").as_deref(),
        Some(TOKEN_ID)
    );
    assert_eq!(
        parse_token_id("  3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f \n").as_deref(),
        Some(TOKEN_ID)
    );
    assert_eq!(
        parse_token_id("{3f2c1e9a8b7d4c6e9f102a3b4c5d6e7f}").as_deref(),
        Some(TOKEN_ID)
    );
}

#[test]
fn parse_token_id_unbalanced_braces_rejected() {
    assert_eq!(
        parse_token_id("{3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        None
    );
    assert_eq!(
        parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f}"),
        None
    );
    assert_eq!(
        parse_token_id("{{3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f}}"),
        None
    );
}

#[test]
fn parse_token_id_without_hyphens() {
    assert_eq!(
        parse_token_id("3f2c1e9a8b7d4c6e9f102a3b4c5d6e7f").as_deref(),
        Some(TOKEN_ID)
    );
    assert_eq!(
        parse_token_id("3F2C1E9A8B7D4C6E9F102A3B4C5D6E7F").as_deref(),
        Some(TOKEN_ID)
    );
}

#[test]
fn parse_token_id_wrong_group_lengths() {
    assert_eq!(parse_token_id("3f2c1e9a8-b7d-4c6e-9f10-2a3b4c5d6e7f"), None);
    assert_eq!(parse_token_id("3f2c1e9a-8b7d4c6e-9f10-2a3b-4c5d6e7f"), None);
    assert_eq!(parse_token_id("3f2c1e9a-8b7d-4c6e-9f102a3b4c5d6e7f"), None);
    assert_eq!(
        parse_token_id("3f2c1e9a--8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        None
    );
    assert_eq!(
        parse_token_id("-3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        None
    );
    assert_eq!(
        parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f-"),
        None
    );
}

#[test]
fn parse_token_id_non_hex() {
    assert_eq!(parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7g"), None);
    assert_eq!(parse_token_id("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"), None);
    assert_eq!(parse_token_id("3f2c1e9a 8b7d 4c6e 9f10 2a3b4c5d6e7f"), None);
    // Non-ASCII characters must not panic and are rejected.
    assert_eq!(parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6eé"), None);
    assert_eq!(
        parse_token_id("３f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f"),
        None
    );
}

#[test]
fn parse_token_id_too_short_or_long() {
    assert_eq!(parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7"), None);
    assert_eq!(
        parse_token_id("3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f0"),
        None
    );
    assert_eq!(parse_token_id("3f2c1e9a8b7d4c6e9f102a3b4c5d6e7"), None);
    assert_eq!(parse_token_id("3f2c1e9a8b7d4c6e9f102a3b4c5d6e7f00"), None);
    assert_eq!(parse_token_id("3f2c"), None);
}

#[test]
fn parse_token_id_empty() {
    assert_eq!(parse_token_id(""), None);
    assert_eq!(parse_token_id("   "), None);
    assert_eq!(parse_token_id("{}"), None);
    assert_eq!(parse_token_id("----"), None);
}

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
        d.message,
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
    assert_contains(&d.hint, "request_approval_token('DROP'");
    assert_contains(
        &d.hint,
        "request_approval_token('DROP', 'TASK-42', 'public.orders')",
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
        "request_approval_token('DROP', '<task id>', 'public.orders')",
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
        "request_approval_token('DROP', 'fix o''brien', 'public.\"it''s\"')",
    );
}

#[test]
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
        assert_contains(&d.hint, &format!("request_approval_token('{}'", o.class));
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
    assert_contains(&d.hint, "request_approval_token('UPDATE'");
}

#[test]
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
    assert_contains(
        &d.message,
        "ALTER TABLE ... DROP COLUMN public.orders refused",
    );
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
        "request_approval_token('DROP', 'TASK-42', '<object>')",
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
        "request_approval_token('DROP', 'o''brien', '<object>')",
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
        "request_approval_token('DROP', 'TASK-42', 'DATABASE sales')",
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
        Decision::AllowWithToken {
            token: TOKEN_ID.into()
        }
    );
}

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
        "request_approval_token('DROP', 'TASK-42', 'public.orders')",
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
        &TokenPresented::NotFound(TOKEN_ID.into()),
    ));
    assert_contains(
        &d.detail,
        &format!("Approval token {TOKEN_ID} does not exist in database \"shop\""),
    );
    assert_contains(&d.hint, "request_approval_token('DROP'");
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
    assert_contains(&d.hint, &format!("grant_approval_token('{TOKEN_ID}')"));
    assert_contains(&d.hint, &format!("approval_token_status('{TOKEN_ID}')"));
}

#[test]
fn denied_token_denied() {
    let mut t = granted(OpClass::Drop, None);
    t.state = TokenState::Denied;
    let d = deny_drop_orders_with(t.clone());
    assert_contains(&d.detail, "it was denied by dba_carol.");
    assert_contains(&d.hint, "request_approval_token('DROP'");

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
        Decision::AllowWithToken {
            token: TOKEN_ID.into()
        }
    );
}

#[test]
fn token_without_expiry_is_accepted() {
    let mut t = granted(OpClass::Drop, None);
    t.expires_at_us = None;
    assert_eq!(
        run(&agent(), &protected_db("shop"), &[drop_orders()], &found(t)),
        Decision::AllowWithToken {
            token: TOKEN_ID.into()
        }
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
        Decision::AllowWithToken {
            token: TOKEN_ID.into()
        }
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
        "request_approval_token('DELETE', 'TASK-42', 'public.orders')",
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
        "request_approval_token('DROP', 'TASK-42', 'public.customers')",
    );
}

#[test]
fn token_target_matched_by_oid_not_display() {
    // Same display text, different oid (object was dropped and recreated): denied.
    let t = granted(OpClass::Drop, Some(obj(PG_CLASS, 99999, "public.orders")));
    let d = deny_drop_orders_with(t);
    assert_contains(
        &d.detail,
        "granted for public.orders but this is public.orders.",
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
        Decision::AllowWithToken {
            token: TOKEN_ID.into()
        }
    );
}

#[test]
fn valid_token_with_matching_target_allows() {
    // Display differs but classid + objid match: the token applies.
    let t = granted(OpClass::Drop, Some(obj(PG_CLASS, 16384, "orders")));
    assert_eq!(
        run(&agent(), &protected_db("shop"), &[drop_orders()], &found(t)),
        Decision::AllowWithToken {
            token: TOKEN_ID.into()
        }
    );
}

#[test]
fn valid_token_with_null_target_covers_multi_op_statement() {
    let t = granted(OpClass::Drop, None);
    assert_eq!(
        run(
            &agent(),
            &protected_db("shop"),
            &[drop_orders(), drop_customers()],
            &found(t)
        ),
        Decision::AllowWithToken {
            token: TOKEN_ID.into()
        }
    );
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
    let t = granted(OpClass::Delete, None);
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
        Decision::AllowWithToken {
            token: TOKEN_ID.into()
        }
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

// ---------------------------------------------------------------------------
// credentials
// ---------------------------------------------------------------------------

const HOUR_US: i64 = 3600 * SECOND_US;

fn login(is_agent: bool, is_superuser: bool, until: Option<i64>) -> LoginFacts {
    LoginFacts {
        role: "agent_bot".into(),
        is_agent,
        is_superuser,
        valid_until_us: until,
        valid_until_text: until.map(|_| "2025-05-09 13:00:00+00".to_string()),
    }
}

#[test]
fn check_login_non_agent_always_ok() {
    for f in [
        login(false, false, None),
        login(false, true, None),
        login(false, false, Some(NOW - HOUR_US)),
        login(false, true, Some(NOW + 1000 * HOUR_US)),
    ] {
        assert_eq!(check_login(&f, NOW, HOUR_US), Ok(()));
    }
}

#[test]
fn check_login_superuser_agent_refused() {
    let e = check_login(&login(true, true, Some(NOW + HOUR_US / 2)), NOW, HOUR_US).unwrap_err();
    assert_contains(&e, "agent role \"agent_bot\" is a superuser");
}

#[test]
fn check_login_no_expiry_refused() {
    let e = check_login(&login(true, false, None), NOW, HOUR_US).unwrap_err();
    assert_contains(&e, "has no credential expiry");
    assert_contains(&e, "VALID UNTIL");
}

#[test]
fn check_login_expired_refused() {
    let e = check_login(&login(true, false, Some(NOW - 1)), NOW, HOUR_US).unwrap_err();
    assert_contains(&e, "expired at 2025-05-09 13:00:00+00");
    // Exactly now counts as expired.
    let e = check_login(&login(true, false, Some(NOW)), NOW, HOUR_US).unwrap_err();
    assert_contains(&e, "expired at");
}

#[test]
fn check_login_too_far_ahead_refused() {
    let e = check_login(&login(true, false, Some(NOW + HOUR_US + 1)), NOW, HOUR_US).unwrap_err();
    assert_contains(
        &e,
        "further ahead than ai_agent_safety.max_credential_lifetime (1h)",
    );
    assert_contains(&e, "this counts as no expiry");
}

#[test]
fn check_login_valid_ok() {
    assert_eq!(
        check_login(&login(true, false, Some(NOW + 1)), NOW, HOUR_US),
        Ok(())
    );
    assert_eq!(
        check_login(&login(true, false, Some(NOW + HOUR_US / 2)), NOW, HOUR_US),
        Ok(())
    );
    // Exactly the maximum lifetime is accepted.
    assert_eq!(
        check_login(&login(true, false, Some(NOW + HOUR_US)), NOW, HOUR_US),
        Ok(())
    );
}

#[test]
fn human_duration_units() {
    assert_eq!(human_duration(HOUR_US), "1h");
    assert_eq!(human_duration(24 * HOUR_US), "24h");
    assert_eq!(human_duration(30 * 60 * SECOND_US), "30min");
    assert_eq!(human_duration(90 * SECOND_US), "90s");
}

#[test]
fn environment_in_scope_truth_table() {
    let scope: Vec<String> = vec!["development".into(), "staging".into()];
    let empty: Vec<String> = vec![];
    // Unlabelled databases are always in scope.
    assert!(environment_in_scope(None, None));
    assert!(environment_in_scope(Some(&scope), None));
    assert!(environment_in_scope(Some(&empty), None));
    // No scope: no labelled database.
    assert!(!environment_in_scope(None, Some("development")));
    assert!(!environment_in_scope(Some(&empty), Some("development")));
    // Scope: exactly the listed ones (case-sensitive).
    assert!(environment_in_scope(Some(&scope), Some("development")));
    assert!(environment_in_scope(Some(&scope), Some("staging")));
    assert!(!environment_in_scope(Some(&scope), Some("production")));
    assert!(!environment_in_scope(Some(&scope), Some("Development")));
}

#[test]
fn check_connect_environment_ok_and_err() {
    let scope: Vec<String> = vec!["development".into()];
    assert_eq!(
        check_connect_environment("agent_bot", Some(&scope), "dev", Some("development")),
        Ok(())
    );
    assert_eq!(
        check_connect_environment("agent_bot", None, "scratch", None),
        Ok(())
    );
    let e = check_connect_environment("agent_bot", Some(&scope), "sales", Some("production"))
        .unwrap_err();
    assert_contains(
        &e,
        "agent role \"agent_bot\" may not connect to database \"sales\"",
    );
    assert_contains(&e, "the database is environment production");
    assert_contains(&e, "allowed environments are development");

    let e = check_connect_environment("agent_bot", None, "sales", Some("production")).unwrap_err();
    assert_contains(&e, "environment production");
    assert_contains(&e, "none set (only databases without an environment label)");
}

#[test]
fn parse_list_entries() {
    assert_eq!(
        parse_list("development, staging"),
        vec!["development", "staging"]
    );
    assert_eq!(
        parse_list("  \"development\" ,staging,, "),
        vec!["development", "staging"]
    );
    assert!(parse_list("").is_empty());
    assert!(parse_list(" , ,").is_empty());
    assert_eq!(parse_list("production"), vec!["production"]);
}

mod later_rules {
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
            id: "t".into(),
            state: TokenState::Granted,
            requested_by: "bot".into(),
            decided_by: Some("dba".into()),
            operation: OpClass::Drop,
            target: None,
            expires_at_us: Some(i64::MAX),
            expires_at_text: "later".into(),
            used: None,
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
}
