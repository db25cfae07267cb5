//! What Citus's catalog says, for the rare statement that asks (a heap
//! scan each time; nothing when Citus is not installed in the database).

use pgrx::pg_sys;

/// Is the function or procedure `funcid` one of Citus's distributed objects
/// (`pg_catalog.pg_dist_object`), whose calls Citus may delegate to
/// another node, where they run as the current role?
///
/// # Safety
/// Inside a transaction.
pub unsafe fn distributed_function(funcid: pg_sys::Oid) -> bool {
    // SAFETY: per this function's contract; a catalog lookup by name.
    let catalog = unsafe {
        pg_sys::get_relname_relid(
            c"pg_dist_object".as_ptr(),
            pg_sys::PG_CATALOG_NAMESPACE.into(),
        )
    };
    if catalog == pg_sys::InvalidOid {
        return false;
    }
    let mut found = false;
    let mut columns: Option<[i32; 2]> = None;
    // SAFETY: per this function's contract; each tuple is read during the
    // call, with the catalog's own descriptor.
    unsafe {
        super::scan_catalog(catalog, |tup, desc| {
            let [classid, objid] = *columns.get_or_insert_with(|| {
                ["classid", "objid"].map(|name| super::column_number(desc, name))
            });
            let oid = |attnum| super::column_value(tup, desc, attnum).map(|v| v as u32);
            found |= oid(classid) == Some(pg_sys::ProcedureRelationId.to_u32())
                && oid(objid) == Some(funcid.to_u32());
        })
    };
    found
}
