//! Utility statements -> operations.
//!
//! DROP of every object kind (DropStmt, DROP DATABASE/ROLE/TABLESPACE/
//! SUBSCRIPTION/USER MAPPING, DROP OWNED), TRUNCATE, and the ALTER forms that
//! lose or hide data: ALTER TABLE ... DROP COLUMN / ALTER COLUMN TYPE /
//! DETACH PARTITION, RENAME of a table or column, and SET SCHEMA of a table
//! (which, like RENAME, makes the table vanish from where it was).

use super::{effects, named, names, ownership, relation_ref, roles};
use crate::pg::{cstr, list_ptrs, node_tag, quote_ident};
use aas_policy::{ObjectRef, OpClass, Operation, Shape, Statement};
use pg_sys::NodeTag::*;
use pg_sys::ObjectType::*;
use pgrx::pg_sys;
use std::ffi::c_void;

/// Utility statements that change nothing persistent, for the task-environment
/// rule ("any write or DDL").
fn is_non_writing(tag: pg_sys::NodeTag) -> bool {
    matches!(
        tag,
        T_VariableSetStmt
            | T_VariableShowStmt
            | T_TransactionStmt
            | T_ExplainStmt
            | T_PrepareStmt
            | T_ExecuteStmt
            | T_DeallocateStmt
            | T_DeclareCursorStmt
            | T_FetchStmt
            | T_ClosePortalStmt
            | T_ListenStmt
            | T_UnlistenStmt
            | T_NotifyStmt
            | T_DiscardStmt
            | T_LockStmt
            | T_CheckPointStmt
            | T_DoStmt
            | T_CallStmt
            | T_CopyStmt
            | T_VacuumStmt
            | T_ConstraintsSetStmt
            | T_LoadStmt
    )
}

pub fn object_type_word(t: pg_sys::ObjectType::Type) -> &'static str {
    match t {
        OBJECT_TABLE => "TABLE",
        OBJECT_VIEW => "VIEW",
        OBJECT_MATVIEW => "MATERIALIZED VIEW",
        OBJECT_INDEX => "INDEX",
        OBJECT_SEQUENCE => "SEQUENCE",
        OBJECT_FOREIGN_TABLE => "FOREIGN TABLE",
        OBJECT_SCHEMA => "SCHEMA",
        OBJECT_FUNCTION => "FUNCTION",
        OBJECT_PROCEDURE => "PROCEDURE",
        OBJECT_ROUTINE => "ROUTINE",
        OBJECT_AGGREGATE => "AGGREGATE",
        OBJECT_TYPE => "TYPE",
        OBJECT_DOMAIN => "DOMAIN",
        OBJECT_EXTENSION => "EXTENSION",
        OBJECT_TRIGGER => "TRIGGER",
        OBJECT_RULE => "RULE",
        OBJECT_POLICY => "POLICY",
        OBJECT_COLLATION => "COLLATION",
        OBJECT_CONVERSION => "CONVERSION",
        OBJECT_OPERATOR => "OPERATOR",
        OBJECT_OPCLASS => "OPERATOR CLASS",
        OBJECT_OPFAMILY => "OPERATOR FAMILY",
        OBJECT_LANGUAGE => "LANGUAGE",
        OBJECT_CAST => "CAST",
        OBJECT_TRANSFORM => "TRANSFORM",
        OBJECT_STATISTIC_EXT => "STATISTICS",
        OBJECT_PUBLICATION => "PUBLICATION",
        OBJECT_FDW => "FOREIGN DATA WRAPPER",
        OBJECT_FOREIGN_SERVER => "SERVER",
        OBJECT_EVENT_TRIGGER => "EVENT TRIGGER",
        OBJECT_ACCESS_METHOD => "ACCESS METHOD",
        OBJECT_TSCONFIGURATION => "TEXT SEARCH CONFIGURATION",
        OBJECT_TSDICTIONARY => "TEXT SEARCH DICTIONARY",
        OBJECT_TSPARSER => "TEXT SEARCH PARSER",
        OBJECT_TSTEMPLATE => "TEXT SEARCH TEMPLATE",
        _ => "OBJECT",
    }
}

