//! What: which operations does a statement perform?
//!
//! `utility` reads utility parse trees (DROP, TRUNCATE, ALTER ...); `plan` reads
//! planned queries (DELETE, UPDATE, MERGE, writable CTEs, INSERT ... ON CONFLICT
//! DO UPDATE). Both produce the policy core's [`aas_policy::Statement`]: its
//! [`aas_policy::Operation`]s, and whether it writes at all.

pub mod calls;
pub mod effects;
pub mod names;
pub mod ownership;
pub mod plan;
pub mod roles;
pub mod utility;

use crate::pg;
use aas_policy::ObjectRef;
use pgrx::pg_sys;

/// A relation as an object reference: its catalog, oid and display name.
pub(crate) fn relation_ref(relid: pg_sys::Oid) -> ObjectRef {
    ObjectRef {
        classid: pg_sys::RelationRelationId.to_u32(),
        objid: relid.to_u32(),
        // Shown in events and messages only: the cached name.
        display: pg::relation_names::cached(relid),
    }
}

/// Is this relation one of the extension's own tables (tokens, audit)? Those are
/// written only by the extension's SECURITY DEFINER functions.
pub(crate) fn is_own_relation(relid: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookup by oid.
    let nsp = unsafe { pg_sys::get_rel_namespace(relid) };
    nsp != pg_sys::InvalidOid && nsp == pg::own_namespace()
}

/// An object reference from a catalog, an oid and a display name.
pub(crate) fn named(classid: pg_sys::Oid, objid: pg_sys::Oid, display: String) -> ObjectRef {
    ObjectRef {
        classid: classid.to_u32(),
        objid: objid.to_u32(),
        display,
    }
}
