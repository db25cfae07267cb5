//! Foreign keys: what a table references, and what references it in a way
//! that changes rows of its own.

use super::list_ptrs;
use pgrx::pg_sys;

/// The tables a table's foreign keys reference (from the relcache).
///
/// # Safety
/// Inside a transaction.
pub unsafe fn foreign_key_targets(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    // SAFETY: the relation is opened and closed here; its FK list belongs
    // to the relcache and is only read.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return Vec::new();
        }
        let targets = list_ptrs(pg_sys::RelationGetFKeyList(rel))
            .into_iter()
            .map(|fk| (*(fk as *const pg_sys::ForeignKeyCacheInfo)).confrelid)
            .collect();
        pg_sys::RelationClose(rel);
        targets
    }
}

/// The tables whose foreign keys change their own rows when rows of
/// the `targets` are deleted (`delete`) or updated (`update`): ON DELETE or ON
/// UPDATE CASCADE, SET NULL or SET DEFAULT. A heap scan of pg_constraint
/// (which has no index on the referenced table), for the rare statement
/// that asks.
///
/// # Safety
/// Inside a transaction.
pub unsafe fn cascading_referencers(
    targets: &[pg_sys::Oid],
    delete: bool,
    update: bool,
) -> Vec<pg_sys::Oid> {
    let mut out = Vec::new();
    let mut columns: Option<[i32; 5]> = None;
    // SAFETY: per this function's contract; each tuple is read during the
    // call, with the catalog's own descriptor.
    unsafe {
        super::scan_catalog(CONSTRAINT_RELATION_ID.into(), |tup, desc| {
            let [contype, conrelid, confrelid, confupdtype, confdeltype] = *columns
                .get_or_insert_with(|| {
                    [
                        "contype",
                        "conrelid",
                        "confrelid",
                        "confupdtype",
                        "confdeltype",
                    ]
                    .map(|name| super::column_number(desc, name))
                });
            let get = |attnum: i32| super::column_value(tup, desc, attnum);
            let byte = |attnum| get(attnum).map(|v| v as u8).unwrap_or(0);
            let oid = |attnum| get(attnum).map(|v| v as u32).unwrap_or(0);
            if byte(contype) == b'f'
                && targets.contains(&pg_sys::Oid::from(oid(confrelid)))
                && ((delete && action_writes(byte(confdeltype)))
                    || (update && action_writes(byte(confupdtype))))
            {
                let r = pg_sys::Oid::from(oid(conrelid));
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        })
    };
    out
}

/// pg_constraint (catalog/pg_constraint.h; the same in 15 to 18, whose
/// bindings pgrx leaves out).
const CONSTRAINT_RELATION_ID: u32 = 2606;

/// Does a foreign key's action (`confdeltype`, `confupdtype`, or a
/// Constraint's `fk_del_action`) change the referencing rows: CASCADE
/// ('c'), SET NULL ('n') or SET DEFAULT ('d'), rather than NO ACTION or
/// RESTRICT?
pub fn action_writes(action: u8) -> bool {
    matches!(action, b'c' | b'n' | b'd')
}
