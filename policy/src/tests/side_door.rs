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
