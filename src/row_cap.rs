//! Row caps, executor side: while a query approved by a capped token runs,
//! every query it sets off is shown to its tally (`row_count`), and when
//! the query finishes (its AFTER triggers and foreign-key actions fired) the
//! rows it changed are compared with the cap (`aas_policy::row_cap`). Over
//! the cap, the statement fails with 42501 before it ends: nothing it did is
//! kept, and the token's use rolls back with it.

use crate::row_count::{Tally, Via};
use aas_policy::row_cap::{Changes, Exceeded, Limits};
use aas_policy::Statement;
use pgrx::pg_sys;
use uuid::Uuid;

struct Cap {
    query: *mut pg_sys::QueryDesc,
    subxact: pg_sys::SubTransactionId,
    token: Uuid,
    limits: Limits,
    stmt: Statement,
    source: String,
    tally: Tally,
    /// Rows the queries that write reported changing (es_processed): the
    /// floor of the count, for rows no table counter sees (a foreign
    /// table's).
    reported: i64,
}

// SAFETY: a backend is single-threaded; caps are pushed when an approved
// query starts, popped when it finishes, and dropped when its
// (sub)transaction aborts.
static mut CAPS: Vec<Cap> = Vec::new();

// SAFETY: see CAPS; the one place it is borrowed from.
fn caps() -> &'static mut Vec<Cap> {
    // SAFETY: see CAPS.
    unsafe { &mut *std::ptr::addr_of_mut!(CAPS) }
}

/// Is any capped query running? (Every query of an agent session asks.)
#[inline]
pub fn active() -> bool {
    !caps().is_empty()
}

/// Starts counting for an approved query whose token allows at most `cap`
/// rows. Refuses it when rows cannot be counted.
///
/// # Safety
/// `qd` is the query being started, with its plan; inside a transaction.
pub unsafe fn open(
    qd: *mut pg_sys::QueryDesc,
    token: Uuid,
    limits: Limits,
    stmt: &Statement,
    source: &str,
) {
    if !crate::row_count::available() {
        let d = aas_policy::row_cap::cannot_count(&stmt.what(), token);
        crate::guard::refuse_recorded(d, stmt, source, &token.to_string());
        return;
    }
    // Citus commits a change to one shard at once outside a transaction
    // block: a count over the limits could not take it back.
    // SAFETY: per this function's contract; reads transaction state.
    let elsewhere = unsafe {
        !crate::classify::plan::unplanned_written(&*(*qd).plannedstmt).is_empty()
            && !pg_sys::IsTransactionBlock()
    };
    if elsewhere {
        let d = aas_policy::row_cap::outside_transaction_block(&stmt.what(), token);
        crate::guard::refuse_recorded(d, stmt, source, &token.to_string());
        return;
    }
    let mut tally = Tally::default();
    // SAFETY: per this function's contract.
    unsafe { tally.track(qd, Via::Statement) };
    caps().push(Cap {
        query: qd,
        // SAFETY: reads a backend variable.
        subxact: unsafe { crate::unguarded::GetCurrentSubTransactionId() },
        token,
        limits,
        stmt: stmt.clone(),
        source: source.to_string(),
        tally,
        reported: 0,
    });
}

/// Shows a query that is starting to every running cap: its tables join
/// their tallies before it writes them.
///
/// # Safety
/// `qd` is a valid QueryDesc with its plan, inside a transaction.
pub unsafe fn observe(qd: *mut pg_sys::QueryDesc, fk: bool) {
    // SAFETY: per this function's contract.
    let via = crate::row_count::via(unsafe { (*(*qd).plannedstmt).commandType }, fk);
    for c in caps().iter_mut() {
        // SAFETY: per this function's contract.
        unsafe { c.tally.track(qd, via) };
    }
}

/// After a query finished (its foreign-key actions and AFTER triggers
/// fired): the rows a writing query reported count for every running cap;
/// if it is a capped one, its count is final and is held to its limits.
///
/// # Safety
/// `qd` is the QueryDesc of a query that just finished (its EState live).
pub unsafe fn finished(qd: *mut pg_sys::QueryDesc) {
    // SAFETY: per this function's contract.
    let (writes, processed) = unsafe {
        (
            (*qd).operation != pg_sys::CmdType::CMD_SELECT,
            crate::row_count::reported(qd),
        )
    };
    for c in caps().iter_mut() {
        if writes {
            c.reported += processed;
        }
        // SAFETY: per this function's contract.
        unsafe { c.tally.finished(qd, processed) };
    }
    if caps().last().is_none_or(|c| c.query != qd) {
        return;
    }
    let c = caps().pop().expect("checked above");
    let counted: Vec<(u32, Changes)> = c
        .tally
        .per_table()
        .into_iter()
        .map(|(t, n, _)| (t.to_u32(), n))
        .collect();
    let exceeded = match (c.tally.uncountable(), c.tally.cascades_elsewhere()) {
        (Some(t), _) => Some(Exceeded::Uncountable { relid: t.to_u32() }),
        (None, Some(t)) => Some(Exceeded::CascadesElsewhere { relid: t.to_u32() }),
        (None, None) => aas_policy::row_cap::check(&c.limits, &counted, c.reported),
    };
    if let Some(e) = exceeded {
        let table = e
            .relid()
            .map(|t| crate::pg::relation_display(pg_sys::Oid::from(t)))
            .unwrap_or_default();
        let d = aas_policy::row_cap::refusal(&c.stmt.what(), c.token, &e, &table);
        crate::guard::refuse_recorded(d, &c.stmt, &c.source, &c.token.to_string());
    }
}

/// A (sub)transaction aborted: the caps opened in it are gone with their
/// queries (`None`: the whole transaction).
fn forget(sub: Option<pg_sys::SubTransactionId>) {
    caps().retain(|c| sub.is_some_and(|s| c.subxact < s));
}

// SAFETY: called from the transaction callback (hooks); it only empties a vector.
pub(crate) unsafe extern "C-unwind" fn on_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if active()
        && matches!(
            event,
            XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT | XACT_EVENT_PREPARE
        )
    {
        forget(None);
    }
}

// SAFETY: called from the subtransaction callback (hooks); it only trims a vector.
pub(crate) unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        forget(Some(sub));
    }
}
