//! Old rows, kept: the rows an agent's DELETE removes, and (when UPDATE is
//! one of `protected_operations`) the old versions of the rows its UPDATE
//! changes. Wherever the statement runs (top level, writable CTE, MERGE,
//! INSERT ... ON CONFLICT DO UPDATE, a function, a trigger, a foreign
//! key's ON DELETE CASCADE), each row is copied into its table's store
//! (`store`) just before it goes or changes.
//!
//! How: when an agent's query that deletes (or updates) starts, each table
//! it changes gets one more BEFORE ROW trigger (`trigger`), in that query's
//! memory only. It comes after the table's own BEFORE triggers, so it sees
//! only rows that will change (one of them returning NULL keeps the row,
//! and the trigger is not reached), locked by PostgreSQL as every BEFORE
//! ROW trigger's row is. Cascades and triggers run queries of their own,
//! which start here too. What is kept is part of the agent's transaction:
//! if it rolls back, nothing is kept and nothing is lost. When the
//! outermost such query finishes, its rows become an entry of
//! `ai_agent_safety.recycled_rows` per kind (`delete`, `update`):
//! `restore_dropped` inserts deleted rows back (`rows::restore`) and puts
//! old versions back over the current ones by primary key (`restore`).

mod restore;
mod store;
mod trigger;

pub(super) use restore::restore_updated;
use store::keep;
pub use store::ENTRY_COLUMN;

use super::entries::{has_entries_table, record_entry, NewEntry};
use crate::{audit, pg, privileged, settings};
use aas_policy::recycle as policy;
use aas_policy::{EventKind, OpClass, Source, Verdict};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{json, Value};

/// What the kept rows were: deleted, or the old versions of updated ones.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Delete = 0,
    Update = 1,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Delete => "delete",
            Kind::Update => "update",
        }
    }
}

/// One table's store, as this statement uses it for one kind.
struct Copy {
    kind: Kind,
    relid: pg_sys::Oid,
    store: pg_sys::Oid,
    index: pg_sys::Oid,
    name: String,
    table: String,
    /// The table's live columns (attnums), in the store's order.
    attnums: Vec<i16>,
    /// Rows kept (and their bytes), per subtransaction that kept them.
    kept: Vec<(pg_sys::SubTransactionId, i64, i64)>,
    /// The subtransaction that made the store, when this statement did.
    made_in: Option<pg_sys::SubTransactionId>,
}

impl Copy {
    fn rows_and_bytes(&self) -> (i64, i64) {
        self.kept
            .iter()
            .fold((0, 0), |(r, b), (_, n, size)| (r + n, b + size))
    }
}

/// The statement whose deleted rows are being kept.
struct Keeping {
    /// The outermost deleting query: its end makes the entry.
    owner: *mut pg_sys::QueryDesc,
    subxact: pg_sys::SubTransactionId,
    /// The entry numbers, per kind, taken on the first kept row.
    ids: [Option<u32>; 2],
    statement: String,
    token: Option<uuid::Uuid>,
    retention: i64,
    copies: Vec<Copy>,
}

// SAFETY: a backend is single-threaded; cleared when the owner finishes and
// on (sub)transaction abort.
static mut KEEPING: Option<Keeping> = None;

// SAFETY: see KEEPING; the one place it is borrowed from.
fn keeping() -> &'static mut Option<Keeping> {
    // SAFETY: see KEEPING.
    unsafe { &mut *std::ptr::addr_of_mut!(KEEPING) }
}

