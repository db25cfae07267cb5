//! Tests for `operation.rs`: OpClass, OpSet, Operation and ObjectRef.

use super::*;

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
    let s = OpSet::parse("DROP, DELETE, TRUNCATE").unwrap();
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
    // A verb with "..." takes the object in its place.
    assert_eq!(
        op(OpClass::Alter, "ALTER TABLE ... DROP COLUMN note", orders()).describe(),
        "ALTER TABLE public.orders DROP COLUMN note"
    );
    assert_eq!(
        op(OpClass::Delete, "MERGE ... THEN DELETE", orders()).describe(),
        "MERGE ... THEN DELETE on public.orders"
    );
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
