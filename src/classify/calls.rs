//! Built-in functions that destroy or leave the database, by what they do:
//! they are calls, not statements, so neither the utility hook nor the
//! plan shows them. Seen where PostgreSQL starts every function call in
//! the executor and in the fast-path protocol (`hooks::access`).
//!
//! - DROP: `lo_unlink` (the large object is gone);
//! - TRUNCATE: `lo_truncate`, `lo_truncate64` (its content is cut);
//! - UPDATE: `lo_put`, `lowrite` (its content is overwritten);
//! - ALTER: `setval` (ids are handed out again, like `ALTER SEQUENCE ...
//!   RESTART`);
//! - a door out of the database: server-side `lo_import`, `lo_export`.

use aas_policy::{ObjectRef, OpClass, Operation, SideDoor, Statement};
use pgrx::pg_sys;

/// Functions of other extensions that open a connection out of the session
/// (dblink's), by name: their oids are not fixed.
const CONNECTING: [&str; 6] = [
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_send_query",
    "dblink_open",
];

/// Citus's functions that send a command, as text, to other nodes of the
/// cluster, by name (their oids are not fixed either).
const REMOTE_COMMANDS: [&str; 7] = [
    "run_command_on_workers",
    "run_command_on_all_nodes",
    "run_command_on_coordinator",
    "run_command_on_shards",
    "run_command_on_placements",
    "run_command_on_colocated_placements",
    "master_run_on_worker",
];

/// Citus's functions that drop a distributed table's shards, or remove it
/// from Citus's metadata (its rows then out of the coordinator's reach),
/// by name: Citus's drop trigger calls them once the table is dropped
/// (never for an agent's DROP TABLE, which the recycle bin keeps instead).
const CITUS_DROPS: [&str; 6] = [
    "citus_drop_all_shards",
    "master_drop_all_shards",
    "master_remove_partition_metadata",
    "master_remove_distributed_table_metadata_from_workers",
    "worker_drop_distributed_table",
    "worker_drop_shell_table",
];

const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// adminpack's functions that write, rename or remove the server's files,
/// by name (PostgreSQL 15; 17 dropped adminpack): the audit spool, the
/// configuration, the data files.
const WRITING_FILES: [&str; 4] = [
    "pg_file_write",
    "pg_file_unlink",
    "pg_file_rename",
    "pg_file_sync",
];

/// A door of another extension's function, by its name (dblink's that
/// connect, Citus's that send commands to other nodes, adminpack's that
/// write the server's files).
fn door_of_other_extension(func: pg_sys::Oid, name: &str) -> Option<(&'static str, SideDoor)> {
    if CONNECTING.contains(&name) {
        Some(("dblink", SideDoor::Connection))
    } else if REMOTE_COMMANDS.contains(&name) {
        Some(("Citus's run_command_on_*()", SideDoor::RemoteCommand))
    } else if citus_internal(func, name) && !crate::port::from_cluster_node() {
        // On another node's connection they are Citus's own work.
        Some(("Citus's internal function", SideDoor::CitusInternal))
    } else if CITUS_DROPS.contains(&name) && !crate::port::from_cluster_node() {
        // Likewise; an agent drops a distributed table with DROP TABLE,
        // which the recycle bin keeps.
        Some((
            "Citus's function that drops a table's shards or metadata",
            SideDoor::CitusInternal,
        ))
    } else if WRITING_FILES.contains(&name) {
        Some((
            "adminpack's pg_file_*() on a server file",
            SideDoor::ServerFile,
        ))
    } else {
        None
    }
}

/// Is this one of Citus's internal functions: in schema `citus_internal`,
/// or named `citus_internal_*` (the older names, in `pg_catalog`)?
fn citus_internal(func: pg_sys::Oid, name: &str) -> bool {
    if name.starts_with("citus_internal") {
        return true;
    }
    // SAFETY: catalog lookups by oid, inside a transaction (a call starts).
    let schema = unsafe {
        let ns = pg_sys::get_func_namespace(func);
        let n = pg_sys::get_namespace_name(ns);
        if n.is_null() {
            return false;
        }
        crate::pg::cstr(n)
    };
    schema == "citus_internal"
}

/// `lo_import(text, oid)`: pgrx types this one constant as an Oid.
const LO_IMPORT_TEXT_OID: u32 = 767;

