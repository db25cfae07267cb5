//! Tests for the role-change rule in `decision.rs`: an agent's changes to the
//! cluster-wide role graph are refused in every database, and no token
//! covers them.

use super::*;

fn role_change(verb: &str, role: &str) -> Statement {
    Statement {
        ops: vec![op(OpClass::Alter, verb, obj(1260, 0, role))],
        writes: true,
        verb: "DDL",
        changes_roles: true,
        changes_settings: Vec::new(),
        takes_api_name: None,
        hands_over: None,
        side_door: None,
        reaches_other_nodes: false,
    }
}

#[test]
fn role_changes_refused_in_an_unprotected_database() {
    let d = decide_statement(
        &agent(),
        &open_db("scratch"),
        None,
        &role_change("CREATE ROLE", "helper"),
        &TokenPresented::None,
        NOW,
    );
    let d = denial(d);
    assert_eq!(d.source, Source::Guard);
    assert_eq!(
        refusal(&d),
        "CREATE ROLE helper refused: agent role \"agent_bot\" may not create, alter, drop or grant roles"
    );
    assert_contains(&d.detail, "refused in every database");
    assert_contains(&d.detail, "database \"scratch\"");
    assert_contains(&d.detail, "or ai_agent_safety.mode say");
    // Never a hint to refresh the credentials of an agent that just tried this.
    assert_eq!(
        d.hint,
        "Role changes are made by a DBA, from a role that is not an agent."
    );
}

#[test]
fn no_token_covers_a_role_change() {
    let mut t = granted(OpClass::Alter, Some(obj(1260, 0, "helper")));
    t.requested_by = "agent_bot".into();
    let d = decide_statement(
        &agent(),
        &protected_db("shop"),
        None,
        &role_change("GRANT", "ai_agent_approver"),
        &found(t),
        NOW,
    );
    assert_contains(
        &denial(d).message,
        "may not create, alter, drop or grant roles",
    );
}

#[test]
fn a_human_may_change_roles() {
    let d = decide_statement(
        &human(),
        &protected_db("shop"),
        None,
        &role_change("DROP ROLE", "old_bot"),
        &TokenPresented::None,
        NOW,
    );
    assert_eq!(d, Decision::Allow);
}

#[test]
fn the_two_groups_are_not_renamed_or_dropped_by_anyone() {
    let groups = [(10, Group::Agents), (11, Group::Approvers)];
    let change = |verb: &str, oid: u32, name: &str| Statement {
        ops: vec![op(OpClass::Alter, verb, obj(1260, oid, name))],
        writes: true,
        verb: "DDL",
        changes_roles: true,
        changes_settings: Vec::new(),
        takes_api_name: None,
        hands_over: None,
        side_door: None,
        reaches_other_nodes: false,
    };
    let d = group_change_denial(&change("DROP ROLE", 10, "ai_agent"), &groups).unwrap();
    assert_eq!(
        d.message,
        "DROP ROLE ai_agent refused: ai_agent is the agent group (ai_agent_safety.agent_role)"
    );
    assert_contains(
        &d.hint,
        "ALTER SYSTEM SET ai_agent_safety.agent_role = '<new group>';",
    );
    let d = group_change_denial(
        &change("ALTER ROLE ... RENAME TO x", 11, "ai_agent_approver"),
        &groups,
    )
    .unwrap();
    assert_contains(&d.message, "ai_agent_approver is the approver group");
    // Any other role, or a role that does not exist (oid 0), is not theirs to refuse.
    assert_eq!(
        group_change_denial(&change("DROP ROLE", 12, "bob"), &groups),
        None
    );
    assert_eq!(
        group_change_denial(&change("DROP ROLE", 0, "ghost"), &[(0, Group::Agents)]),
        None
    );
}

#[test]
fn guard_settings_changes_refused_for_agents_everywhere() {
    let stmt = Statement {
        writes: true,
        verb: "ALTER SYSTEM",
        changes_settings: vec!["ai_agent_safety.mode".into()],
        ..Default::default()
    };
    let d = refused_everywhere(&stmt);
    assert_eq!(
        refusal(&d),
        "ALTER SYSTEM refused: agent role \"agent_bot\" may not change ai_agent_safety.mode"
    );
}