/// An agent's query has just started (ExecutorStart done): when it deletes
/// rows (or updates them, UPDATE being protected) and the recycle bin is
/// on, each table it changes keeps the old rows.
///
/// # Safety
/// `qd` is a started query of an agent's statement, inside a transaction.
pub unsafe fn started(qd: *mut pg_sys::QueryDesc, token: Option<uuid::Uuid>) {
    use crate::classify::plan;
    // SAFETY: per this function's contract.
    let ps = unsafe { &*(*qd).plannedstmt };
    // SAFETY: ps is valid.
    if unsafe { plan::is_read_only(ps) } {
        return;
    }
    // What it deletes (and updates, when UPDATE is protected) first: most
    // of an agent's writes keep nothing, and need no catalog lookup.
    // SAFETY: ps is valid.
    let deletes = unsafe { plan::result_rtis(ps, OpClass::Delete) };
    let updates = if settings::protected_operations().contains(OpClass::Update) {
        // SAFETY: ps is valid.
        unsafe { plan::result_rtis(ps, OpClass::Update) }
    } else {
        Vec::new()
    };
    if deletes.is_empty() && updates.is_empty() {
        return;
    }
    let retention = settings::recycle_retention_s();
    // (A database whose extension predates the bin, not yet updated, has
    // no entries table: nothing is kept there, as before the bin.)
    if !policy::keeps(true, retention) || !has_entries_table() {
        return;
    }
    if !updates.is_empty() {
        // SAFETY: ps is valid; a started query's EState.
        unsafe { refuse_partitioned_upsert(qd, ps) };
    }
    let mut rtis: Vec<i32> = deletes.iter().chain(&updates).copied().collect();
    rtis.sort_unstable();
    rtis.dedup();
    // SAFETY: a started query's EState with its result relations.
    let estate = unsafe { (*qd).estate };
    let mut armed = false;
    for rti in rtis {
        // SAFETY: es_result_relations has one slot per range-table entry;
        // a slot is NULL for a relation not opened (pruned).
        let rri = unsafe { *(*estate).es_result_relations.add((rti - 1) as usize) };
        if rri.is_null() {
            continue;
        }
        // SAFETY: an open result relation.
        let rel = unsafe { (*rri).ri_RelationDesc };
        // SAFETY: as above.
        let (relid, relkind, persistence) = unsafe {
            let r = &*(*rel).rd_rel;
            ((*rel).rd_id, r.relkind as u8, r.relpersistence as u8)
        };
        // Only tables hold rows here (a foreign table's are on its server;
        // a temporary table's go with its session, as a DROP of one does);
        // the extension's own tables and the bin are not an agent's to
        // change (PostgreSQL refuses it).
        if relkind != pg_sys::RELKIND_RELATION
            || persistence == pg_sys::RELPERSISTENCE_TEMP
            || crate::classify::is_own_relation(relid)
            || in_bin(relid)
        {
            continue;
        }
        // SAFETY: rri is this query's, in its EState.
        unsafe { trigger::add(rri, estate, deletes.contains(&rti), updates.contains(&rti)) };
        armed = true;
    }
    if armed && keeping().is_none() {
        *keeping() = Some(Keeping {
            owner: qd,
            // SAFETY: reads the transaction state.
            subxact: unsafe { pg_sys::GetCurrentSubTransactionId() },
            ids: [None, None],
            // SAFETY: the query's own text.
            statement: unsafe { pg::statement_text((*qd).sourceText, ps) },
            token,
            retention,
            copies: Vec::new(),
        });
    }
}

/// An agent's upsert into a partitioned table, while UPDATE is protected,
/// is refused: each row's partition is found as it runs (its result
/// relation made then, out of reach of the trigger), so the old versions
/// it overwrites could not be kept.
///
/// # Safety
/// `qd` is a started query whose plan is `ps`.
unsafe fn refuse_partitioned_upsert(qd: *mut pg_sys::QueryDesc, ps: &pg_sys::PlannedStmt) {
    // SAFETY: per this function's contract.
    for rti in unsafe { crate::classify::plan::upsert_rtis(ps) } {
        // SAFETY: as in `started`.
        let rri = unsafe { *(*(*qd).estate).es_result_relations.add((rti - 1) as usize) };
        if rri.is_null() {
            continue;
        }
        // SAFETY: an open result relation.
        let (relid, relkind) = unsafe {
            let rel = (*rri).ri_RelationDesc;
            ((*rel).rd_id, (*(*rel).rd_rel).relkind as u8)
        };
        if relkind == pg_sys::RELKIND_PARTITIONED_TABLE {
            pg::refuse(policy::upsert_partitioned_denial(
                &pg::session_user_name(),
                &pg::relation_display(relid),
            ));
        }
    }
}

/// Is the table one the bin holds: in the recycle schema, or in a kept
/// schema (known by its oid: an agent can give its own schema a kept
/// schema's kind of name)?
fn in_bin(relid: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups by oid.
    let nsp = unsafe { pg_sys::get_rel_namespace(relid) };
    // The schema's name first (one cache lookup); its owner and grants only
    // for a table in it: one someone else owns or reaches is no bin.
    if Some(nsp) == super::entries::schema_oid() {
        return super::entries::bin_schema() == Some(nsp);
    }
    // SAFETY: as above.
    let name = unsafe { pg_sys::get_namespace_name(nsp) };
    // SAFETY: a palloc'd name or NULL.
    !name.is_null()
        && policy::objects::is_kept_schema(&unsafe { pg::cstr(name) })
        && super::entries::kept_schemas().contains(&nsp.to_u32())
}

