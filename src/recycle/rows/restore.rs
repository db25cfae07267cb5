//! Kept rows put back: a TRUNCATE's or DELETE's rows inserted again, an
//! UPDATE's old versions over the current rows (`old_rows::restore`), each
//! as the table's owner in a restricted context (`as_owner`).

use super::drop_copy;
use crate::recycle::entries::{forget, SCHEMA};
use crate::{pg, privileged};
use aas_policy::recycle as policy;
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::Value;

/// One table's kept rows, ready to be put back (the owner may read the
/// copy, in this transaction only).
pub(in crate::recycle) struct Target<'a> {
    pub id: i64,
    pub relid: pg_sys::Oid,
    pub table: &'a str,
    pub copy: &'a str,
    /// ` WHERE <entry column> = <id>` for a store, else empty.
    pub only_this: &'a str,
    /// The kept columns the table has, but generated ones (quoted, `, `).
    pub columns: &'a str,
    /// The rows the entry kept of this table.
    pub rows: i64,
}

/// The query a restore runs as the table's owner, while it runs.
struct OwnQuery {
    text: String,
    table: pg_sys::Oid,
    command: pg_sys::CmdType::Type,
}

// SAFETY: a backend is single-threaded: set while a restore's own query
// runs (cleared on abort too).
static mut OWN_QUERY: Option<OwnQuery> = None;

/// Runs a restore's own query (`sql`, through SPI in `f`), an INSERT or
/// UPDATE of `table`, as the table's owner: that query is the restore's,
/// not the owner's (an agent's table is not judged nor kept again for
/// it), while what it sets off (the table's triggers: the owner's code)
/// is judged as ever.
pub(in crate::recycle) fn own_query<R>(
    sql: &str,
    table: pg_sys::Oid,
    command: pg_sys::CmdType::Type,
    f: impl FnOnce(&str) -> R,
) -> R {
    // SAFETY: see OWN_QUERY.
    unsafe {
        *std::ptr::addr_of_mut!(OWN_QUERY) = Some(OwnQuery {
            text: sql.to_string(),
            table,
            command,
        })
    };
    let r = f(sql);
    forget_own_query();
    r
}

pub(in crate::recycle) fn forget_own_query() {
    // SAFETY: see OWN_QUERY.
    unsafe { *std::ptr::addr_of_mut!(OWN_QUERY) = None };
}

/// Is this query a restore's own (see `own_query`)? Its text, and also
/// what it is: the statement's own query (a rule's added actions share
/// its text but do not set the command tag), of the restore's command
/// (an INSTEAD rule's would not be), writing the restored table alone.
///
/// # Safety
/// `qd` is a query being started, with its plan.
pub unsafe fn is_own_query(qd: *mut pg_sys::QueryDesc) -> bool {
    // SAFETY: see OWN_QUERY; qd per this function's contract.
    unsafe {
        let Some(q) = &*std::ptr::addr_of!(OWN_QUERY) else {
            return false;
        };
        let (text, ps) = ((*qd).sourceText, &*(*qd).plannedstmt);
        !text.is_null()
            && std::ffi::CStr::from_ptr(text).to_bytes() == q.text.as_bytes()
            && ps.canSetTag
            && ps.commandType == q.command
            && !ps.hasModifyingCTE
            && crate::classify::plan::written_relations(ps) == [q.table]
    }
}

/// A TRUNCATE's or DELETE's rows, inserted back (see `restore`).
pub(in crate::recycle) fn insert_rows(t: &Target) -> i64 {
    let (table, columns, copy, only_this) = (t.table, t.columns, t.copy, t.only_this);
    let sql = format!(
        "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {copy}{only_this}"
    );
    let n = own_query(&sql, t.relid, pg_sys::CmdType::CMD_INSERT, |sql| {
        Spi::connect_mut(|c| c.update(sql, None, &[]).map(|r| r.len() as i64))
    })
    .unwrap_or_else(|e| {
        pgrx::error!(
            "recycle bin entry {} cannot be restored into {table}: {e}",
            t.id
        )
    });
    // A trigger of the table that skipped rows: they would be lost.
    if n != t.rows {
        pgrx::error!(
            "recycle bin entry {} cannot be restored into {table}: {n} of its {} rows went in (the table's triggers decide); nothing was changed and the rows stay kept",
            t.id,
            t.rows
        );
    }
    verify_restored(t, columns, &format!("(SELECT * FROM {copy}{only_this})"));
    n
}