fn drop_op(verb: String, object: ObjectRef) -> Operation {
    Operation {
        class: OpClass::Drop,
        verb,
        object,
        target_database: None,
        is_write: true,
    }
}

/// The name as written, for objects that do not exist.
///
/// # Safety
/// `object` is NULL or a valid name node of a DropStmt.
unsafe fn written_name(object: *mut c_void) -> String {
    if object.is_null() {
        return "(unnamed)".into();
    }
    match node_tag(object) {
        T_String => quote_ident(&cstr((*(object as *const pg_sys::String)).sval)),
        T_List => cstr(pg_sys::NameListToString(object as *mut pg_sys::List)),
        _ => "(object)".into(),
    }
}

/// # Safety
/// `s` is a valid DropStmt, inside a transaction (catalog lookups).
unsafe fn drop_stmt(s: &pg_sys::DropStmt, out: &mut Statement) {
    let verb = format!("DROP {}", object_type_word(s.removeType));
    for object in list_ptrs(s.objects) {
        let mut rel: pg_sys::Relation = std::ptr::null_mut();
        let addr = pg_sys::get_object_address(
            s.removeType,
            object as *mut pg_sys::Node,
            &mut rel,
            pg_sys::AccessExclusiveLock as i32,
            true,
        );
        if !rel.is_null() {
            pg_sys::relation_close(rel, pg_sys::NoLock as i32);
        }
        let display = if addr.objectId != pg_sys::InvalidOid {
            cstr(pg_sys::getObjectIdentity(&addr, true))
        } else {
            written_name(object)
        };
        out.ops.push(drop_op(
            verb.clone(),
            named(addr.classId, addr.objectId, display),
        ));
    }
}

/// What is known of an agent's utility statement before classification:
/// does it drop a database, or touch the guard (roles, the guard's
/// settings, API names, who owns agent code)? Both are decided whatever
/// this database's settings say. Reads the catalog for owners' roles.
///
/// # Safety
/// `node` is a valid utility statement, inside a transaction.
pub unsafe fn shape(node: *mut pg_sys::Node) -> Shape {
    // BEGIN, COMMIT, ROLLBACK and savepoints write nothing (PREPARE
    // TRANSACTION and COMMIT or ROLLBACK PREPARED are judged): an agent's
    // transaction pays nothing for its brackets.
    if (*node).type_ == T_TransactionStmt {
        use pg_sys::TransactionStmtKind::*;
        let kind = (*(node as *const pg_sys::TransactionStmt)).kind;
        if matches!(
            kind,
            TRANS_STMT_BEGIN
                | TRANS_STMT_START
                | TRANS_STMT_COMMIT
                | TRANS_STMT_ROLLBACK
                | TRANS_STMT_SAVEPOINT
                | TRANS_STMT_RELEASE
                | TRANS_STMT_ROLLBACK_TO
        ) {
            return Shape::READ;
        }
    }
    Shape::unclassified_utility(
        effects::acts_on_database(node),
        roles::changes_roles(node)
            || effects::changes_guard_settings(node)
            || names::api_name_taken(node).is_some()
            || ownership::hands_over(node).is_some()
            || effects::side_door(node).is_some(),
    )
}

/// # Safety
/// `rv` is NULL or a valid RangeVar, inside a transaction.
unsafe fn range_var_oid(rv: *const pg_sys::RangeVar) -> pg_sys::Oid {
    crate::pg::existing_relation(rv).unwrap_or(pg_sys::InvalidOid)
}

/// # Safety
/// `rv` is a valid RangeVar, inside a transaction.
unsafe fn range_var_ref(rv: *const pg_sys::RangeVar) -> ObjectRef {
    let oid = range_var_oid(rv);
    if oid != pg_sys::InvalidOid {
        relation_ref(oid)
    } else {
        let name = if (*rv).schemaname.is_null() {
            quote_ident(&cstr((*rv).relname))
        } else {
            format!(
                "{}.{}",
                quote_ident(&cstr((*rv).schemaname)),
                quote_ident(&cstr((*rv).relname))
            )
        };
        named(pg_sys::RelationRelationId, pg_sys::InvalidOid, name)
    }
}

