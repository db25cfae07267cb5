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

const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Is this function one of dblink's that connect?
fn opens_connection(func: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup by oid, inside a transaction (a call starts).
    let name = unsafe { crate::pg::cstr(pg_sys::get_func_name(func)) };
    CONNECTING.contains(&name.as_str())
}

/// `lo_import(text, oid)`: pgrx types this one constant as an Oid.
const LO_IMPORT_TEXT_OID: u32 = 767;

/// What a call of this function does, when it is one of those above.
pub fn classify(func: pg_sys::Oid) -> Option<Statement> {
    let (class, verb, what) = match func.to_u32() {
        pg_sys::F_LO_UNLINK => (OpClass::Drop, "lo_unlink() on", "a large object"),
        pg_sys::F_LO_TRUNCATE | pg_sys::F_LO_TRUNCATE64 => {
            (OpClass::Truncate, "lo_truncate() on", "a large object")
        }
        pg_sys::F_LO_PUT => (OpClass::Update, "lo_put()", "a large object"),
        pg_sys::F_LOWRITE => (OpClass::Update, "lowrite()", "a large object"),
        pg_sys::F_SETVAL_REGCLASS_INT8 | pg_sys::F_SETVAL_REGCLASS_INT8_BOOL => {
            (OpClass::Alter, "setval() on", "a sequence")
        }
        pg_sys::F_LO_IMPORT_TEXT | LO_IMPORT_TEXT_OID => {
            return Some(door("lo_import() of a server file"))
        }
        pg_sys::F_LO_EXPORT => return Some(door("lo_export() to a server file")),
        pg_sys::F_PG_READ_FILE_TEXT
        | pg_sys::F_PG_READ_FILE_TEXT_INT8_INT8
        | pg_sys::F_PG_READ_FILE_TEXT_INT8_INT8_BOOL
        | pg_sys::F_PG_READ_FILE_OLD
        | pg_sys::F_PG_READ_BINARY_FILE_TEXT
        | pg_sys::F_PG_READ_BINARY_FILE_TEXT_INT8_INT8
        | pg_sys::F_PG_READ_BINARY_FILE_TEXT_INT8_INT8_BOOL => {
            return Some(door("pg_read_file() of a server file"))
        }
        f if f >= FIRST_NORMAL_OBJECT_ID && opens_connection(func) => {
            return Some(Statement {
                writes: true,
                verb: "SELECT",
                side_door: Some(("dblink", SideDoor::Connection)),
                ..Default::default()
            })
        }
        _ => return None,
    };
    Some(Statement {
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
    })
}

fn door(verb: &'static str) -> Statement {
    Statement {
        writes: true,
        verb: "SELECT",
        side_door: Some((verb, SideDoor::ServerFile)),
        ..Default::default()
    }
}