/// What a built-in call does: an operation on an object it picks when it
/// runs, or a door out.
enum Builtin {
    Op(OpClass, &'static str, &'static str),
    Door(&'static str),
    Replication(&'static str),
}

/// The built-ins above, by oid; a plain match, raising nothing.
fn builtin(f: u32) -> Option<Builtin> {
    Some(match f {
        pg_sys::F_LO_UNLINK => Builtin::Op(OpClass::Drop, "lo_unlink() on", "a large object"),
        pg_sys::F_LO_TRUNCATE | pg_sys::F_LO_TRUNCATE64 => {
            Builtin::Op(OpClass::Truncate, "lo_truncate() on", "a large object")
        }
        pg_sys::F_LO_PUT => Builtin::Op(OpClass::Update, "lo_put()", "a large object"),
        pg_sys::F_LOWRITE => Builtin::Op(OpClass::Update, "lowrite()", "a large object"),
        pg_sys::F_SETVAL_REGCLASS_INT8 | pg_sys::F_SETVAL_REGCLASS_INT8_BOOL => {
            Builtin::Op(OpClass::Alter, "setval() on", "a sequence")
        }
        pg_sys::F_LO_IMPORT_TEXT | LO_IMPORT_TEXT_OID => {
            Builtin::Door("lo_import() of a server file")
        }
        pg_sys::F_LO_EXPORT => Builtin::Door("lo_export() to a server file"),
        pg_sys::F_PG_READ_FILE_TEXT
        | pg_sys::F_PG_READ_FILE_TEXT_INT8_INT8
        | pg_sys::F_PG_READ_FILE_TEXT_INT8_INT8_BOOL
        | pg_sys::F_PG_READ_BINARY_FILE_TEXT
        | pg_sys::F_PG_READ_BINARY_FILE_TEXT_INT8_INT8
        | pg_sys::F_PG_READ_BINARY_FILE_TEXT_INT8_INT8_BOOL => {
            Builtin::Door("pg_read_file() of a server file")
        }
        // What other servers replicate, and from where on: a slot dropped
        // or advanced, an origin moved, loses changes downstream.
        pg_sys::F_PG_DROP_REPLICATION_SLOT
        | pg_sys::F_PG_CREATE_LOGICAL_REPLICATION_SLOT
        | pg_sys::F_PG_CREATE_PHYSICAL_REPLICATION_SLOT
        | pg_sys::F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME
        | pg_sys::F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME_BOOL
        | pg_sys::F_PG_COPY_LOGICAL_REPLICATION_SLOT_NAME_NAME_BOOL_NAME
        | pg_sys::F_PG_COPY_PHYSICAL_REPLICATION_SLOT_NAME_NAME
        | pg_sys::F_PG_COPY_PHYSICAL_REPLICATION_SLOT_NAME_NAME_BOOL
        | pg_sys::F_PG_REPLICATION_SLOT_ADVANCE
        | pg_sys::F_PG_LOGICAL_SLOT_GET_CHANGES
        | pg_sys::F_PG_LOGICAL_SLOT_GET_BINARY_CHANGES
        | pg_sys::F_PG_REPLICATION_ORIGIN_ADVANCE
        | pg_sys::F_PG_REPLICATION_ORIGIN_CREATE
        | pg_sys::F_PG_REPLICATION_ORIGIN_DROP
        | pg_sys::F_PG_REPLICATION_ORIGIN_SESSION_SETUP
        | pg_sys::F_PG_REPLICATION_ORIGIN_XACT_SETUP => {
            Builtin::Replication("a replication slot or origin function")
        }
        // Where the majors differ: 15 still has the old
        // pg_read_file(text, int8, int8) entry point; 16 removed it and added
        // pg_read_file(text, bool) and pg_read_binary_file(text, bool).
        #[cfg(feature = "pg15")]
        pg_sys::F_PG_READ_FILE_OLD => Builtin::Door("pg_read_file() of a server file"),
        #[cfg(not(feature = "pg15"))]
        pg_sys::F_PG_READ_FILE_TEXT_BOOL | pg_sys::F_PG_READ_BINARY_FILE_TEXT_BOOL => {
            Builtin::Door("pg_read_file() of a server file")
        }
        _ => return None,
    })
}

/// Could a call of this function be one of those above? From its oid
/// alone, raising nothing: a built-in listed, or any function not built
/// in (dblink's are told by name).
#[inline]
pub fn may_matter(func: pg_sys::Oid) -> bool {
    let f = func.to_u32();
    f >= FIRST_NORMAL_OBJECT_ID || builtin(f).is_some()
}

/// What a call of this function does, when it is one of those above.
pub fn classify(func: pg_sys::Oid) -> Option<Statement> {
    let f = func.to_u32();
    match builtin(f) {
        Some(Builtin::Op(class, verb, what)) => Some(Statement {
            ops: vec![Operation {
                class,
                verb: verb.into(),
                object: ObjectRef::picked_at_run_time(what),
                target_database: None,
                is_write: true,
            }],
            writes: true,
            verb: "SELECT",
            ..Default::default()
        }),
        Some(Builtin::Door(verb)) => Some(door(verb, SideDoor::ServerFile)),
        Some(Builtin::Replication(verb)) => Some(door(verb, SideDoor::Replication)),
        None if f >= FIRST_NORMAL_OBJECT_ID => {
            // SAFETY: a catalog lookup by oid, inside a transaction (a call
            // starts).
            let name = unsafe { crate::pg::cstr(pg_sys::get_func_name(func)) };
            door_of_other_extension(func, &name).map(|(verb, d)| door(verb, d))
        }
        None => None,
    }
}

fn door(verb: &'static str, door: SideDoor) -> Statement {
    Statement {
        writes: true,
        verb: "SELECT",
        side_door: Some((verb, door)),
        ..Default::default()
    }
}
