//! What: which destructive operations does a statement perform?
//!
//! `utility` reads utility parse trees (DROP, TRUNCATE, ALTER ...); `plan` reads
//! planned queries (DELETE, UPDATE, MERGE, writable CTEs, INSERT ... ON CONFLICT
//! DO UPDATE). Both produce the policy core's [`aas_policy::Operation`]s.

pub mod plan;
pub mod utility;

use aas_policy::ObjectRef;
use pgrx::pg_sys;
use std::ffi::{c_void, CStr};

/// What a statement does, as far as the guard cares.
#[derive(Default, Debug)]
pub struct StatementOps {
    pub ops: Vec<aas_policy::Operation>,
    /// A write or DDL that is not itself destructive (INSERT, CREATE ...).
    pub writes: bool,
    /// The statement's verb for messages about non-destructive writes.
    pub verb: &'static str,
}

/// The pointers in a PostgreSQL `List`.
pub(crate) unsafe fn list_ptrs(list: *mut pg_sys::List) -> Vec<*mut c_void> {
    if list.is_null() {
        return Vec::new();
    }
    let l = &*list;
    (0..l.length as usize)
        .map(|i| (*l.elements.add(i)).ptr_value)
        .collect()
}

/// The integers in a PostgreSQL integer `List`.
pub(crate) unsafe fn list_ints(list: *mut pg_sys::List) -> Vec<i32> {
    if list.is_null() {
        return Vec::new();
    }
    let l = &*list;
    (0..l.length as usize)
        .map(|i| (*l.elements.add(i)).int_value)
        .collect()
}

pub(crate) unsafe fn node_tag(p: *const c_void) -> pg_sys::NodeTag {
    (*(p as *const pg_sys::Node)).type_
}

pub(crate) unsafe fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

pub(crate) fn quote_ident(s: &str) -> String {
    let c = std::ffi::CString::new(s).unwrap_or_default();
    unsafe { cstr(pg_sys::quote_identifier(c.as_ptr())) }
}

/// `schema.relation` for a relation oid, quoted as PostgreSQL would.
pub(crate) fn relation_display(relid: pg_sys::Oid) -> String {
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return format!("relation {}", relid.to_u32());
        }
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        format!("{}.{}", quote_ident(&cstr(nsp)), quote_ident(&cstr(name)))
    }
}

pub(crate) fn relation_ref(relid: pg_sys::Oid) -> ObjectRef {
    ObjectRef {
        classid: pg_sys::RelationRelationId.to_u32(),
        objid: relid.to_u32(),
        display: relation_display(relid),
    }
}

/// Is this relation one of the extension's own tables (tokens, audit)? Those are
/// written only by the extension's SECURITY DEFINER functions.
pub(crate) fn is_own_relation(relid: pg_sys::Oid) -> bool {
    unsafe {
        let nsp = pg_sys::get_rel_namespace(relid);
        nsp != pg_sys::InvalidOid && nsp == crate::own_namespace()
    }
}