/// Relation kinds whose RENAME or SET SCHEMA hides their data.
const RELATION_KINDS: [pg_sys::ObjectType::Type; 4] = [
    OBJECT_TABLE,
    OBJECT_FOREIGN_TABLE,
    OBJECT_VIEW,
    OBJECT_MATVIEW,
];

/// Does a RENAME or SET SCHEMA spelled for this object type hide data? For
/// the relation kinds, always; spelled for an index or a sequence, when the
/// relation named is really a table, view, materialized view or foreign
/// table (`ALTER INDEX orders RENAME TO x` renames the table orders).
///
/// # Safety
/// `rv` is NULL or a valid RangeVar, inside a transaction.
unsafe fn hides_data(spelled: pg_sys::ObjectType::Type, rv: *const pg_sys::RangeVar) -> bool {
    if RELATION_KINDS.contains(&spelled) {
        return true;
    }
    if !matches!(spelled, OBJECT_INDEX | OBJECT_SEQUENCE) {
        return false;
    }
    let oid = range_var_oid(rv);
    oid != pg_sys::InvalidOid
        && matches!(
            pg_sys::get_rel_relkind(oid) as u8,
            b'r' | b'p' | b'v' | b'm' | b'f'
        )
}

fn alter_op(verb: &str, object: ObjectRef) -> Operation {
    Operation {
        class: OpClass::Alter,
        verb: verb.to_string(),
        object,
        target_database: None,
        is_write: true,
    }
}

