//! Where old rows are kept: one store per table and column set in schema
//! `ai_agent_safety_recycle`, shared by every entry that keeps rows of
//! that table (no table per statement), each row numbered by its entry.

use super::{keeping, Copy, Keeping, Kind};
use crate::recycle::entries::{ensure_schema, SCHEMA};
use crate::recycle::file;
use crate::{pg, privileged};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Copies the row in `slot` (of `rel`) into its table's store, under this
/// statement's entry.
///
/// # Safety
/// `slot` holds a row of `rel`, which is open.
pub(super) unsafe fn keep(rel: pg_sys::Relation, slot: *mut pg_sys::TupleTableSlot, kind: Kind) {
    // SAFETY: per this function's contract.
    let relid = unsafe { (*rel).rd_id };
    let Some(k) = keeping().as_mut() else {
        // A query armed without an owner cannot be: refuse rather than
        // lose the row.
        pgrx::error!("ai_agent_safety: a row of {} could not be kept in the recycle bin; nothing was deleted", pg::relation_display(relid));
    };
    let id = entry_id(k, kind);
    // The latest store this statement used for the table (a function it
    // ran may have changed the table's columns since: then another).
    let mut at = k
        .copies
        .iter()
        .rposition(|c| c.relid == relid && c.kind == kind);
    // SAFETY: slot holds a row of rel; a store's descriptor is read open.
    if at.is_none_or(|i| !unsafe { fits(&k.copies[i], (*slot).tts_tupleDescriptor) }) {
        let c = store_of(relid, kind);
        // SAFETY: as above.
        if !unsafe { fits(&c, (*slot).tts_tupleDescriptor) } {
            pgrx::error!(
                "ai_agent_safety: the recycle bin's store {} does not fit the columns of {} (changed while the statement ran); nothing was changed",
                c.name,
                pg::relation_display(relid)
            );
        }
        k.copies.push(c);
        at = Some(k.copies.len() - 1);
    }
    let c = &mut k.copies[at.unwrap_or_default()];
    // The store fits the row (checked above); it and its index are opened
    // and closed here, under the statement's lock; what is formed lives in
    // the per-row memory.
    // SAFETY: slot holds a row of rel.
    let len = unsafe {
        let src = (*slot).tts_tupleDescriptor;
        pg_sys::slot_getsomeattrs_int(slot, (*src).natts);
        let lock = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        let store = pg_sys::table_open(c.store, lock);
        let n = c.attnums.len() + 1;
        let mut values = vec![pg_sys::Datum::from(0usize); n];
        let mut nulls = vec![true; n];
        values[0] = pg_sys::Datum::from(id as i64);
        nulls[0] = false;
        // What the rows weigh for recycle_max_bytes: the row, and each value
        // stored out of line at its full size.
        let mut outside = 0i64;
        for (i, a) in c.attnums.iter().enumerate() {
            let (v, null) = (
                *(*slot).tts_values.add((*a - 1) as usize),
                *(*slot).tts_isnull.add((*a - 1) as usize),
            );
            values[i + 1] = v;
            nulls[i + 1] = null;
            if !null && (*pg::attr(src, (*a - 1) as usize)).attlen == -1 && is_external(v) {
                outside += pg_sys::toast_raw_datum_size(v) as i64;
            }
        }
        let tuple =
            pg_sys::heap_form_tuple((*store).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
        let len = (*tuple).t_len as i64 + outside;
        pg_sys::simple_heap_insert(store, tuple);
        let index = pg_sys::index_open(c.index, lock);
        let info = pg_sys::BuildIndexInfo(index);
        pg_sys::index_insert(
            index,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
            &mut (*tuple).t_self,
            store,
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO,
            false,
            info,
        );
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(store, pg_sys::NoLock as pg_sys::LOCKMODE);
        len
    };
    // SAFETY: reads the transaction state.
    let sub = unsafe { pg_sys::GetCurrentSubTransactionId() };
    match c.kept.last_mut() {
        Some((s, n, b)) if *s == sub => {
            *n += 1;
            *b += len;
        }
        _ => c.kept.push((sub, 1, len)),
    }
}

/// Is a varlena datum a pointer to a value stored out of line (on disk or
/// in memory)? Its first byte says so (VARATT_IS_EXTERNAL: 0x01 on
/// little-endian machines, 0x80 on big-endian ones).
///
/// # Safety
/// `v` is a non-NULL varlena datum.
unsafe fn is_external(v: pg_sys::Datum) -> bool {
    // SAFETY: per this function's contract.
    let first = unsafe { *(v.cast_mut_ptr::<u8>()) };
    if cfg!(target_endian = "little") {
        first == 0x01
    } else {
        first == 0x80
    }
}

/// Does the store take the table's rows as they are now: one column more
/// (the entry, first), then each kept column with the same type, typmod
/// and collation as the table's column it copies? Checked for every row:
/// a row formed with another layout would be garbage (or worse).
///
/// # Safety
/// `src` is the descriptor of the table's rows; the store exists.
unsafe fn fits(c: &Copy, src: pg_sys::TupleDesc) -> bool {
    // SAFETY: per this function's contract; the relation is opened and
    // closed here.
    unsafe {
        let store = pg_sys::table_open(c.store, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let dst = (*store).rd_att;
        let mut ok = (*dst).natts as usize == c.attnums.len() + 1;
        for (i, a) in c.attnums.iter().enumerate() {
            if !ok {
                break;
            }
            let a = *a as i32;
            if a < 1 || a > (*src).natts {
                ok = false;
                break;
            }
            let (from, to) = (&*pg::attr(src, (a - 1) as usize), &*pg::attr(dst, i + 1));
            ok = !from.attisdropped
                && !to.attisdropped
                && from.atttypid == to.atttypid
                && from.atttypmod == to.atttypmod
                && from.attcollation == to.attcollation;
        }
        pg_sys::table_close(store, pg_sys::NoLock as pg_sys::LOCKMODE);
        ok
    }
}

/// This statement's entry number for `kind`, taken on its first kept row.
fn entry_id(k: &mut Keeping, kind: Kind) -> u32 {
    if let Some(id) = k.ids[kind as usize] {
        return id;
    }
    let id = file::next_rows_id().unwrap_or_else(|e| {
        pgrx::error!(
            "ai_agent_safety: could not number a recycle bin entry ({e}); nothing was changed"
        )
    });
    k.ids[kind as usize] = Some(id);
    id
}

/// The column every store has first: the entry its row belongs to.
pub const ENTRY_COLUMN: &str = "ai_agent_safety_entry";

/// A table's store: `ai_agent_safety_recycle.s<table oid>_<columns>`, a
/// heap of the entry number and the table's columns, indexed by entry,
/// the bootstrap superuser's. One per table and column set: made on the
/// first DELETE that keeps rows of the table as it is now, then shared
/// by every later one (no table per statement).
fn store_of(relid: pg_sys::Oid, kind: Kind) -> Copy {
    let table = pg::relation_display(relid);
    privileged::run(|| {
        let (shape, attnums): (String, Vec<i16>) = Spi::connect(|c| {
            let r = c.select(
                "SELECT pg_catalog.left(pg_catalog.md5(pg_catalog.string_agg(
                            attname || ':' || atttypid || ':' || atttypmod || ':' || attcollation, ',' ORDER BY attnum)), 12),
                        pg_catalog.array_agg(attnum ORDER BY attnum)
                   FROM pg_catalog.pg_attribute
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                None,
                &[relid.into()],
            )?;
            let r = r.first();
            Ok::<_, pgrx::spi::Error>((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<Vec<i16>>(2)?.unwrap_or_default(),
            ))
        })
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
        let base = format!("s{}_{shape}", relid.to_u32());
        // An existing store is used only when its columns are exactly the
        // table's (a name can be made to clash); a new one is named for
        // the transaction that makes it, so that two agents' first DELETEs
        // of one table never wait for each other's name.
        // The schema is checked first (the bootstrap superuser's, granting
        // nothing), and a store is one only when that superuser owns it.
        let bin = ensure_schema(kind.name());
        let found: Vec<(pg_sys::Oid, String)> = Spi::connect(|c| {
            let mut v = Vec::new();
            for r in c.select(
                "SELECT c.oid, c.relname::text FROM pg_catalog.pg_class c
                  WHERE c.relnamespace = $1 AND c.relkind = 'r' AND c.relowner = 10
                    AND c.relname LIKE $2
                    AND NOT c.relhastriggers AND NOT c.relhasrules AND NOT c.relrowsecurity
                    AND NOT EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee <> c.relowner)
                  ORDER BY c.oid",
                None,
                // A prefix LIKE (name is C-collated): pg_class's name index.
                &[
                    bin.into(),
                    format!("{}\\_%", base.replace('_', "\\_")).into(),
                ],
            )? {
                if let (Some(o), Some(n)) = (r.get::<pg_sys::Oid>(1)?, r.get::<String>(2)?) {
                    v.push((o, n));
                }
            }
            Ok::<_, pgrx::spi::Error>(v)
        })
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
        let mut made_in = None;
        let (name, store) = match found.into_iter().find(|(o, _)| same_columns(*o, relid)) {
            Some((store, name)) => (name, store),
            None => {
                // SAFETY: reads (or assigns: the DELETE writes anyway) the
                // transaction's id, and its subtransaction.
                let (xid, sub) = unsafe {
                    (
                        pg_sys::GetTopTransactionId().into_inner(),
                        pg_sys::GetCurrentSubTransactionId(),
                    )
                };
                made_in = Some(sub);
                let name = format!("{base}_{xid}_{sub}");
                let qualified = format!("{SCHEMA}.{name}");
                Spi::run(&format!(
                    "CREATE TABLE {qualified} USING heap AS SELECT NULL::pg_catalog.int8 AS {ENTRY_COLUMN}, * FROM ONLY {table} WITH NO DATA;
                     CREATE INDEX {name}_entry ON {qualified} USING btree ({ENTRY_COLUMN})"
                ))
                .unwrap_or_else(|e| {
                    pgrx::error!("ai_agent_safety: keeping the old rows of {table} failed: {e}; nothing was changed")
                });
                let store = rel_in_bin(&name).unwrap_or_else(|| {
                    pgrx::error!("ai_agent_safety: the recycle bin's store {qualified} is missing")
                });
                super::super::rows::never_analyzed(&qualified);
                crate::recycle::entries::revoke_others(&qualified);
                (name, store)
            }
        };
        let qualified = format!("{SCHEMA}.{name}");
        let index = entry_index(store).unwrap_or_else(|| {
            pgrx::error!("ai_agent_safety: the recycle bin's store {qualified} has lost its index; nothing was changed")
        });
        Copy {
            kind,
            relid,
            store,
            index,
            name: qualified,
            table: table.clone(),
            attnums,
            kept: Vec::new(),
            made_in,
        }
    })
}

