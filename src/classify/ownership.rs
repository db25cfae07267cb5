//! Statements that would leave code or an object with a role that is not
//! an agent (see `aas_policy::handover`): ALTER ... OWNER TO (ALTER TABLE's
//! subcommand too) and REASSIGN OWNED BY ... TO such a role; CREATE FUNCTION | PROCEDURE | AGGREGATE |
//! VIEW while the current role is one (after SET ROLE); CREATE RULE on a
//! table such a role owns.

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
            // ALTER TABLE | VIEW | SEQUENCE ... OWNER TO is a subcommand.
            let s = &*(node as *const pg_sys::AlterTableStmt);
            let new_owner = pg::list_ptrs(s.cmds).into_iter().find_map(|c| {
                let c = &*(c as *const pg_sys::AlterTableCmd);
                (c.subtype == pg_sys::AlterTableType::AT_ChangeOwner).then_some(c.newowner)
            })?;
            (
                "ALTER ... OWNER TO",
                pg_sys::get_rolespec_oid(new_owner, true),
                HandoverKind::GivenTo,
            )
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
