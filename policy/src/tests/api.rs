use super::*;
use crate::api::{api_name_denial, call, literal, FUNCTION_NAMES, SCHEMA};

#[test]
fn api_names_are_the_extensions_function_names_and_its_schema() {
    assert!(takes_api_name(NameKind::Routine, "grant_approval_token"));
    assert!(takes_api_name(NameKind::Routine, "_decide"));
    assert!(takes_api_name(NameKind::Schema, "ai_agent_safety"));
    // Names are compared as stored: "Grant_Approval_Token" quoted is another name.
    assert!(!takes_api_name(NameKind::Routine, "Grant_Approval_Token"));
    assert!(!takes_api_name(NameKind::Routine, "ai_agent_safety"));
    assert!(!takes_api_name(NameKind::Schema, "grant_approval_token"));
    assert!(!takes_api_name(NameKind::Routine, "grant_approval_tokens"));
    let mut sorted = FUNCTION_NAMES.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, FUNCTION_NAMES.to_vec(), "sorted, no duplicates");
}

#[test]
fn calls_are_schema_qualified_with_typed_literals() {
    assert_eq!(literal("o'brien", "text"), "'o''brien'::text");
    assert_eq!(
        call("grant_approval_token", &[(TOKEN_ID, "uuid")]),
        format!("{SCHEMA}.grant_approval_token('{TOKEN_ID}'::uuid)")
    );
    assert_eq!(
        call(
            "issue_agent_credentials",
            &[("bot", "name"), ("1 hour", "interval")]
        ),
        "ai_agent_safety.issue_agent_credentials('bot'::name, '1 hour'::interval)"
    );
}

fn creates(kind: NameKind, name: &str, verb: &'static str) -> Statement {
    Statement {
        writes: true,
        verb: "DDL",
        takes_api_name: Some(ApiName {
            verb,
            kind,
            name: name.into(),
        }),
        ..Default::default()
    }
}

#[test]
fn agents_may_not_take_api_names_anywhere_humans_may() {
    let stmt = creates(NameKind::Routine, "grant_approval_token", "CREATE FUNCTION");
    let d = refused_everywhere(&stmt);
    assert_eq!(
        refusal(&d),
        "CREATE FUNCTION refused: agent role \"agent_bot\" may not name a function grant_approval_token: it is a name of the ai_agent_safety API"
    );
    assert_contains(&d.detail, "in any schema of any database");
    assert_contains(&d.hint, "schema ai_agent_safety");
    let schema = denial(decide_statement(
        &agent(),
        &open_db("scratch"),
        None,
        &creates(NameKind::Schema, "ai_agent_safety", "CREATE SCHEMA"),
        &TokenPresented::None,
        NOW,
    ));
    assert_contains(&schema.message, "CREATE SCHEMA refused");
    assert_contains(&schema.message, "may not name a schema ai_agent_safety");
    let rename = ApiName {
        verb: "ALTER FUNCTION ... RENAME",
        kind: NameKind::Routine,
        name: "revoke_agent_credentials".into(),
    };
    assert_eq!(api_name_denial("bot", &rename).source, Source::Guard);
}
