//! An UPDATE's old rows put back: each current row, found by the table's
//! primary key, gets its kept old version's columns again.

use super::ENTRY_COLUMN;
use crate::privileged;
use crate::recycle::rows::{own_query, Target};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Puts the old versions of entry `t.id`'s rows of one table back over
/// the current ones (as the table's owner, by `rows::restore`), matched by
/// primary key; the oldest kept version of a row wins (a row changed twice
/// in one statement). Refuses, changing nothing, when the table has no
/// primary key or a kept row's key is no longer there.
pub(in crate::recycle) fn restore_updated(t: &Target) -> i64 {
    let (id, table, copy, only_this) = (t.id, t.table, t.copy, t.only_this);
    let (key, settable): (Option<String>, Option<String>) = privileged::run(|| {
        Spi::connect(|c| {
            let r = c.select(
                "SELECT (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.n)
                           FROM pg_catalog.pg_index i,
                                pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, n),
                                pg_catalog.pg_attribute a
                          WHERE i.indrelid = $1 AND i.indisprimary AND a.attrelid = $1 AND a.attnum = k.attnum),
                        (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
                           FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                            AND a.attgenerated = '' AND a.attidentity <> 'a'
                            AND pg_catalog.quote_ident(a.attname) = ANY (pg_catalog.string_to_array($2, ', '))
                            AND a.attnum <> ALL (SELECT pg_catalog.unnest(i.indkey::pg_catalog.int2[])
                                                   FROM pg_catalog.pg_index i WHERE i.indrelid = $1 AND i.indisprimary))",
                None,
                &[t.relid.into(), t.columns.into()],
            )?;
            let r = r.first();
            Ok::<_, pgrx::spi::Error>((r.get::<String>(1)?, r.get::<String>(2)?))
        })
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"))
    });
    let Some(key) = key else {
        pgrx::error!(
            "recycle bin entry {id} cannot be restored into {table}: it has no primary key now, so its rows cannot be found again; the old rows stay kept (a DBA reads them in {copy}{only_this})"
        );
    };
    // Newest first: a later UPDATE's old versions of the same rows are
    // this one's new ones (in this store, or another one of the table's,
    // made after its columns changed).
    if let Some(later) = later_update(t, &key) {
        crate::pg::refuse(aas_policy::recycle::later_update_first(id, later, table));
    }
    let oldest =
        format!("(SELECT DISTINCT ON ({key}) * FROM {copy}{only_this} ORDER BY {key}, ctid)");
    let sql = match settable.clone() {
        Some(cols) => {
            let from: Vec<String> = cols.split(", ").map(|c| format!("k.{c}")).collect();
            format!(
                "UPDATE {table} AS t SET ({cols}) = ROW({}) FROM {oldest} AS k WHERE ({}) = ({})",
                from.join(", "),
                prefixed("t", &key),
                prefixed("k", &key)
            )
        }
        // Only key columns: nothing to put back but to check they are there.
        None => format!(
            "SELECT 1 FROM {table} AS t JOIN {oldest} AS k ON ({}) = ({})",
            prefixed("t", &key),
            prefixed("k", &key)
        ),
    };
    let (found, kept) = Spi::connect_mut(|c| {
        let found = own_query(&sql, t.relid, pg_sys::CmdType::CMD_UPDATE, |sql| {
            c.update(sql, None, &[])
        })?
        .len() as i64;
        let kept = c
            .select(&format!("SELECT count(*) FROM {oldest} AS k"), None, &[])?
            .first()
            .get_one::<i64>()?
            .unwrap_or(0);
        Ok::<_, pgrx::spi::Error>((found, kept))
    })
    .unwrap_or_else(|e| {
        pgrx::error!("recycle bin entry {id} cannot be restored into {table}: {e}")
    });
    if found < kept {
        pgrx::error!(
            "recycle bin entry {id} cannot be restored into {table}: {} of its {kept} rows are no longer there under their primary key ({key}): deleted, or their key changed since; nothing was changed and the old rows stay kept (restore a later entry of the same rows first, or a DBA reads them in {copy}{only_this})",
            kept - found
        );
    }
    // What is there now is what was kept (the table's triggers could have
    // written something else, and the kept rows would go for nothing).
    let compared = match &settable {
        Some(cols) => format!("{key}, {cols}"),
        None => key.clone(),
    };
    crate::recycle::rows::verify_restored(t, &compared, &oldest);
    found
}

/// The newest later UPDATE entry that kept one of this entry's rows (by
/// primary key), in any store of the table; a store whose key columns do
/// not compare counts as one.
fn later_update(t: &Target, key: &str) -> Option<i64> {
    let id = t.id;
    privileged::run(|| {
        let stores: Vec<String> = Spi::connect(|c| {
            let mut v = Vec::new();
            for r in c.select(
                "SELECT DISTINCT e OPERATOR(pg_catalog.->>) 'copy'
                   FROM ai_agent_safety.recycled_rows r, pg_catalog.jsonb_array_elements(r.tables) e
                  WHERE r.kind = 'update' AND r.id > $1
                    AND (e OPERATOR(pg_catalog.->>) 'relid')::int8 = $2",
                None,
                &[id.into(), (t.relid.to_u32() as i64).into()],
            )? {
                if let Some(s) = r.get::<String>(1)? {
                    v.push(s);
                }
            }
            Ok::<_, pgrx::spi::Error>(v)
        })
        .unwrap_or_default();
        stores
            .iter()
            .filter_map(|store| {
                // A name that is no trusted kept table holds no entry's
                // rows (and is never read as a superuser).
                crate::recycle::entries::kept_table(store)?;
                let sql = format!(
                    "SELECT max(k2.{ENTRY_COLUMN}) FROM {copy} k1 JOIN {store} k2 ON ({}) = ({})
                      WHERE k1.{ENTRY_COLUMN} = {id} AND k2.{ENTRY_COLUMN} > {id}
                        AND k2.{ENTRY_COLUMN} IN (SELECT id FROM ai_agent_safety.recycled_rows WHERE kind = 'update')",
                    prefixed("k1", key),
                    prefixed("k2", key),
                    copy = t.copy
                );
                let found = crate::pg::in_subtransaction("comparing kept UPDATEs", || {
                    Spi::get_one::<i64>(&sql).ok().flatten()
                });
                match found {
                    Some(later) => later,
                    // Keys that do not compare: the later entry counts.
                    None => Spi::get_one_with_args::<i64>(
                        "SELECT max(r.id) FROM ai_agent_safety.recycled_rows r, pg_catalog.jsonb_array_elements(r.tables) e
                          WHERE r.kind = 'update' AND r.id > $1 AND e OPERATOR(pg_catalog.->>) 'copy' = $2",
                        &[id.into(), store.as_str().into()],
                    )
                    .ok()
                    .flatten(),
                }
            })
            .max()
    })
}

/// `a, b` as `t.a, t.b`.
fn prefixed(alias: &str, cols: &str) -> String {
    cols.split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
