//! The names a relation had: an agent that renames `customers` to
//! `tmp_import_2019` and then asks to drop "an old import table" must not
//! mislead the approver. Renames and moves to another schema that agents
//! make are kept in `ai_agent_safety.renames`, in the same transaction, and
//! `ai_agent_safety.pending_requests` shows a target's earlier names.

use crate::{pg, privileged};
use pg_sys::NodeTag::*;
use pg_sys::ObjectType::*;
use pgrx::prelude::*;

/// A rename about to run: the relation and the name it has now.
pub struct Pending {
    relid: pg_sys::Oid,
    old_name: String,
}

/// Relation kinds whose name a RENAME or SET SCHEMA changes.
const RELATIONS: [pg_sys::ObjectType::Type; 6] = [
    OBJECT_TABLE,
    OBJECT_VIEW,
    OBJECT_MATVIEW,
    OBJECT_FOREIGN_TABLE,
    OBJECT_INDEX,
    OBJECT_SEQUENCE,
];

/// Before the statement runs: is it a rename or a move of a relation?
///
/// # Safety
/// `node` is a valid utility statement, inside a transaction.
pub unsafe fn before(node: *mut pg_sys::Node) -> Option<Pending> {
    let rv = match (*node).type_ {
        T_RenameStmt => {
            let s = &*(node as *const pg_sys::RenameStmt);
            // A relation's own name (not a column's or a constraint's).
            if !RELATIONS.contains(&s.renameType) || !s.subname.is_null() {
                return None;
            }
            s.relation
        }
        T_AlterObjectSchemaStmt => {
            let s = &*(node as *const pg_sys::AlterObjectSchemaStmt);
            if !RELATIONS.contains(&s.objectType) {
                return None;
            }
            s.relation
        }
        _ => return None,
    };
    let relid = pg::existing_relation(rv)?;
    Some(Pending {
        relid,
        old_name: pg::relation_display(relid),
    })
}

/// After the statement ran: keeps the old and the new name.
pub fn after(p: Pending) {
    if !pg::extension_created() {
        return;
    }
    let new_name = pg::relation_display(p.relid);
    if new_name == p.old_name {
        return;
    }
    let done = privileged::run(|| {
        Spi::connect_mut(|c| {
            c.update(
                "INSERT INTO ai_agent_safety.renames (classid, objid, old_name, new_name, renamed_by) \
                 VALUES ('pg_catalog.pg_class'::pg_catalog.regclass, $1, $2, $3, session_user)",
                None,
                &[p.relid.into(), p.old_name.clone().into(), new_name.clone().into()],
            )
            .map(|_| ())
        })
    });
    if let Err(e) = done {
        pgrx::error!(
            "ai_agent_safety could not record the rename of {}: {e}",
            p.old_name
        );
    }
}
