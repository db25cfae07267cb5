use super::*;

#[test]
fn agents_statements_never_open_doors_out_of_the_database() {
    let stmt = Statement {
        writes: true,
        verb: "DDL",
        side_door: Some(("COPY ... TO PROGRAM", SideDoor::Program)),
        ..Default::default()
    };
    let d = refused_everywhere(&stmt);
    assert_eq!(
        refusal(&d),
        "COPY ... TO PROGRAM refused: agent role \"agent_bot\" may not run programs or read or write the server's files"
    );
    assert_contains(&d.hint, "TO STDOUT");
    let prepare = Statement {
        side_door: Some(("PREPARE TRANSACTION", SideDoor::PreparedTransaction)),
        ..stmt.clone()
    };
    let d = denial(decide_statement(
        &agent(),
        &open_db("scratch"),
        None,
        &prepare,
        &TokenPresented::None,
        NOW,
    ));
    assert_eq!(
        refusal(&d),
        "PREPARE TRANSACTION refused: agent role \"agent_bot\" may not prepare transactions"
    );
    assert_contains(&d.detail, "past the agent's revocation or expiry");
}

#[test]
fn agents_may_not_send_commands_to_other_nodes_of_a_cluster() {
    // Citus's run_command_on_*(): the text runs on the workers as the
    // current role, which an agent may have switched to a human's.
    let stmt = Statement {
        writes: true,
        verb: "SELECT",
        side_door: Some(("Citus's run_command_on_*()", SideDoor::RemoteCommand)),
        ..Default::default()
    };
    let d = refused_everywhere(&stmt);
    assert_eq!(
        refusal(&d),
        "Citus's run_command_on_*() refused: agent role \"agent_bot\" may not send commands to other nodes of the cluster"
    );
    assert_contains(&d.detail, "SET ROLE");
    assert_contains(&d.detail, "no approval token covers it");
    assert_contains(&d.hint, "one approval token covers it on every node");
}

#[test]
fn an_agent_reaches_other_nodes_only_as_itself() {
    // A distributed statement (Citus): other nodes run its parts as the
    // current role. After SET ROLE to a human's role their guards would
    // judge the human, and a function pushed down to a shard could delete
    // there unjudged.
    let stmt = Statement {
        verb: "SELECT",
        reaches_other_nodes: true,
        ..Default::default()
    };
    assert!(Shape::of(&stmt).touches_guard, "always decided");
    assert!(!token_can_matter(&stmt), "no token covers it");
    let decide = |who: &SessionFacts, db: &DatabaseFacts| {
        decide_statement(who, db, None, &stmt, &TokenPresented::None, NOW)
    };
    // As itself: the other nodes judge the agent.
    assert_eq!(
        decide(&agent(), &protected_db("production")),
        Decision::Allow
    );
    assert_eq!(
        decide(&human(), &protected_db("production")),
        Decision::Allow
    );
    let acting = SessionFacts {
        current_user: "alice".into(),
        ..agent()
    };
    for db in [protected_db("production"), open_db("scratch")] {
        let d = denial(decide(&acting, &db));
        assert_eq!(
            refusal(&d),
            "SELECT refused: agent role \"agent_bot\" may not run a statement that reaches other nodes of the cluster as role \"alice\""
        );
        assert_contains(&d.detail, "judge that role instead of the agent");
        assert_contains(&d.hint, "RESET ROLE;");
    }
    // The agent's code run in a human's session: what that human can do.
    let run_by = SessionFacts {
        current_user: "alice".into(),
        run_by: Some("alice".into()),
        ..agent()
    };
    let d = denial(decide(&run_by, &protected_db("production")));
    assert_contains(&d.hint, "ALTER FUNCTION <name> OWNER TO alice;");
}

#[test]
fn agents_may_not_call_citus_internal_functions() {
    let stmt = Statement {
        writes: true,
        verb: "SELECT",
        side_door: Some(("Citus's internal function", SideDoor::CitusInternal)),
        ..Default::default()
    };
    let d = refused_everywhere(&stmt);
    assert_eq!(
        refusal(&d),
        "Citus's internal function refused: agent role \"agent_bot\" may not call Citus's internal functions"
    );
    assert_contains(&d.detail, "unreachable");
}