/// Is `qd` the query whose end makes this statement's entry?
pub fn owns(qd: *mut pg_sys::QueryDesc) -> bool {
    keeping().as_ref().is_some_and(|k| k.owner == qd)
}

/// The owner query has finished (its cascades and AFTER triggers too):
/// what it kept becomes an entry per kind, or the statement is refused when
/// keeping it would take the bin past its budget.
pub fn finished() {
    let Some(k) = keeping().take() else {
        return;
    };
    let entries: Vec<(Kind, u32, Vec<&Copy>)> = [Kind::Delete, Kind::Update]
        .into_iter()
        .filter_map(|kind| {
            let id = k.ids[kind as usize]?;
            let copies: Vec<&Copy> = k
                .copies
                .iter()
                .filter(|c| c.kind == kind && c.rows_and_bytes().0 > 0)
                .collect();
            (!copies.is_empty()).then_some((kind, id, copies))
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    let adding: i64 = entries
        .iter()
        .flat_map(|(_, _, cs)| cs.iter().map(|c| c.rows_and_bytes().1))
        .sum();
    if let Some(max) = settings::recycle_max_bytes() {
        let kept = privileged::run(|| {
            if !has_entries_table() {
                return 0;
            }
            Spi::get_one::<i64>(
                "SELECT COALESCE(sum(bytes), 0)::bigint FROM ai_agent_safety.recycled_rows",
            )
            .ok()
            .flatten()
            .unwrap_or(0)
        });
        if policy::over_budget(kept, adding, Some(max)) {
            pg::refuse(policy::budget_denial(
                &pg::session_user_name(),
                &entries[0].0.name().to_uppercase(),
                &crate::dbfacts::current_database_name(),
                kept,
                adding,
                max,
            ));
        }
    }
    for (kind, id, copies) in entries {
        record(&k, kind, id, &copies);
    }
}

/// One entry: recorded, audited, and told to the agent.
fn record(k: &Keeping, kind: Kind, id: u32, copies: &[&Copy]) {
    let (mut rows, mut bytes) = (0i64, 0i64);
    let tables: Vec<Value> = copies
        .iter()
        .map(|c| {
            let (n, b) = c.rows_and_bytes();
            rows += n;
            bytes += b;
            json!({"relid": c.relid.to_u32(), "table": c.table, "copy": c.name, "entry_column": ENTRY_COLUMN, "rows": n})
        })
        .collect();
    let object = copies
        .iter()
        .map(|c| c.table.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    record_entry(&NewEntry {
        id,
        kind: kind.name(),
        object: &object,
        tables: Value::Array(tables),
        token: k.token,
        statement: &k.statement,
        retention: k.retention,
        rows: Some(rows),
        bytes,
    });
    audit::record(audit::Event {
        operation: kind.name().to_uppercase(),
        object: object.clone(),
        token: k.token.map(|t| t.to_string()).unwrap_or_default(),
        reason: format!(
            "{} {} {rows} rows of {object}: {} kept ({bytes} bytes) in the recycle bin as entry {id}",
            pg::session_user_name(),
            policy::rows_verb_past(kind.name()),
            if kind == Kind::Update { "their old versions" } else { "they are" }
        ),
        statement: k.statement.clone(),
        ..audit::Event::new(Source::Recycle, EventKind::Kept, Verdict::Info)
    });
    // Another node's statement (Citus's, on a shard): its client is that
    // node, which passes notices on to the agent; the shard is not the
    // agent's to see (the entry and the audit event name it here).
    if !crate::port::from_cluster_node() {
        pgrx::notice!(
            "{}",
            policy::kept_old_rows_notice(kind.name(), &object, rows, id, k.retention)
        );
    }
}

/// A (sub)transaction aborted: what it kept is gone with it, and an owner
/// that started in it will never finish.
pub fn aborted(subxact: Option<pg_sys::SubTransactionId>) {
    let Some(k) = keeping().as_mut() else {
        return;
    };
    match subxact {
        Some(s) if k.subxact < s => {
            // A store made in it is gone too.
            k.copies.retain(|c| c.made_in.is_none_or(|m| m < s));
            for c in &mut k.copies {
                c.kept.retain(|(sub, _, _)| *sub < s);
            }
        }
        _ => *keeping() = None,
    }
}