/// After a restore's statement (and the AFTER triggers it fired): every
/// kept row (its `columns`, read from `kept`, a query of the copy) is in
/// the table as it was kept. The table's triggers could have written
/// something else, or taken rows out again; then the kept rows would go
/// for nothing, so the restore is refused. Compared as text made by the
/// types' output functions (`format('%L', ..)`: a `::text` cast would run
/// a cast an agent made for its own type, as the superuser), never by an
/// agent's operator, byte for byte (an agent's collation could call two
/// texts equal), in the table itself (not rows a trigger moved elsewhere).
pub(in crate::recycle) fn verify_restored(t: &Target, columns: &str, kept: &str) {
    // The check reads the table by name, as a superuser: the name must
    // still be this table's, a plain one with no rules. The table's own
    // code has just run (its triggers) and could have renamed its schema
    // and put something else, a view, under the name.
    let same = pg::relation_display(t.relid) == t.table
        && privileged::run(|| {
            Spi::get_one_with_args::<bool>(
                "SELECT c.relkind IN ('r', 'p')
                        AND NOT EXISTS (SELECT FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid)
                   FROM pg_catalog.pg_class c WHERE c.oid = $1 AND pg_catalog.to_regclass($2) = c.oid",
                &[t.relid.into(), t.table.into()],
            )
            .ok()
            .flatten()
            .unwrap_or(false)
        });
    if !same {
        pgrx::error!(
            "recycle bin entry {} cannot be restored into {}: the table was renamed or replaced while the restore ran (its triggers); nothing was changed and the rows stay kept",
            t.id,
            t.table
        );
    }
    let as_text = |alias: &str| {
        columns
            .split(", ")
            .map(|c| format!("pg_catalog.format('%L', {alias}.{c}) COLLATE pg_catalog.\"C\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!(
        "SELECT count(*) FROM (SELECT {} FROM {kept} AS k EXCEPT ALL SELECT {} FROM ONLY {} AS t) AS missing",
        as_text("k"),
        as_text("t"),
        t.table
    );
    let missing = privileged::run(|| Spi::get_one::<i64>(&sql))
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"))
        .unwrap_or(0);
    if missing > 0 {
        pgrx::error!(
            "recycle bin entry {} cannot be restored into {}: {missing} of its rows are not in the table as they were kept after the restore (the table's triggers changed or removed them); nothing was changed and the rows stay kept (a DBA disables those triggers for the restore)",
            t.id,
            t.table
        );
    }
}

/// Puts the kept rows back, table by table in the order they were kept
/// (for a TRUNCATE, referenced tables before the ones referencing them;
/// for a DELETE, as it deleted them: a cascade's parents first), each as
/// the table's owner, whose constraints and triggers judge them; then the
/// kept rows and the entry go. One transaction: all or nothing.
pub fn restore(id: i64, kind: &str, object: &str, tables: &[Value], dropped_by: &str) -> String {
    let put = if kind == "update" {
        crate::recycle::old_rows::restore_updated
    } else {
        insert_rows
    };
    let verb = kind.to_uppercase();
    let mut restored = 0i64;
    for t in tables {
        let (Some(relid), Some(copy)) = (t["relid"].as_u64(), t["copy"].as_str()) else {
            continue;
        };
        // A DELETE's rows are in their table's store, beside other
        // entries': this entry's are the ones it numbers.
        let only_this = match t["entry_column"].as_str() {
            Some(col) => format!(" WHERE {} = {id}", pg::quote_ident(col)),
            None => String::new(),
        };
        if crate::recycle::entries::kept_table(copy).is_none() {
            pgrx::error!(
                "recycle bin entry {id} cannot be restored: {copy} is no longer a table of the recycle bin that only the bootstrap superuser owns and nothing else acts on; nothing was changed (a DBA reads it, and purges the entry with SELECT ai_agent_safety.purge_dropped({id});)"
            );
        }
        let relid = pg_sys::Oid::from(relid as u32);
        // SAFETY: a catalog lookup.
        if unsafe { pg_sys::get_rel_name(relid) }.is_null() {
            pgrx::error!(
                "recycle bin entry {id} cannot be restored: table {} was dropped since",
                t["table"].as_str().unwrap_or("?")
            );
        }
        // A rule would turn the restore's INSERT or UPDATE into something
        // else, run unseen as the restore's own.
        // (relhasrules stays set after DROP RULE: the rules themselves.)
        let has_rules = privileged::run(|| {
            Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_rewrite WHERE ev_class = $1)",
                &[relid.into()],
            )
            .ok()
            .flatten()
            .unwrap_or(true)
        });
        if has_rules {
            pgrx::error!(
                "recycle bin entry {id} cannot be restored into {}: the table has rules, which would rewrite the restore; nothing was changed and the rows stay kept (a DBA drops the rules first: SELECT rulename FROM pg_catalog.pg_rules WHERE schemaname || '.' || tablename = '{}';)",
                pg::relation_display(relid),
                pg::relation_display(relid)
            );
        }
        let table = pg::relation_display(relid);
        let owner = privileged::run(|| {
            Spi::get_one_with_args::<pg_sys::Oid>(
                "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1",
                &[relid.into()],
            )
            .ok()
            .flatten()
        })
        .unwrap_or(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID));
        // The kept columns, by name, into the table as it is now (a column
        // added since takes its default); one of them gone or renamed since
        // refuses the restore, and the rows stay kept.
        let (columns, missing): (String, Option<String>) = privileged::run(|| {
            Spi::connect(|c| {
                let r = c.select(
                    &format!(
                        "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k.attname), ', ' ORDER BY k.attnum)
                                  FILTER (WHERE t.attgenerated = ''),
                                pg_catalog.string_agg(pg_catalog.quote_ident(k.attname), ', ' ORDER BY k.attnum)
                                  FILTER (WHERE t.attname IS NULL)
                           FROM pg_catalog.pg_attribute k
                           LEFT JOIN pg_catalog.pg_attribute t
                             ON t.attrelid = $1 AND t.attname = k.attname AND t.attnum > 0 AND NOT t.attisdropped
                          WHERE k.attrelid = '{copy}'::pg_catalog.regclass AND k.attnum > 0 AND NOT k.attisdropped
                            AND k.attname <> '{}'",
                        crate::recycle::old_rows::ENTRY_COLUMN
                    ),
                    None,
                    &[relid.into()],
                )?;
                let row = r.first();
                Ok::<_, pgrx::spi::Error>((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?,
                ))
            })
            .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"))
        });
        if let Some(m) = missing {
            pgrx::error!(
                "recycle bin entry {id} cannot be restored into {table}: its column(s) {m} are gone or renamed since the {verb}; the rows stay kept (a DBA reads them in {copy}, or restores after putting the columns back)"
            );
        }
        let owner_name = privileged::run(|| {
            Spi::get_one_with_args::<String>(
                "SELECT pg_catalog.pg_get_userbyid($1)::text",
                &[owner.into()],
            )
            .ok()
            .flatten()
        })
        .unwrap_or_default();
        // The owner reads the copy for this transaction only: the copy is
        // dropped before it commits. A superuser owner needs no grant (and
        // revoking one from the bootstrap superuser would take away its own).
        // SAFETY: a catalog lookup.
        let grant = !unsafe { pg_sys::superuser_arg(owner) };
        if grant {
            privileged::run(|| {
                Spi::run(&format!(
                    "GRANT USAGE ON SCHEMA {SCHEMA} TO {o}; GRANT SELECT ON {copy} TO {o}",
                    o = pg::quote_ident(&owner_name)
                ))
                .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"))
            });
        }
        let n = as_owner(owner, || {
            put(&Target {
                id,
                relid,
                table: &table,
                copy,
                only_this: &only_this,
                columns: &columns,
                rows: t["rows"].as_i64().unwrap_or(0),
            })
        });
        restored += n;
        if grant {
            privileged::run(|| {
                Spi::run(&format!(
                    "REVOKE SELECT ON {copy} FROM {o}; REVOKE USAGE ON SCHEMA {SCHEMA} FROM {o}",
                    o = pg::quote_ident(&owner_name)
                ))
                .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"))
            });
        }
        drop_copy(t, id);
    }
    forget(id);
    format!(
        "{} restored the {} of {object} (recycle bin entry {id}, {} by {dropped_by}): {restored} rows back",
        pg::session_user_name(),
        if kind == "update" { "old rows" } else { "rows" },
        policy::rows_verb_past(kind)
    )
}