/// The operations a utility statement performs.
///
/// # Safety
/// `node` is NULL or a valid utility statement, inside a transaction.
pub unsafe fn classify(node: *mut pg_sys::Node) -> Statement {
    let mut out = Statement {
        verb: "DDL",
        ..Default::default()
    };
    if node.is_null() {
        return out;
    }
    let tag = (*node).type_;
    out.writes = !is_non_writing(tag);
    out.changes_roles = roles::changes_roles(node);
    out.takes_api_name = names::api_name_taken(node);
    out.hands_over = ownership::hands_over(node);
    out.side_door = effects::side_door(node);
    if effects::classify(node, &mut out) {
        return out;
    }
    match tag {
        T_DropStmt => drop_stmt(&*(node as *const pg_sys::DropStmt), &mut out),
        T_DropdbStmt => {
            let s = &*(node as *const pg_sys::DropdbStmt);
            let name = cstr(s.dbname);
            let c = std::ffi::CString::new(name.clone()).unwrap_or_default();
            let oid = pg_sys::get_database_oid(c.as_ptr(), true);
            out.ops.push(Operation {
                class: OpClass::Drop,
                verb: "DROP DATABASE".into(),
                object: named(pg_sys::DatabaseRelationId, oid, quote_ident(&name)),
                target_database: Some(name),
                is_write: true,
            });
        }
        T_DropOwnedStmt => {
            for spec in list_ptrs((*(node as *const pg_sys::DropOwnedStmt)).roles) {
                out.ops.push(roles::role_op(
                    OpClass::Drop,
                    "DROP OWNED BY",
                    spec as *const pg_sys::RoleSpec,
                ));
            }
        }
        T_DropRoleStmt | T_CreateRoleStmt | T_AlterRoleStmt | T_AlterRoleSetStmt
        | T_GrantRoleStmt => roles::classify(node, &mut out),
        T_DropTableSpaceStmt => {
            let s = &*(node as *const pg_sys::DropTableSpaceStmt);
            let name = cstr(s.tablespacename);
            let c = std::ffi::CString::new(name.clone()).unwrap_or_default();
            let oid = pg_sys::get_tablespace_oid(c.as_ptr(), true);
            out.ops.push(drop_op(
                "DROP TABLESPACE".into(),
                named(pg_sys::TableSpaceRelationId, oid, quote_ident(&name)),
            ));
        }
        T_DropSubscriptionStmt => {
            let s = &*(node as *const pg_sys::DropSubscriptionStmt);
            out.ops.push(drop_op(
                "DROP SUBSCRIPTION".into(),
                named(
                    pg_sys::InvalidOid,
                    pg_sys::InvalidOid,
                    quote_ident(&cstr(s.subname)),
                ),
            ));
        }
        T_DropUserMappingStmt => {
            let s = &*(node as *const pg_sys::DropUserMappingStmt);
            out.ops.push(drop_op(
                "DROP USER MAPPING".into(),
                named(
                    pg_sys::InvalidOid,
                    pg_sys::InvalidOid,
                    format!("for server {}", quote_ident(&cstr(s.servername))),
                ),
            ));
        }
        T_TruncateStmt => {
            let s = &*(node as *const pg_sys::TruncateStmt);
            let truncate = |object| Operation {
                class: OpClass::Truncate,
                verb: "TRUNCATE".into(),
                object,
                target_database: None,
                is_write: true,
            };
            for rv in list_ptrs(s.relations) {
                let rv = rv as *const pg_sys::RangeVar;
                out.ops.push(truncate(range_var_ref(rv)));
                // Without ONLY, TRUNCATE also empties the tables that inherit
                // from this one: each that another role owns is named too, so
                // a token for a table of one's own cannot reach a table
                // someone attached to it.
                let oid = range_var_oid(rv);
                if (*rv).inh && oid != pg_sys::InvalidOid {
                    for child in inheritors_owned_by_others(oid) {
                        out.ops.push(truncate(relation_ref(child)));
                    }
                }
            }
        }
        T_AlterTableStmt => {
            let s = &*(node as *const pg_sys::AlterTableStmt);
            for cmd in list_ptrs(s.cmds) {
                let c = &*(cmd as *const pg_sys::AlterTableCmd);
                let verb = match c.subtype {
                    pg_sys::AlterTableType::AT_DropColumn => Some(format!(
                        "ALTER TABLE ... DROP COLUMN {}",
                        quote_ident(&cstr(c.name))
                    )),
                    pg_sys::AlterTableType::AT_AlterColumnType => Some(format!(
                        "ALTER TABLE ... ALTER COLUMN {} TYPE",
                        quote_ident(&cstr(c.name))
                    )),
                    pg_sys::AlterTableType::AT_DetachPartition
                    | pg_sys::AlterTableType::AT_DetachPartitionFinalize => {
                        Some("ALTER TABLE ... DETACH PARTITION".to_string())
                    }
                    // Loses every row at the next crash.
                    pg_sys::AlterTableType::AT_SetUnLogged => {
                        Some("ALTER TABLE ... SET UNLOGGED".to_string())
                    }
                    // The child's rows vanish from the parent's queries.
                    pg_sys::AlterTableType::AT_DropInherit => {
                        Some("ALTER TABLE ... NO INHERIT".to_string())
                    }
                    // With no policy, every row is hidden from its readers.
                    pg_sys::AlterTableType::AT_EnableRowSecurity => {
                        Some("ALTER TABLE ... ENABLE ROW LEVEL SECURITY".to_string())
                    }
                    pg_sys::AlterTableType::AT_ForceRowSecurity => {
                        Some("ALTER TABLE ... FORCE ROW LEVEL SECURITY".to_string())
                    }
                    // An identity column's sequence, changed like ALTER
                    // SEQUENCE (ids handed out again, or run out), or gone.
                    pg_sys::AlterTableType::AT_SetIdentity => {
                        let opts = c.def as *mut pg_sys::List;
                        [
                            (c"restart", "RESTART"),
                            (c"increment", "INCREMENT"),
                            (c"cycle", "CYCLE"),
                            (c"maxvalue", "MAXVALUE"),
                            (c"minvalue", "MINVALUE"),
                        ]
                        .into_iter()
                        .find(|(n, _)| effects::option(opts, n).is_some())
                        .map(|(_, word)| {
                            format!(
                                "ALTER TABLE ... ALTER COLUMN {} SET {word}",
                                quote_ident(&cstr(c.name))
                            )
                        })
                    }
                    // Recomputes every stored value of a generated column:
                    // an UPDATE of the whole column. Where the majors differ:
                    // new in 17.
                    #[cfg(not(feature = "pg15"))]
                    pg_sys::AlterTableType::AT_SetExpression => Some(format!(
                        "ALTER TABLE ... ALTER COLUMN {} SET EXPRESSION",
                        quote_ident(&cstr(c.name))
                    )),
                    pg_sys::AlterTableType::AT_DropIdentity => Some(format!(
                        "ALTER TABLE ... ALTER COLUMN {} DROP IDENTITY",
                        quote_ident(&cstr(c.name))
                    )),
                    _ => None,
                };
                if let Some(v) = verb {
                    out.ops.push(alter_op(&v, range_var_ref(s.relation)));
                }
            }
        }
        T_RenameStmt => {
            let s = &*(node as *const pg_sys::RenameStmt);
            if hides_data(s.renameType, s.relation) {
                out.ops.push(alter_op(
                    &format!(
                        "ALTER {} ... RENAME TO {}",
                        object_type_word(s.renameType),
                        quote_ident(&cstr(s.newname))
                    ),
                    range_var_ref(s.relation),
                ));
            } else if s.renameType == OBJECT_SCHEMA {
                // Every table in it vanishes from its readers' queries.
                let oid = pg_sys::get_namespace_oid(s.subname, true);
                out.ops.push(alter_op(
                    &format!(
                        "ALTER SCHEMA ... RENAME TO {}",
                        quote_ident(&cstr(s.newname))
                    ),
                    named(
                        pg_sys::NamespaceRelationId,
                        oid,
                        quote_ident(&cstr(s.subname)),
                    ),
                ));
            } else if s.renameType == OBJECT_ROLE {
                out.ops.push(roles::role_by_name(
                    OpClass::Alter,
                    &format!("ALTER ROLE ... RENAME TO {}", quote_ident(&cstr(s.newname))),
                    s.subname,
                ));
            } else if s.renameType == OBJECT_ATTRIBUTE {
                // Stored values of the composite type read back under
                // another field name.
                out.ops.push(alter_op(
                    &format!(
                        "ALTER TYPE ... RENAME ATTRIBUTE {} TO {}",
                        quote_ident(&cstr(s.subname)),
                        quote_ident(&cstr(s.newname))
                    ),
                    range_var_ref(s.relation),
                ));
            } else if s.renameType == OBJECT_COLUMN {
                out.ops.push(alter_op(
                    &format!(
                        "ALTER TABLE ... RENAME COLUMN {} TO {}",
                        quote_ident(&cstr(s.subname)),
                        quote_ident(&cstr(s.newname))
                    ),
                    range_var_ref(s.relation),
                ));
            }
        }
        T_AlterObjectSchemaStmt => {
            let s = &*(node as *const pg_sys::AlterObjectSchemaStmt);
            if !s.relation.is_null() && hides_data(s.objectType, s.relation) {
                out.ops.push(alter_op(
                    &format!(
                        "ALTER {} ... SET SCHEMA {}",
                        object_type_word(s.objectType),
                        quote_ident(&cstr(s.newschema))
                    ),
                    range_var_ref(s.relation),
                ));
            }
        }
        _ => {}
    }
    out
}

/// The tables that inherit from `relid`, directly or not, whose owner is not
/// `relid`'s owner (partitions a table's owner made are part of it).
fn inheritors_owned_by_others(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    use pgrx::prelude::*;
    crate::privileged::run(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "WITH RECURSIVE d(oid) AS (
                     SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent = $1
                     UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN d ON i.inhparent = d.oid)
                 SELECT c.oid FROM d JOIN pg_catalog.pg_class c ON c.oid = d.oid
                  WHERE c.relowner <> (SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1)",
                None,
                &[relid.into()],
            )?;
            let mut out = Vec::new();
            for r in rows {
                if let Some(o) = r.get::<pg_sys::Oid>(1)? {
                    out.push(o);
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    })
    .unwrap_or_default()
}
