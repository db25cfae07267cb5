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
            // and so are a foreign key (ADD CONSTRAINT, or a new column's
            // REFERENCES), ATTACH PARTITION and INHERIT.
            let s = &*(node as *const pg_sys::AlterTableStmt);
            let cmds: Vec<&pg_sys::AlterTableCmd> = pg::list_ptrs(s.cmds)
                .into_iter()
                .map(|c| &*(c as *const pg_sys::AlterTableCmd))
                .collect();
            if let Some(c) = cmds
                .iter()
                .find(|c| c.subtype == pg_sys::AlterTableType::AT_ChangeOwner)
            {
                (
                    "ALTER ... OWNER TO",
                    pg_sys::get_rolespec_oid(c.newowner, true),
                    HandoverKind::GivenTo,
                )
            } else if let Some(c) = cmds.iter().find(|c| attaches(c)) {
                // The table made another's child: its rows are written
                // through the parent from then on.
                let child = if c.subtype == pg_sys::AlterTableType::AT_AttachPartition {
                    pg::existing_relation((*(c.def as *const pg_sys::PartitionCmd)).name)?
                } else {
                    pg::existing_relation(s.relation)?
                };
                (
                    if c.subtype == pg_sys::AlterTableType::AT_AttachPartition {
                        "ALTER TABLE ... ATTACH PARTITION"
                    } else {
                        "ALTER TABLE ... INHERIT"
                    },
                    pg::relation_owner(child)?,
                    HandoverKind::AttachedTableOf,
                )
            } else if cmds.iter().any(|c| adds_writing_foreign_key(c)) {
                // The key goes on the table and on every partition of it.
                let table = pg::existing_relation(s.relation)?;
                let owner = family_owner_not_agent(table)?;
                (
                    "ALTER TABLE ... ADD FOREIGN KEY",
                    owner,
                    HandoverKind::ForeignKeyActionOnTableOf,
                )
            } else {
                return None;
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

/// Is this ALTER TABLE subcommand ATTACH PARTITION or INHERIT?
fn attaches(c: &pg_sys::AlterTableCmd) -> bool {
    (c.subtype == pg_sys::AlterTableType::AT_AttachPartition && !c.def.is_null())
        || c.subtype == pg_sys::AlterTableType::AT_AddInherit
}

/// Does this ALTER TABLE subcommand add a foreign key with an action that
/// writes the table's rows (ON DELETE or ON UPDATE CASCADE, SET NULL, SET
/// DEFAULT): ADD CONSTRAINT ... FOREIGN KEY, or ADD COLUMN ... REFERENCES?
///
/// # Safety
/// `c` is a valid AlterTableCmd.
unsafe fn adds_writing_foreign_key(c: &pg_sys::AlterTableCmd) -> bool {
    if c.def.is_null() {
        return false;
    }
    match c.subtype {
        pg_sys::AlterTableType::AT_AddConstraint => writing_foreign_key(c.def),
        pg_sys::AlterTableType::AT_AddColumn if (*c.def).type_ == T_ColumnDef => {
            pg::list_ptrs((*(c.def as *const pg_sys::ColumnDef)).constraints)
                .into_iter()
                .any(|k| writing_foreign_key(k as *mut pg_sys::Node))
        }
        _ => false,
    }
}

/// Is this node a FOREIGN KEY constraint whose action writes?
///
/// # Safety
/// `node` is a valid node.
unsafe fn writing_foreign_key(node: *mut pg_sys::Node) -> bool {
    if node.is_null() || (*node).type_ != T_Constraint {
        return false;
    }
    let k = &*(node as *const pg_sys::Constraint);
    k.contype == pg_sys::ConstrType::CONSTR_FOREIGN
        && (pg::action_writes(k.fk_del_action as u8) || pg::action_writes(k.fk_upd_action as u8))
}

/// The owner of the table, or of one of its partitions or children, that
/// is not an agent, if any (the role named when one is).
///
/// # Safety
/// Inside a transaction.
unsafe fn family_owner_not_agent(table: pg_sys::Oid) -> Option<pg_sys::Oid> {
    pg::family(table)
        .into_iter()
        .filter_map(|t| pg::relation_owner(t))
        .find(|o| !agent_code::role_is_agent(*o))
        .or_else(|| pg::relation_owner(table))
}