/// A store's index of entries: a plain btree on its first column (the
/// entry), whatever its name; nothing else is written into as one.
fn entry_index(store: pg_sys::Oid) -> Option<pg_sys::Oid> {
    Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT i.indexrelid FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = $1 AND i.indnatts = 1 AND i.indkey[0] = 1
            AND i.indexprs IS NULL AND i.indpred IS NULL AND c.relam = 403
          ORDER BY i.indexrelid LIMIT 1",
        &[store.into()],
    )
    .ok()
    .flatten()
}

/// Are a store's columns (after the entry) exactly the table's live ones,
/// in order, by name, type, typmod and collation?
fn same_columns(store: pg_sys::Oid, relid: pg_sys::Oid) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT (SELECT pg_catalog.array_agg(ARRAY[attname::text, atttypid::text, atttypmod::text, attcollation::text] ORDER BY attnum)
                   FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 1 AND NOT attisdropped)
                IS NOT DISTINCT FROM
                (SELECT pg_catalog.array_agg(ARRAY[attname::text, atttypid::text, atttypmod::text, attcollation::text] ORDER BY attnum)
                   FROM pg_catalog.pg_attribute WHERE attrelid = $2 AND attnum > 0 AND NOT attisdropped)",
        &[store.into(), relid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// A relation of the recycle schema, by name.
pub(super) fn rel_in_bin(name: &str) -> Option<pg_sys::Oid> {
    let schema = crate::recycle::entries::bin_schema()?;
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a catalog lookup by name.
    let oid = unsafe { pg_sys::get_relname_relid(c.as_ptr(), schema) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}
