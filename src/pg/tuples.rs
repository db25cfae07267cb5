//! Tuple descriptors, where the server's layout differs by major.

use pgrx::pg_sys;

/// A tuple descriptor's attribute `i` (0-based). Where the server's API
/// differs: PostgreSQL 18 keeps the attributes after its compact ones.
///
/// # Safety
/// `desc` is a valid descriptor with more than `i` attributes.
pub unsafe fn attr(desc: pg_sys::TupleDesc, i: usize) -> *const pg_sys::FormData_pg_attribute {
    // SAFETY: per this function's contract.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        {
            (*desc).attrs.as_ptr().add(i)
        }
        #[cfg(feature = "pg18")]
        {
            ((*desc).compact_attrs.as_ptr().add((*desc).natts as usize)
                as *const pg_sys::FormData_pg_attribute)
                .add(i)
        }
    }
}
