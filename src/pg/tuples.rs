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

/// The 1-based number of the column `name` (0 when none is: callers then
/// read nothing).
///
/// # Safety
/// `desc` is a valid tuple descriptor.
pub unsafe fn column_number(desc: pg_sys::TupleDesc, name: &str) -> i32 {
    // SAFETY: per this function's contract; attribute names are C strings.
    unsafe {
        (0..(*desc).natts as usize)
            .find(|i| {
                std::ffi::CStr::from_ptr((*attr(desc, *i)).attname.data.as_ptr()).to_bytes()
                    == name.as_bytes()
            })
            .map_or(0, |i| i as i32 + 1)
    }
}

/// Column `attnum` of a heap tuple as a Datum's bits, None when NULL (or
/// `attnum` is 0).
///
/// # Safety
/// `tup` is a valid heap tuple of descriptor `desc`.
pub unsafe fn column_value(
    tup: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attnum: i32,
) -> Option<usize> {
    if attnum == 0 {
        return None;
    }
    let mut null = false;
    // SAFETY: per this function's contract.
    let d = unsafe { pg_sys::heap_getattr(tup, attnum, desc, &mut null) };
    (!null).then_some(d.value())
}
