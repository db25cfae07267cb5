//! Role statements -> operations on the cluster-wide role graph: CREATE,
//! ALTER (attributes, password, VALID UNTIL, ... SET, ALTER GROUP ... ADD
//! or DROP USER), RENAME, DROP ROLE, GRANT and REVOKE of a role, and
//! DROP OWNED BY (which acts on a role's objects, not on the role graph).

use super::named;
use crate::pg::{cstr, list_ptrs, quote_ident};
use aas_policy::{OpClass, Operation, Statement};
use pg_sys::NodeTag::*;
use pgrx::pg_sys;
use std::ffi::{c_char, CStr};

/// Does this utility statement change the cluster-wide role graph (CREATE,
/// ALTER, RENAME, DROP ROLE; GRANT or REVOKE of a role)?
///
/// # Safety
/// `node` is a valid utility statement.
pub unsafe fn changes_roles(node: *mut pg_sys::Node) -> bool {
    match (*node).type_ {
        T_CreateRoleStmt | T_AlterRoleStmt | T_AlterRoleSetStmt | T_DropRoleStmt
        | T_GrantRoleStmt => true,
        T_RenameStmt => {
            (*(node as *const pg_sys::RenameStmt)).renameType == pg_sys::ObjectType::OBJECT_ROLE
        }
        _ => false,
    }
}

/// The operations of a role statement (CREATE, ALTER, ALTER ... SET, DROP,
/// GRANT, REVOKE).
///
/// # Safety
/// `node` is one of those statements, inside a transaction.
pub unsafe fn classify(node: *mut pg_sys::Node, out: &mut Statement) {
    match (*node).type_ {
        T_CreateRoleStmt => {
            let s = &*(node as *const pg_sys::CreateRoleStmt);
            let verb = match s.stmt_type {
                pg_sys::RoleStmtType::ROLESTMT_USER => "CREATE USER",
                pg_sys::RoleStmtType::ROLESTMT_GROUP => "CREATE GROUP",
                _ => "CREATE ROLE",
            };
            out.ops.push(role_by_name(OpClass::Alter, verb, s.role));
        }
        T_AlterRoleStmt => {
            let s = &*(node as *const pg_sys::AlterRoleStmt);
            // ALTER GROUP g ADD USER u (action +1) or DROP USER u (-1)
            // carries the members in the option "rolemembers"; a plain
            // ALTER ROLE has no such option (and action +1 too).
            let members = option_roles(s.options, c"rolemembers");
            let verb = if members.is_empty() {
                "ALTER ROLE".to_string()
            } else {
                format!(
                    "ALTER GROUP ... {} USER {members}",
                    if s.action > 0 { "ADD" } else { "DROP" }
                )
            };
            out.ops.push(role_op(OpClass::Alter, &verb, s.role));
        }
        T_AlterRoleSetStmt => {
            let s = &*(node as *const pg_sys::AlterRoleSetStmt);
            let set = &*s.setstmt;
            let name = cstr(set.name);
            let what = match set.kind {
                pg_sys::VariableSetKind::VAR_RESET_ALL => "RESET ALL".to_string(),
                pg_sys::VariableSetKind::VAR_RESET => format!("RESET {name}"),
                _ => format!("SET {name}"),
            };
            let db = if s.database.is_null() {
                String::new()
            } else {
                format!("IN DATABASE {} ", quote_ident(&cstr(s.database)))
            };
            out.ops.push(role_op(
                OpClass::Alter,
                &format!("ALTER ROLE ... {db}{what}"),
                s.role,
            ));
        }
        T_DropRoleStmt => {
            for spec in list_ptrs((*(node as *const pg_sys::DropRoleStmt)).roles) {
                out.ops.push(role_op(
                    OpClass::Drop,
                    "DROP ROLE",
                    spec as *const pg_sys::RoleSpec,
                ));
            }
        }
        T_GrantRoleStmt => {
            let s = &*(node as *const pg_sys::GrantRoleStmt);
            let grantees: Vec<String> = list_ptrs(s.grantee_roles)
                .into_iter()
                .map(|r| rolespec_name(r as *const pg_sys::RoleSpec).1)
                .collect();
            let verb = if s.is_grant {
                format!("GRANT ... TO {}", grantees.join(", "))
            } else {
                format!("REVOKE ... FROM {}", grantees.join(", "))
            };
            for p in list_ptrs(s.granted_roles) {
                let name = (*(p as *const pg_sys::AccessPriv)).priv_name;
                out.ops.push(role_by_name(OpClass::Alter, &verb, name));
            }
        }
        _ => {}
    }
}

/// The roles in a role option such as `rolemembers`, as written.
///
/// # Safety
/// `options` is NULL or a valid List of DefElem.
unsafe fn option_roles(options: *mut pg_sys::List, name: &CStr) -> String {
    let mut names = Vec::new();
    for o in list_ptrs(options) {
        let d = &*(o as *const pg_sys::DefElem);
        if !d.defname.is_null() && CStr::from_ptr(d.defname) == name {
            for r in list_ptrs(d.arg as *mut pg_sys::List) {
                names.push(rolespec_name(r as *const pg_sys::RoleSpec).1);
            }
        }
    }
    names.join(", ")
}

/// A RoleSpec's role: its oid (InvalidOid when missing) and its name as an
/// identifier (`ALL` for NULL, which ALTER ROLE ALL writes).
///
/// # Safety
/// `spec` is NULL or a valid RoleSpec, inside a transaction.
unsafe fn rolespec_name(spec: *const pg_sys::RoleSpec) -> (pg_sys::Oid, String) {
    if spec.is_null() {
        return (pg_sys::InvalidOid, "ALL".to_string());
    }
    let oid = pg_sys::get_rolespec_oid(spec, true);
    let name = if (*spec).rolename.is_null() {
        crate::pg::role_name(oid)
    } else {
        quote_ident(&cstr((*spec).rolename))
    };
    (oid, name)
}

/// An operation on the role a RoleSpec names (NULL: every role, `ALL`).
///
/// # Safety
/// `spec` is NULL or a valid RoleSpec, inside a transaction.
pub unsafe fn role_op(class: OpClass, verb: &str, spec: *const pg_sys::RoleSpec) -> Operation {
    let (oid, name) = rolespec_name(spec);
    role_named(class, verb, oid, name)
}

fn role_named(class: OpClass, verb: &str, oid: pg_sys::Oid, display: String) -> Operation {
    Operation {
        class,
        verb: verb.to_string(),
        object: named(pg_sys::AuthIdRelationId, oid, display),
        target_database: None,
        is_write: true,
    }
}

/// A role by the name a statement writes, whether or not it exists yet.
///
/// # Safety
/// `name` is NULL or NUL-terminated, inside a transaction.
pub unsafe fn role_by_name(class: OpClass, verb: &str, name: *const c_char) -> Operation {
    let oid = if name.is_null() {
        pg_sys::InvalidOid
    } else {
        pg_sys::get_role_oid(name, true)
    };
    role_named(class, verb, oid, quote_ident(&cstr(name)))
}
