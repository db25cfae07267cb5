use super::*;

fn from_node() -> SessionFacts {
    SessionFacts {
        from_cluster_node: true,
        ..agent()
    }
}

fn with(stmt: Statement, who: &SessionFacts) -> Decision {
    decide_statement(
        who,
        &protected_db("production"),
        None,
        &stmt,
        &TokenPresented::None,
        NOW,
    )
}

#[test]
fn a_shard_statement_another_node_judged_needs_no_token_of_its_own() {
    // Citus's DELETE on a shard, part of a distributed DELETE the
    // coordinator approved: sent by the coordinator, as the agent.
    let delete = Statement {
        ops: vec![delete_orders()],
        writes: true,
        verb: "DELETE",
        ..Default::default()
    };
    assert_eq!(
        with(delete.clone(), &from_node()),
        Decision::AllowFromClusterNode
    );
    // The same statement from the agent's own connection to the worker.
    let d = denial(with(delete, &agent()));
    assert_contains(refusal(&d), "needs an approval token");
    // What the database does not protect is simply allowed.
    let update = Statement {
        ops: vec![update_orders()],
        writes: true,
        verb: "UPDATE",
        ..Default::default()
    };
    assert_eq!(with(update, &from_node()), Decision::Allow);
}

#[test]
fn the_coordinators_two_phase_commit_passes_and_no_other_door_does() {
    let prepare = Statement {
        writes: true,
        verb: "PREPARE TRANSACTION",
        side_door: Some(("PREPARE TRANSACTION", SideDoor::PreparedTransaction)),
        ..Default::default()
    };
    assert_eq!(
        with(prepare.clone(), &from_node()),
        Decision::AllowFromClusterNode
    );
    denial(with(prepare, &agent()));
    // A node never sends these for an agent: its own guard refused them.
    let program = Statement {
        writes: true,
        verb: "COPY",
        side_door: Some(("COPY ... TO PROGRAM", SideDoor::Program)),
        ..Default::default()
    };
    denial(with(program, &from_node()));
    let role = Statement {
        ops: vec![op(OpClass::Drop, "DROP ROLE", obj(1260, 10, "ROLE alice"))],
        writes: true,
        verb: "DDL",
        changes_roles: true,
        ..Default::default()
    };
    denial(with(role, &from_node()));
}

#[test]
fn a_node_carries_row_changes_only_not_a_drop_or_truncate_of_a_shard() {
    // Citus drops and truncates shards for its own functions too
    // (citus_drop_all_shards), which the agent's node sees as a SELECT.
    for op in [drop_orders(), op(OpClass::Truncate, "TRUNCATE", orders())] {
        let stmt = Statement {
            ops: vec![op],
            writes: true,
            verb: "DDL",
            ..Default::default()
        };
        let d = denial(with(stmt, &from_node()));
        assert_contains(refusal(&d), "needs an approval token");
    }
}
