//! Rows an agent's TRUNCATE removes, kept: before the TRUNCATE runs, every
//! table it will empty (the named ones, their partitions and inheritance
//! children unless ONLY, and with CASCADE the tables that reference them)
//! is locked as TRUNCATE locks it, and its rows are copied into a table of
//! schema `ai_agent_safety_recycle` (the bootstrap superuser's; no one else
//! may use it), all in the agent's transaction: if the TRUNCATE rolls back,
//! nothing is kept and nothing is lost. The entry is a row of
//! `ai_agent_safety.recycled_rows` in this database. A restore inserts the
//! rows back (as the table's owner, so its triggers and constraints judge
//! them), a purge or the expiry drops the copies.

mod restore;

pub(in crate::recycle) use restore::{
    as_owner, forget_own_query, own_query, verify_restored, Target,
};
pub use restore::{is_own_query, restore};

use super::entries::{
    ensure_schema, forget, has_entries_table, kept_table, record_entry, NewEntry, SCHEMA,
};
use super::file;
use crate::{audit, pg, privileged};
use aas_policy::recycle as policy;
use aas_policy::{EventKind, Source, Verdict};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{json, Value};

/// The tables a TRUNCATE will empty, locked (AccessExclusiveLock) as it
/// locks them, in the order it names them: the named tables, their
/// children (unless ONLY), then (CASCADE) the tables referencing them.
///
/// # Safety
/// `stmt` is a valid TruncateStmt; inside a transaction.
unsafe fn truncated(stmt: *mut pg_sys::TruncateStmt) -> (Vec<pg_sys::Oid>, Vec<Named>) {
    let lock = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
    let mut rels: Vec<pg_sys::Oid> = Vec::new();
    let mut named = Vec::new();
    // SAFETY: per this function's contract; lookups raise PostgreSQL's own
    // errors for a missing table.
    unsafe {
        for rv in pg::list_ptrs((*stmt).relations) {
            let rv = rv as *mut pg_sys::RangeVar;
            let relid = pg_sys::RangeVarGetRelidExtended(
                rv,
                lock,
                0,
                Some(may_truncate),
                std::ptr::null_mut(),
            );
            if !rels.contains(&relid) {
                rels.push(relid);
            }
            qualify(rv, relid);
            named.push(Named { rv, relid });
            if (*rv).inh {
                for child in pg::family_locked(relid, lock) {
                    // Another session's temporary child: PostgreSQL's
                    // TRUNCATE leaves it alone (no backend can read
                    // another's temporary tables), and so does the copy.
                    if !rels.contains(&child) && !other_sessions_temp(child) {
                        rels.push(child);
                    }
                }
            }
        }
        if (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE {
            loop {
                let mut list: *mut pg_sys::List = std::ptr::null_mut();
                for r in &rels {
                    list = pg_sys::lappend_oid(list, *r);
                }
                let more: Vec<pg_sys::Oid> = pg::oid_list(pg_sys::heap_truncate_find_FKs(list))
                    .into_iter()
                    .filter(|r| !rels.contains(r))
                    .collect();
                if more.is_empty() {
                    break;
                }
                for r in more {
                    pg_sys::LockRelationOid(r, lock);
                    // As PostgreSQL checks each table CASCADE adds, before
                    // anything of it is copied.
                    let name = pg_sys::get_rel_name(r);
                    if !name.is_null() {
                        check_truncate(r, name);
                    }
                    rels.push(r);
                }
            }
        }
    }
    (rels, named)
}

/// Is this relation a temporary table of another session?
fn other_sessions_temp(relid: pg_sys::Oid) -> bool {
    // SAFETY: syscache lookups by oid of a locked relation.
    unsafe {
        pg_sys::get_rel_persistence(relid) == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char
            && pg_sys::isOtherTempNamespace(pg_sys::get_rel_namespace(relid))
    }
}

/// A table the TRUNCATE names, and the table its name was found to be.
struct Named {
    rv: *mut pg_sys::RangeVar,
    relid: pg_sys::Oid,
}

/// Names the table found in the statement by its schema and name, so that
/// PostgreSQL's own lookup, when the TRUNCATE runs, cannot find another
/// table (a search_path whose first schema an agent took away from itself
/// while the copy waited): the table emptied is the table whose rows were
/// kept.
///
/// # Safety
/// `rv` is a RangeVar of the statement (a copy the caller may change);
/// `relid` an existing relation, locked.
unsafe fn qualify(rv: *mut pg_sys::RangeVar, relid: pg_sys::Oid) {
    // SAFETY: catalog lookups of a locked relation; palloc'd names.
    unsafe {
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        let name = pg_sys::get_rel_name(relid);
        if !schema.is_null() && !name.is_null() {
            (*rv).catalogname = std::ptr::null_mut();
            (*rv).schemaname = schema;
            (*rv).relname = name;
        }
    }
}

/// After the copy: each name of the statement still finds the table whose
/// rows were kept, or the TRUNCATE is refused (nothing is lost: it rolls
/// back with the copy). A schema renamed while the copy ran is the one way
/// left for a qualified name to find another table.
fn still_named(named: &[Named]) {
    for n in named {
        // SAFETY: a RangeVar of the statement, inside a transaction.
        let now = unsafe { pg::existing_relation(n.rv) };
        if now != Some(n.relid) {
            pg::refuse(policy::truncate_names_changed_denial(
                &pg::session_user_name(),
                &pg::relation_display(n.relid),
            ));
        }
    }
}

/// Checked before a named table is locked, as PostgreSQL's own TRUNCATE
/// checks it: a table the user may not truncate is refused with
/// PostgreSQL's own error, so that an agent can neither queue for an
/// exclusive lock on a table it has no right to (holding up every session
/// behind it), nor have its rows copied (and counted) for the bin.
#[pg_guard]
// SAFETY: a RangeVarGetRelidExtended callback; `rv` is the RangeVar being looked up.
unsafe extern "C-unwind" fn may_truncate(
    rv: *const pg_sys::RangeVar,
    relid: pg_sys::Oid,
    _old: pg_sys::Oid,
    _arg: *mut std::ffi::c_void,
) {
    if relid == pg_sys::InvalidOid {
        return;
    }
    // SAFETY: `rv` is the RangeVar being looked up, its name a C string.
    let name = unsafe { (*rv).relname };
    // SAFETY: per this function's contract.
    unsafe { check_truncate(relid, name) };
}

/// What PostgreSQL's TRUNCATE checks of a table before it locks it (a named
/// table) or right after (one CASCADE adds): it is a table, and the user
/// may truncate it. Raises PostgreSQL's own errors.
///
/// # Safety
/// `relid` is an existing relation; `name` its name, a C string.
unsafe fn check_truncate(relid: pg_sys::Oid, name: *const std::ffi::c_char) {
    let kind = relkind(relid);
    if kind != pg_sys::RELKIND_RELATION
        && kind != pg_sys::RELKIND_PARTITIONED_TABLE
        && kind != pg_sys::RELKIND_FOREIGN_TABLE
    {
        // SAFETY: per this function's contract.
        let shown = unsafe { pg::cstr(name) };
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("\"{shown}\" is not a table")
        );
    }
    // SAFETY: a catalog lookup; aclcheck_error raises.
    unsafe {
        let r = pg_sys::pg_class_aclcheck(
            relid,
            pg_sys::GetUserId(),
            pg_sys::ACL_TRUNCATE as pg_sys::AclMode,
        );
        if r != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(
                r,
                pg_sys::get_relkind_objtype(kind as std::ffi::c_char),
                name,
            );
        }
    }
}

