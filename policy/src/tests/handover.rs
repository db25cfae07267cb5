use super::*;

fn handing(verb: &'static str, how: HandoverKind) -> Statement {
    Statement {
        writes: true,
        verb: "DDL",
        hands_over: Some(Handover {
            verb,
            owner: "alice".into(),
            how,
        }),
        ..Default::default()
    }
}

#[test]
fn agents_may_not_hand_code_to_roles_that_are_not_agents() {
    let cases = [
        (
            "ALTER FUNCTION ... OWNER TO",
            HandoverKind::GivenTo,
            "ALTER FUNCTION ... OWNER TO refused: agent role \"agent_bot\" may not give objects to role \"alice\", which is not an agent",
        ),
        (
            "CREATE FUNCTION",
            HandoverKind::CreatedAs,
            "CREATE FUNCTION refused: agent role \"agent_bot\" may not create code owned by role \"alice\" (its current role), which is not an agent",
        ),
        (
            "CREATE RULE",
            HandoverKind::RuleOnTableOf,
            "CREATE RULE refused: agent role \"agent_bot\" may not create a rule on a table owned by role \"alice\", which is not an agent",
        ),
        (
            "ALTER TABLE ... ATTACH PARTITION",
            HandoverKind::AttachedTableOf,
            "ALTER TABLE ... ATTACH PARTITION refused: agent role \"agent_bot\" may not make a table owned by role \"alice\", which is not an agent, a partition or child of another table",
        ),
        (
            "ALTER TABLE ... ADD FOREIGN KEY",
            HandoverKind::ForeignKeyActionOnTableOf,
            "ALTER TABLE ... ADD FOREIGN KEY refused: agent role \"agent_bot\" may not add a foreign key that deletes or changes rows (ON DELETE or ON UPDATE CASCADE, SET NULL or SET DEFAULT) to a table owned by role \"alice\", which is not an agent",
        ),
    ];
    for (verb, how, message) in cases {
        let stmt = handing(verb, how);
        let d = refused_everywhere(&stmt);
        assert_eq!(refusal(&d), message);
        assert_contains(&d.detail, "judged as the agent's whoever runs it");
        assert!(!d.hint.is_empty());
    }
}
