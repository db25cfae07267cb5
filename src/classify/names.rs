//! Statements that give a function, procedure, aggregate or schema a name:
//! which API name of the extension they would take, if any (agents may not,
//! see `aas_policy::api`).

use crate::pg::{cstr, list_ptrs};
use aas_policy::{takes_api_name, ApiName, NameKind};
use pg_sys::NodeTag::*;
use pg_sys::ObjectType::*;
use pgrx::pg_sys;

/// The API name this statement would give an object: CREATE [OR REPLACE]
/// FUNCTION | PROCEDURE, CREATE AGGREGATE, ALTER FUNCTION | PROCEDURE |
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
        T_CreateSchemaStmt => (
            "CREATE SCHEMA",
            NameKind::Schema,
            cstr((*(node as *const pg_sys::CreateSchemaStmt)).schemaname),
        ),
        _ => return None,
    };
    takes_api_name(kind, &name).then_some(ApiName { verb, kind, name })
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
