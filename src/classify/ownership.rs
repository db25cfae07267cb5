//! Statements that would leave code or an object with a role that is not
//! an agent (see `aas_policy::handover`): ALTER ... OWNER TO (ALTER TABLE's
//! subcommand too) and REASSIGN OWNED BY ... TO such a role; CREATE FUNCTION | PROCEDURE | AGGREGATE |
//! VIEW while the current role is one (after SET ROLE); CREATE RULE,
//! CREATE TRIGGER, or a foreign key whose action writes (ALTER TABLE ...
//! ADD FOREIGN KEY ... ON DELETE CASCADE), on a table such a role owns.

use crate::{agent_code, pg};
use aas_policy::{Handover, HandoverKind};
use pg_sys::NodeTag::*;
use pgrx::pg_sys;

/// # Safety
/// `node` is a valid utility statement, inside a transaction.
pub unsafe fn hands_over(node: *mut pg_sys::Node) -> Option<Handover> {
    let (verb, owner, how) = match (*node).type_ {
        T_AlterOwnerStmt => {
            let s = &*(node as *const pg_sys::AlterOwnerStmt);
            (
                "ALTER ... OWNER TO",
                pg_sys::get_rolespec_oid(s.newowner, true),
                HandoverKind::GivenTo,
            )
        }
        T_AlterTableStmt => {
            // ALTER TABLE | VIEW | SEQUENCE ... OWNER TO is a subcommand,
            // and so is ADD CONSTRAINT ... FOREIGN KEY.
            let s = &*(node as *const pg_sys::AlterTableStmt);
            let cmds = pg::list_ptrs(s.cmds);
            let new_owner = cmds.iter().find_map(|c| {
                let c = &*(*c as *const pg_sys::AlterTableCmd);
                (c.subtype == pg_sys::AlterTableType::AT_ChangeOwner).then_some(c.newowner)
            });
            match new_owner {
                Some(new_owner) => (
                    "ALTER ... OWNER TO",
                    pg_sys::get_rolespec_oid(new_owner, true),
                    HandoverKind::GivenTo,
                ),
                None if cmds.iter().any(|c| adds_writing_foreign_key(*c)) => (
                    "ALTER TABLE ... ADD FOREIGN KEY",
                    pg::relation_owner(pg::existing_relation(s.relation)?)?,
                    HandoverKind::ForeignKeyActionOnTableOf,
                ),
                None => return None,
            }
        }
        T_ReassignOwnedStmt => {
            let s = &*(node as *const pg_sys::ReassignOwnedStmt);
            (
                "REASSIGN OWNED",
                pg_sys::get_rolespec_oid(s.newrole, true),
                HandoverKind::GivenTo,
            )
        }
        T_CreateFunctionStmt | T_ViewStmt | T_DefineStmt => {
            let verb = match (*node).type_ {
                T_CreateFunctionStmt
                    if (*(node as *const pg_sys::CreateFunctionStmt)).is_procedure =>
                {
                    "CREATE PROCEDURE"
                }
                T_CreateFunctionStmt => "CREATE FUNCTION",
                T_ViewStmt => "CREATE VIEW",
                _ if (*(node as *const pg_sys::DefineStmt)).kind
                    == pg_sys::ObjectType::OBJECT_AGGREGATE =>
                {
                    "CREATE AGGREGATE"
                }
                _ => return None,
            };
            (verb, pg_sys::GetUserId(), HandoverKind::CreatedAs)
        }
        T_RuleStmt => {
            let s = &*(node as *const pg_sys::RuleStmt);
            let relid = pg::existing_relation(s.relation)?;
            (
                "CREATE RULE",
                pg::relation_owner(relid)?,
                HandoverKind::RuleOnTableOf,
            )
        }
        T_CreateTrigStmt => {
            let s = &*(node as *const pg_sys::CreateTrigStmt);
            let relid = pg::existing_relation(s.relation)?;
            (
                "CREATE TRIGGER",
                pg::relation_owner(relid)?,
                HandoverKind::TriggerOnTableOf,
            )
        }
        _ => return None,
    };
    if owner == pg_sys::InvalidOid || agent_code::role_is_agent(owner) {
        return None;
    }
    Some(Handover {
        verb,
        owner: pg::role_name(owner),
        how,
    })
}

/// Is this ALTER TABLE subcommand ADD CONSTRAINT ... FOREIGN KEY with an
/// action that writes the table's rows (ON DELETE or ON UPDATE CASCADE,
/// SET NULL, SET DEFAULT)?
///
/// # Safety
/// `cmd` is a valid AlterTableCmd.
unsafe fn adds_writing_foreign_key(cmd: *mut std::ffi::c_void) -> bool {
    let c = &*(cmd as *const pg_sys::AlterTableCmd);
    if c.subtype != pg_sys::AlterTableType::AT_AddConstraint
        || c.def.is_null()
        || (*c.def).type_ != T_Constraint
    {
        return false;
    }
    let k = &*(c.def as *const pg_sys::Constraint);
    let writes = |action: std::ffi::c_char| matches!(action as u8, b'c' | b'n' | b'd');
    k.contype == pg_sys::ConstrType::CONSTR_FOREIGN
        && (writes(k.fk_del_action) || writes(k.fk_upd_action))
}