fn relkind(relid: pg_sys::Oid) -> u8 {
    // SAFETY: a catalog lookup.
    unsafe { pg_sys::get_rel_relkind(relid) as u8 }
}

/// Before an agent's TRUNCATE (already judged and allowed) runs, with the
/// recycle bin on: keeps the rows of every table it will empty.
///
/// # Safety
/// `node` is a valid TruncateStmt, inside a transaction.
pub unsafe fn before_truncate(
    node: *mut pg_sys::Node,
    statement: &str,
    token: Option<uuid::Uuid>,
    retention: i64,
) {
    // Under REPEATABLE READ or SERIALIZABLE the copy would see the
    // transaction's snapshot, while TRUNCATE removes the rows committed
    // since too: those would be lost.
    // SAFETY: reads a backend variable.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        pg::refuse(policy::truncate_isolation_denial(&pg::session_user_name()));
    }
    // SAFETY: per this function's contract.
    let (rels, named) = unsafe { truncated(node as *mut pg_sys::TruncateStmt) };
    // Finding the tables can wait on locks (children, later names, what
    // CASCADE adds), while a schema is renamed: each name must still find
    // the table found for it, also when none of them holds rows to keep.
    still_named(&named);
    let rels: Vec<pg_sys::Oid> = rels
        .into_iter()
        // Only tables hold rows here (a partitioned table's are its
        // partitions'; a foreign table's are on its server).
        .filter(|r| relkind(*r) == pg_sys::RELKIND_RELATION)
        .collect();
    if rels.is_empty() {
        return;
    }
    // The budget: what this database keeps now, and about what this adds
    // (the tables' heap and toast: the copies have no indexes).
    if let Some(max) = crate::settings::recycle_max_bytes() {
        let (kept, adding) = privileged::run(|| {
            let kept = if has_entries_table() {
                Spi::get_one::<i64>(
                    "SELECT COALESCE(sum(bytes), 0)::bigint FROM ai_agent_safety.recycled_rows",
                )
                .ok()
                .flatten()
                .unwrap_or(0)
            } else {
                0
            };
            let adding = Spi::get_one_with_args::<i64>(
                "SELECT COALESCE(sum(pg_catalog.pg_table_size(r)), 0)::bigint FROM pg_catalog.unnest($1::oid[]) AS r",
                &[rels.clone().into()],
            )
            .ok()
            .flatten()
            .unwrap_or(0);
            (kept, adding)
        });
        if policy::over_budget(kept, adding, Some(max)) {
            pg::refuse(policy::budget_denial(
                &pg::session_user_name(),
                "TRUNCATE",
                &crate::dbfacts::current_database_name(),
                kept,
                adding,
                max,
            ));
        }
    }
    let id = file::next_id().unwrap_or_else(|e| {
        pgrx::error!(
            "ai_agent_safety: could not number a recycle bin entry ({e}); nothing was truncated"
        )
    });
    let (tables, rows, bytes) = privileged::run(|| {
        ensure_schema("truncate");
        let mut tables = Vec::new();
        let (mut rows, mut bytes) = (0i64, 0i64);
        for (n, relid) in rels.iter().enumerate() {
            let copy = format!("{SCHEMA}.r{id}_{n}");
            let (count, size) = Spi::connect_mut(|c| {
                c.update(
                    &format!(
                        "CREATE TABLE {copy} USING heap AS SELECT * FROM ONLY {}",
                        pg::relation_display(*relid)
                    ),
                    None,
                    &[],
                )?;
                // (Before it commits: autovacuum cannot see it until then.)
                never_analyzed(&copy);
                super::entries::revoke_others(&copy);
                let count = c
                    .select(&format!("SELECT count(*) FROM {copy}"), None, &[])?
                    .first()
                    .get_one::<i64>()?
                    .unwrap_or(0);
                let size = c
                    .select(
                        &format!("SELECT pg_catalog.pg_total_relation_size('{copy}'::pg_catalog.regclass)"),
                        None,
                        &[],
                    )?
                    .first()
                    .get_one::<i64>()?
                    .unwrap_or(0);
                Ok::<_, pgrx::spi::Error>((count, size))
            })
            .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: keeping the rows of {} failed: {e}", pg::relation_display(*relid)));
            rows += count;
            bytes += size;
            tables.push(json!({"relid": relid.to_u32(), "table": pg::relation_display(*relid), "copy": copy, "rows": count}));
        }
        (tables, rows, bytes)
    });
    still_named(&named);
    let object = tables
        .iter()
        .filter_map(|t| t["table"].as_str())
        .collect::<Vec<_>>()
        .join(", ");
    record_entry(&NewEntry {
        id,
        kind: "truncate",
        object: &object,
        tables: Value::Array(tables),
        token,
        statement,
        retention,
        rows: Some(rows),
        bytes,
    });
    audit::record(audit::Event {
        operation: "TRUNCATE".into(),
        object: object.clone(),
        token: token.map(|t| t.to_string()).unwrap_or_default(),
        reason: format!(
            "{} truncated {object}: {rows} rows ({bytes} bytes) kept in the recycle bin as entry {id}",
            pg::session_user_name()
        ),
        statement: statement.to_string(),
        ..audit::Event::new(Source::Recycle, EventKind::Kept, Verdict::Info)
    });
    // The count only to a session that may read every table emptied.
    let readable = rels.iter().all(|r| {
        // SAFETY: an ACL check of a locked relation by the current user.
        let acl = unsafe {
            pg_sys::pg_class_aclcheck(
                *r,
                pg_sys::GetUserId(),
                pg_sys::ACL_SELECT as pg_sys::AclMode,
            )
        };
        acl == pg_sys::AclResult::ACLCHECK_OK
    });
    pgrx::notice!(
        "{}",
        policy::kept_rows_notice(&object, readable.then_some(rows), id, retention)
    );
}