/// Runs `f` as `owner`, in a restricted security context and a GUC nest
/// level of its own with search_path pinned (as PostgreSQL runs
/// maintenance as a table's owner): the table's code cannot change the
/// session, nor leave a setting behind for the restorer's later queries.
pub(in crate::recycle) fn as_owner<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut uid = pg_sys::InvalidOid;
    let mut sec = 0;
    // SAFETY: switches the user the way SECURITY DEFINER functions do and
    // restores it on return (PostgreSQL's abort processing on error).
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut uid, &mut sec);
        pg_sys::SetUserIdAndSecContext(
            owner,
            sec | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION)
                as i32,
        );
    }
    // SAFETY: a GUC nest level, undone below (and by abort on error).
    let nest = unsafe { pg_sys::NewGUCNestLevel() };
    // SAFETY: sets search_path at that level, as SET LOCAL would.
    unsafe {
        crate::pg::set_setting(
            c"search_path",
            c"pg_catalog, pg_temp",
            pg_sys::GucAction::GUC_ACTION_SAVE,
        );
    }
    let r = f();
    // SAFETY: as above: every setting made inside goes with the level (as
    // PostgreSQL ends maintenance run as a table's owner: even a plain SET
    // made there is undone).
    unsafe {
        pg_sys::AtEOXact_GUC(false, nest);
        pg_sys::SetUserIdAndSecContext(uid, sec);
    }
    r
}
