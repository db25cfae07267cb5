//! A statement's form, for tokens bound to the statement they approve: its
//! raw parse tree as PostgreSQL prints it, without the source positions.
//! Whitespace, comments and keyword case do not change it (nor the case of
//! unquoted names, which the parser folds); constants, tables, columns and
//! conditions do, and so does a bind parameter in place of a constant.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// The form of the one statement in `sql`; `Err` when `sql` holds no
/// statement or several.
pub fn of(sql: &str) -> Result<String, String> {
    let c = CString::new(sql).map_err(|_| "the statement contains a NUL byte".to_string())?;
    // SAFETY: raw_parser reads the NUL-terminated text and returns a List of
    // RawStmt in the current memory context (or raises a syntax error).
    let list = unsafe { pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT) };
    let n = if list.is_null() {
        0
    } else {
        // SAFETY: a non-NIL result is a valid List.
        unsafe { (*list).length }
    };
    if n != 1 {
        return Err(format!(
            "it must be exactly one statement, and it holds {n}"
        ));
    }
    // SAFETY: one element, a RawStmt node; nodeToString prints its tree.
    let text = unsafe {
        let raw = pg_sys::list_nth(list, 0) as *mut pg_sys::RawStmt;
        let s = pg_sys::nodeToString((*raw).stmt as *const std::ffi::c_void);
        CStr::from_ptr(s).to_string_lossy().into_owned()
    };
    Ok(without_locations(&text))
}

/// The printed tree without its `:location N` fields.
fn without_locations(tree: &str) -> String {
    let mut out = String::with_capacity(tree.len());
    let mut rest = tree;
    while let Some(i) = rest.find(" :location ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " :location ".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// What a statement given with a request does: its form, the operation
/// class it performs and the object it does it to (resolved now, as the
/// requesting role, through its search_path).
pub struct Requested {
    pub form: String,
    pub class: &'static str,
    pub target: (pg_sys::Oid, pg_sys::Oid),
}

/// Reads the one statement of a request. `Err` says why it cannot be bound:
/// several statements, a kind no token covers, several targets, or an
/// object that does not exist.
pub fn requested(sql: &str) -> Result<Requested, String> {
    let form = of(sql)?;
    let c = CString::new(sql).map_err(|_| "the statement contains a NUL byte".to_string())?;
    // SAFETY: as in `of`; the tree is read by node tag, each cast matching
    // its tag, and lookups raise a PostgreSQL error for missing objects.
    unsafe {
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let raw = pg_sys::list_nth(list, 0) as *mut pg_sys::RawStmt;
        let node = (*raw).stmt;
        let relation = |rv: *mut pg_sys::RangeVar| {
            (
                pg_sys::RelationRelationId,
                pg_sys::RangeVarGetRelidExtended(
                    rv,
                    pg_sys::NoLock as i32,
                    0,
                    None,
                    std::ptr::null_mut(),
                ),
            )
        };
        let (class, target) = match (*node).type_ {
            pg_sys::NodeTag::T_DeleteStmt => ("DELETE", relation((*(node as *mut pg_sys::DeleteStmt)).relation)),
            pg_sys::NodeTag::T_UpdateStmt => ("UPDATE", relation((*(node as *mut pg_sys::UpdateStmt)).relation)),
            pg_sys::NodeTag::T_AlterTableStmt => ("ALTER", relation((*(node as *mut pg_sys::AlterTableStmt)).relation)),
            pg_sys::NodeTag::T_TruncateStmt => {
                let rels = (*(node as *mut pg_sys::TruncateStmt)).relations;
                if rels.is_null() || (*rels).length != 1 {
                    return Err("a bound TRUNCATE names exactly one table".into());
                }
                ("TRUNCATE", relation(pg_sys::list_nth(rels, 0) as *mut pg_sys::RangeVar))
            }
            pg_sys::NodeTag::T_DropdbStmt => {
                let name = (*(node as *mut pg_sys::DropdbStmt)).dbname;
                ("DROP", (pg_sys::DatabaseRelationId, pg_sys::get_database_oid(name, false)))
            }
            pg_sys::NodeTag::T_DropStmt => {
                let d = node as *mut pg_sys::DropStmt;
                let objects = (*d).objects;
                if objects.is_null() || (*objects).length != 1 {
                    return Err("a bound DROP names exactly one object".into());
                }
                let mut rel: pg_sys::Relation = std::ptr::null_mut();
                let addr = pg_sys::get_object_address(
                    (*d).removeType,
                    pg_sys::list_nth(objects, 0) as *mut pg_sys::Node,
                    &mut rel,
                    pg_sys::AccessShareLock as i32,
                    false,
                );
                if !rel.is_null() {
                    pg_sys::relation_close(rel, pg_sys::NoLock as i32);
                }
                ("DROP", (addr.classId, addr.objectId))
            }
            _ => {
                return Err(
                    "a token can be bound only to a DELETE, UPDATE, TRUNCATE, DROP or ALTER TABLE statement (request this one without the statement, naming its form with verb => ...)".into(),
                )
            }
        };
        Ok(Requested {
            form,
            class,
            target,
        })
    }
}