/// A table of kept rows is never analyzed: ANALYZE (autovacuum's, or a
/// DBA's database-wide one) would run its column types' functions (a range
/// type's subtype_diff, which an agent may write) as the table's owner,
/// the bootstrap superuser. Statistics 0 on every column makes ANALYZE
/// skip them all; autovacuum still vacuums the table (what rolled-back
/// statements kept is reclaimed) and guards it against wraparound.
pub(super) fn never_analyzed(table: &str) {
    Spi::run(&format!(
        "DO $$DECLARE c text; BEGIN
           FOR c IN SELECT pg_catalog.quote_ident(attname) FROM pg_catalog.pg_attribute
                     WHERE attrelid = '{table}'::pg_catalog.regclass AND attnum > 0 AND NOT attisdropped LOOP
             EXECUTE pg_catalog.format('ALTER TABLE {table} ALTER COLUMN %s SET STATISTICS 0', c);
           END LOOP; END$$"
    ))
    .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
}

/// Drops the copies of a kept TRUNCATE and its entry.
pub fn drop_copies(id: i64, tables: &[Value]) {
    for t in tables {
        drop_copy(t, id);
    }
    forget(id);
}

/// One table's kept rows of entry `id` go: a TRUNCATE's copy is dropped,
/// a DELETE's rows leave their table's store (which stays, for the next).
pub(super) fn drop_copy(t: &Value, id: i64) {
    let Some(copy) = t["copy"].as_str() else {
        return;
    };
    if kept_table(copy).is_none() {
        pgrx::log!(
            "ai_agent_safety: recycle bin entry {id}: {copy} is no kept table of the bin (not the bootstrap superuser's plain table in a safe ai_agent_safety_recycle); left alone"
        );
        return;
    }
    let sql = match t["entry_column"].as_str() {
        Some(col) => format!("DELETE FROM {copy} WHERE {} = {id}", pg::quote_ident(col)),
        None => format!("DROP TABLE IF EXISTS {copy}"),
    };
    privileged::run(|| Spi::run(&sql).unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}")));
    if t["entry_column"].is_string() {
        drop_if_empty(copy);
    }
}

