//! Statements that give a function, procedure, aggregate or schema a name:
//! which API name of the extension they would take, if any (agents may not,
//! see `aas_policy::api`).

use crate::pg::{self, cstr, list_ptrs};
use aas_policy::{takes_api_name, ApiName, NameKind};
use pg_sys::NodeTag::*;
use pg_sys::ObjectType::*;
use pgrx::pg_sys;

/// The API name this statement would give an object: CREATE [OR REPLACE]
/// FUNCTION | PROCEDURE, CREATE AGGREGATE, CREATE TYPE ... AS RANGE (its
/// constructors), ALTER FUNCTION | PROCEDURE |
/// ROUTINE | AGGREGATE ... RENAME TO, CREATE SCHEMA, ALTER SCHEMA ... RENAME
/// TO. Reads the parse tree only.
///
/// # Safety
/// `node` is a valid utility statement.
pub unsafe fn api_name_taken(node: *mut pg_sys::Node) -> Option<ApiName> {
    let (verb, kind, name) = match (*node).type_ {
        T_CreateFunctionStmt => {
            let s = &*(node as *const pg_sys::CreateFunctionStmt);
            let verb = if s.is_procedure {
                "CREATE PROCEDURE"
            } else {
                "CREATE FUNCTION"
            };
            (verb, NameKind::Routine, last_name(s.funcname))
        }
        T_DefineStmt => {
            let s = &*(node as *const pg_sys::DefineStmt);
            if s.kind != OBJECT_AGGREGATE {
                return None;
            }
            ("CREATE AGGREGATE", NameKind::Routine, last_name(s.defnames))
        }
        T_RenameStmt => {
            let s = &*(node as *const pg_sys::RenameStmt);
            let (verb, kind) = match s.renameType {
                OBJECT_FUNCTION => ("ALTER FUNCTION ... RENAME", NameKind::Routine),
                OBJECT_PROCEDURE => ("ALTER PROCEDURE ... RENAME", NameKind::Routine),
                OBJECT_ROUTINE => ("ALTER ROUTINE ... RENAME", NameKind::Routine),
                OBJECT_AGGREGATE => ("ALTER AGGREGATE ... RENAME", NameKind::Routine),
                OBJECT_SCHEMA => ("ALTER SCHEMA ... RENAME", NameKind::Schema),
                _ => return None,
            };
            (verb, kind, cstr(s.newname))
        }
        T_CreateRangeStmt => {
            // A range type brings constructor functions of its name, and of
            // its multirange type's name.
            let s = &*(node as *const pg_sys::CreateRangeStmt);
            let multirange = list_ptrs(s.params)
                .into_iter()
                .map(|d| &*(d as *const pg_sys::DefElem))
                .find(|d| std::ffi::CStr::from_ptr(d.defname) == c"multirange_type_name")
                .and_then(|d| match pg::node_tag(d.arg as *const std::ffi::c_void) {
                    T_TypeName => Some(last_name((*(d.arg as *const pg_sys::TypeName)).names)),
                    T_String => Some(cstr((*(d.arg as *const pg_sys::String)).sval)),
                    _ => None,
                });
            let name = [Some(last_name(s.typeName)), multirange]
                .into_iter()
                .flatten()
                .find(|n| takes_api_name(NameKind::Routine, n))?;
            ("CREATE TYPE ... AS RANGE", NameKind::Routine, name)
        }
        T_CreateSchemaStmt => {
            let s = &*(node as *const pg_sys::CreateSchemaStmt);
            // Without a name the schema takes its AUTHORIZATION role's.
            let name = if s.schemaname.is_null() {
                authorization_name(s.authrole)
            } else {
                cstr(s.schemaname)
            };
            ("CREATE SCHEMA", NameKind::Schema, name)
        }
        _ => return None,
    };
    takes_api_name(kind, &name).then_some(ApiName { verb, kind, name })
}

/// The name a role specification stands for (empty for none).
///
/// # Safety
/// `r` is NULL or a valid RoleSpec.
unsafe fn authorization_name(r: *const pg_sys::RoleSpec) -> String {
    use pg_sys::RoleSpecType::*;
    if r.is_null() {
        return String::new();
    }
    match (*r).roletype {
        ROLESPEC_CSTRING => cstr((*r).rolename),
        ROLESPEC_CURRENT_ROLE | ROLESPEC_CURRENT_USER => crate::pg::current_user_name(),
        ROLESPEC_SESSION_USER => crate::pg::session_user_name(),
        _ => String::new(),
    }
}

/// The last element of a qualified name (a List of String nodes).
///
/// # Safety
/// `names` is NULL or a valid List of String nodes.
unsafe fn last_name(names: *mut pg_sys::List) -> String {
    list_ptrs(names)
        .last()
        .map(|p| cstr((*(*p as *const pg_sys::String)).sval))
        .unwrap_or_default()
}
