//! Tables and their partitions or inheritance children.

use pgrx::pg_sys;

extern "C-unwind" {
    // catalog/pg_inherits.h (not in pgrx's bindings); the same in 15 to 18.
    fn find_all_inheritors(
        parent: pg_sys::Oid,
        lockmode: pg_sys::LOCKMODE,
        numparents: *mut *mut pg_sys::List,
    ) -> *mut pg_sys::List;
}

/// The table and every table below it (partitions, inheritance children,
/// theirs in turn), taking no lock.
///
/// # Safety
/// Inside a transaction.
pub unsafe fn family(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    // SAFETY: per this function's contract.
    unsafe { family_locked(relid, pg_sys::NoLock as pg_sys::LOCKMODE) }
}

/// The same, each table below it locked in `lock` (as the statement that
/// will write them locks them); raises as PostgreSQL does when a lock
/// cannot be had.
///
/// # Safety
/// Inside a transaction.
pub unsafe fn family_locked(relid: pg_sys::Oid, lock: pg_sys::LOCKMODE) -> Vec<pg_sys::Oid> {
    // SAFETY: per this function's contract; a catalog lookup that may raise
    // (through the FFI guard), an oid list.
    unsafe {
        super::oid_list(pgrx::pg_sys::ffi::pg_guard_ffi_boundary(|| {
            find_all_inheritors(relid, lock, std::ptr::null_mut())
        }))
    }
}