/// A store no entry uses any more goes (when no one else holds it now:
/// else a later purge or expiry takes it).
fn drop_if_empty(store: &str) {
    // Under REPEATABLE READ or SERIALIZABLE the check below would see the
    // transaction's snapshot, not rows other entries kept since: the store
    // stays (a later purge or expiry takes it).
    // SAFETY: reads a backend variable.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return;
    }
    privileged::run(|| {
        let Some(oid) = kept_table(store) else {
            return;
        };
        // SAFETY: takes a lock only if it is free (held to the end of the
        // transaction).
        let locked = unsafe {
            pg_sys::ConditionalLockRelationOid(oid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE)
        };
        let empty = locked
            && Spi::get_one::<bool>(&format!("SELECT NOT EXISTS (SELECT FROM {store})"))
                .ok()
                .flatten()
                .unwrap_or(false);
        if empty {
            Spi::run(&format!("DROP TABLE {store}"))
                .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
        }
    });
}

/// How long one pass of the audit writer spends on expiries (see
/// `expire_all`).
const EXPIRY_BUDGET_US: i64 = 200_000;

/// An expired entry: (id, object, task, dropped by, tables, kind).
type Due = (i64, String, Option<String>, String, Value, String);

/// Drops the kept TRUNCATEs of this database whose retention has passed,
/// and records each. For the audit writer, inside its transaction.
pub fn expire_all(drop_objects: fn(&Value) -> Result<(), String>) {
    let due: Vec<Due> = Spi::connect(|c| {
        if !has_entries_table() {
            return Ok(Vec::new());
        }
        let rows = c.select(
            "SELECT id, object, task_id, dropped_by, tables, kind FROM ai_agent_safety.recycled_rows
              WHERE expires_at <= pg_catalog.now() ORDER BY pg_catalog.random()",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for r in rows {
            let tables: Option<pgrx::JsonB> = r.get(5)?;
            out.push((
                r.get::<i64>(1)?.unwrap_or(0),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<String>(3)?,
                r.get::<String>(4)?.unwrap_or_default(),
                tables.map(|t| t.0).unwrap_or(Value::Null),
                r.get::<String>(6)?.unwrap_or_default(),
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_default();
    // Each entry on its own: one that cannot go (something outside the bin
    // depends on it, or another session holds a lock its DROP needs, which
    // it waits for only `audit::writer::STEP_LOCK_TIMEOUT`) must not hold
    // back the others. In a random order, and for at most
    // EXPIRY_BUDGET_US a pass: many entries whose locks are held must not
    // add up to a writer held up; the rest go at later passes.
    // SAFETY: reads the clock.
    let start = unsafe { pg_sys::GetCurrentTimestamp() };
    for (id, object, task, by, tables, kind) in due {
        // SAFETY: reads the clock.
        if unsafe { pg_sys::GetCurrentTimestamp() } - start > EXPIRY_BUDGET_US {
            break;
        }
        let what = format!("recycle bin entry {id}'s expiry");
        pg::in_subtransaction(&what, || {
            expire_one(id, &object, task, &by, &tables, &kind, drop_objects)
        });
    }
}

/// One expired entry: dropped for good and recorded, or (when its DROP
/// would reach beyond the bin) an ERROR that its subtransaction logs.
fn expire_one(
    id: i64,
    object: &str,
    task: Option<String>,
    by: &str,
    tables: &Value,
    kind: &str,
    drop_objects: fn(&Value) -> Result<(), String>,
) {
    let (operation, what) = if policy::holds_rows(kind) {
        (
            kind.to_uppercase(),
            format!(
                "the kept rows of {object} ({} by {by})",
                policy::rows_verb_past(kind)
            ),
        )
    } else {
        (
            format!("DROP {}", kind.to_uppercase()),
            format!("{kind} {object} (dropped by {by})"),
        )
    };
    if policy::holds_rows(kind) {
        drop_copies(id, tables.as_array().map(Vec::as_slice).unwrap_or(&[]));
    } else {
        if let Err(e) = drop_objects(tables) {
            pgrx::error!("recycle bin entry {id} did not expire: {e}");
        }
        forget(id);
    }
    let line = Spi::get_one_with_args::<String>(
        "INSERT INTO ai_agent_safety.audit_row
           (ts, database, session_user_name, current_user_name, task_id, source, event, decision, operation, object, reason)
         VALUES (pg_catalog.now(), pg_catalog.current_database(), $1, $1, $2, 'recycle', 'expired', 'info', $5, $3, $4)
         RETURNING pg_catalog.row_to_json(audit_row)::text",
        &[
            by.into(),
            task.into(),
            object.into(),
            format!("recycle bin entry {id} expired: {what} were dropped for good").into(),
            operation.as_str().into(),
        ],
    );
    if let Ok(Some(l)) = line {
        pgrx::log!("ai_agent_safety: {l}");
    }
}

/// When this database's next kept TRUNCATE expires (PostgreSQL µs). For
/// the audit writer, inside a transaction.
pub fn next_expiry() -> Option<i64> {
    if !has_entries_table() {
        return None;
    }
    Spi::get_one::<i64>(
        "SELECT ((EXTRACT(epoch FROM min(expires_at)) - 946684800) * 1000000)::bigint
           FROM ai_agent_safety.recycled_rows",
    )
    .ok()
    .flatten()
}
