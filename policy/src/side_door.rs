//! Doors out of the guard's reach:
//! - `COPY ... TO | FROM PROGRAM` runs a shell command as the server's
//!   operating-system user; `COPY ... TO | FROM 'file'`, `lo_import` and
//!   `lo_export` read or write the server's files (its data files included).
//!   An agent cannot log in holding the privileges these need, but its code
//!   can run in the session of a role that holds them (a superuser calling
//!   the agent's function);
//! - `PREPARE TRANSACTION` leaves the agent's transaction, its changes and
//!   its locks, behind the session: past revocation and expiry.
//!
//! A statement judged as an agent's may not use them, in any database. No
//! token covers it.

use crate::audit::Source;
use crate::outcome::Denial;

/// Which door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SideDoor {
    /// A program run by the server.
    Program,
    /// A file of the server's.
    ServerFile,
    /// A transaction prepared for two-phase commit.
    PreparedTransaction,
    /// What the guard itself reads: the system catalogs, the extension's
    /// own tables and objects (written by its own functions only).
    GuardState,
    /// A connection out of the session (dblink): a new session, as whoever
    /// the connection string names.
    Connection,
    /// A statement an agent's code prepares in another role's session,
    /// which that role may EXECUTE later, unjudged.
    PreparedStatement,
    /// What other servers replicate and from where on: publications,
    /// replication slots and origins. Changing them deletes or loses rows
    /// downstream (a publication's row filter turns an UPDATE into a
    /// DELETE there; a dropped or advanced slot skips changes).
    Replication,
    /// A command sent to other nodes of a distributed cluster (Citus's
    /// `run_command_on_*()`, `master_run_on_worker()`): it runs there in
    /// sessions of their own, as the current role, as text the guard on
    /// this node never judges.
    RemoteCommand,
    /// Citus's internal functions (schema `citus_internal`, or named
    /// `citus_internal_*`): they edit the cluster's metadata (which shards
    /// a table has, where they live) for Citus's own node connections, and
    /// unlock for any session that names itself `citus_internal`.
    CitusInternal,
    /// A logical replication subscription: its apply worker writes the
    /// database (DELETE, TRUNCATE) as the subscription's owner, from another
    /// server, outside any session.
    Subscription,
}

pub fn side_door_denial(session_user: &str, verb: &str, door: SideDoor) -> Denial {
    let (what, why, hint) = match door {
        SideDoor::Program | SideDoor::ServerFile => (
            "run programs or read or write the server's files",
            "A program or a server file is outside everything the guard can judge (it can reach the data files, or connect as anyone).",
            "Use COPY ... TO STDOUT or FROM STDIN through the client connection instead.",
        ),
        SideDoor::PreparedTransaction => (
            "prepare transactions",
            "A prepared transaction outlives the session: its changes and locks would stay past the agent's revocation or expiry, for anyone to commit.",
            "COMMIT or ROLLBACK the transaction in the session instead.",
        ),
        SideDoor::GuardState => (
            "write the system catalogs or the extension's own tables and objects",
            "They are what the guard decides from (settings, memberships, tokens, the audit log); only the extension's own functions write its tables, and only a DBA changes the catalogs or the extension.",
            "A DBA makes such a change, from a session that runs no agent's code.",
        ),
        SideDoor::PreparedStatement => (
            "prepare statements in another role's session",
            "A prepared statement runs when the session EXECUTEs it, later, as that session's own statement (drivers name theirs the same way).",
            "Run the statement in the function itself instead.",
        ),
        SideDoor::Replication => (
            "change publications, replication slots or replication origins",
            "They decide what other servers receive: a publication's row filter turns an UPDATE here into a DELETE downstream, and a dropped or advanced slot or origin makes a subscriber skip changes, outside anything the guard judges.",
            "A DBA manages replication, from a role that is not an agent.",
        ),
        SideDoor::Subscription => (
            "create or change subscriptions",
            "A subscription's apply worker deletes and truncates what another server sends, as the subscription's owner, outside any session the guard judges, and it keeps running after the owner's credentials expire or are revoked.",
            "A DBA creates and manages subscriptions, owned by a role that is not an agent.",
        ),
        SideDoor::RemoteCommand => (
            "send commands to other nodes of the cluster",
            "The other nodes run the command in sessions of their own, as the current role (which may be a role the agent switched to with SET ROLE), from text this node never judges.",
            "Run the statement on the distributed table itself: the coordinator judges it against the table's name, and one approval token covers it on every node.",
        ),
        SideDoor::CitusInternal => (
            "call Citus's internal functions",
            "They change the cluster's metadata (which shards a table has and where they live) below anything the guard judges, and are meant for Citus's own connections between nodes: an agent's call could make a table's rows unreachable.",
            "Use Citus's documented functions and statements on the distributed table; Citus calls its internal functions itself.",
        ),
        SideDoor::Connection => (
            "open connections out of the session",
            "A new connection is a session of its own, as whoever its connection string names, outside what the guard judges here.",
            "Run the statement in this session instead.",
        ),
    };
    Denial {
        source: Source::Guard,
        message: format!("{verb} refused: agent role \"{session_user}\" may not {what}"),
        detail: format!(
            "{why} Refused in every database, whatever its settings say; no approval token covers it."
        ),
        hint: hint.into(),
    }
}

/// The refusal of an agent's statement that other nodes of a distributed
/// cluster would carry out while it runs as another role: Citus connects
/// to them as the current role, so their guards would judge that role,
/// not the agent (a function pushed down to a shard, a human's role after
/// `SET ROLE`, could delete there unjudged). No token covers it.
pub fn other_nodes_as_another_role_denial(agent: &str, current: &str, verb: &str) -> Denial {
    Denial {
        source: Source::Guard,
        message: format!(
            "{verb} refused: agent role \"{agent}\" may not run a statement that reaches other nodes of the cluster as role \"{current}\""
        ),
        detail: format!(
            "Citus carries out part of it on other nodes in sessions of the current role, \"{current}\", whose guards would judge that role instead of the agent. Refused in every database, whatever its settings say; no approval token covers it."
        ),
        hint: format!(
            "Run it as \"{agent}\" itself: RESET ROLE; then the statement (not from a function that runs as another role)."
        ),
    }
}

/// The refusal of an agent's function about to run inside the extension's
/// own work, where it would run with the extension's rights (or as a
/// table's owner while the guard stands aside), unjudged: planning a table
/// whose statistics or index expressions call it (PostgreSQL evaluates an
/// immutable call while planning), a cast or a domain check of the agent's
/// type, an index built. Whatever the extension was doing (keeping a
/// TRUNCATE's rows, checking or doing a restore) is refused, and nothing
/// was done.
pub fn own_work_call_denial(function: &str, agent: &str, oid: u32) -> Denial {
    Denial {
        source: Source::Guard,
        message: format!(
            "function {function}, which agent role \"{agent}\" owns, may not run inside ai_agent_safety's own work, where it would run with the extension's rights, unjudged; the statement was refused and nothing was done"
        ),
        detail: "The recycle bin keeps and restores rows as the bootstrap superuser, with the guard standing aside for its own queries. A table's extended statistics or index expressions, a cast or a domain check can call a function while PostgreSQL plans, reads or indexes the table, and an agent's function there would run unjudged.".into(),
        hint: format!(
            "A DBA finds where the function is used and drops that use (the statistics object, index, cast or constraint): SELECT pg_catalog.pg_describe_object(classid, objid, objsubid) FROM pg_catalog.pg_depend WHERE refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND refobjid = {oid};"
        ),
    }
}
