//! The preview of a request's DELETE, UPDATE, MERGE or INSERT ... ON
//! CONFLICT DO UPDATE: the statement is run, as
//! the requesting role, in a subtransaction that is always rolled back, and
//! the rows it changed are counted per table (`row_count`), its foreign-key
//! actions and triggers included.
//!
//! The guard judges the dry run as it would judge the real use: the
//! statement presents a stand-in for the token the request will create
//! (granted, bound to exactly this statement and its object, usable once),
//! so what the real statement would be refused (a trigger's DELETE, a
//! write outside its environment) fails the dry run too, and the request
//! with it. The stand-in exists only inside the subtransaction and covers
//! only the query whose text is the dry run's own string; nothing the
//! statement runs inside (functions, triggers) is covered by it.
//!
//! The preview made last is kept in the backend for `_request_token`, which
//! stores it with the token: a caller can hand the request no preview of
//! its own making.

use crate::row_count::{Tally, Via};
use crate::{identity, pg, statement_form};
use aas_policy::{
    BoundStatement, ObjectRef, OpClass, TokenFacts, TokenPresented, TokenState, TokenUse,
};
use pgrx::pg_sys;
use pgrx::{PgSqlErrorCode, PgTryBuilder};
use serde_json::Value;
use std::ffi::{c_char, CString};
use uuid::Uuid;

struct Dry {
    source: *const c_char,
    token: TokenFacts,
    /// The statement's command (DELETE, UPDATE, MERGE, INSERT), once it
    /// started: it names how its foreign-key actions came about.
    command: pg_sys::CmdType::Type,
    started: bool,
    tally: Tally,
}

// SAFETY: a backend is single-threaded; set for the length of one dry run,
// cleared after it and when a transaction aborts.
static mut DRY: Option<Dry> = None;

/// The preview made last, with what it was made for.
struct Last {
    statement: String,
    search_path: String,
    preview: Value,
    rows: i64,
}

/// The preview made last in this transaction; dropped when any
/// subtransaction rolls back (what it saw may be gone) and at the end of
/// the transaction.
// SAFETY: as DRY; cleared at the end of every transaction.
static mut LAST: Option<Last> = None;

// SAFETY: see DRY; the one place it is borrowed from.
fn dry() -> &'static mut Option<Dry> {
    // SAFETY: see DRY.
    unsafe { &mut *std::ptr::addr_of_mut!(DRY) }
}

// SAFETY: see LAST; the one place it is borrowed from.
fn last() -> &'static mut Option<Last> {
    // SAFETY: see LAST.
    unsafe { &mut *std::ptr::addr_of_mut!(LAST) }
}

/// Is this query the dry run's own statement (not one it sets off)?
///
/// # Safety
/// `qd` is a valid QueryDesc.
#[inline]
pub unsafe fn is_dry_run_query(qd: *mut pg_sys::QueryDesc) -> bool {
    // SAFETY: per this function's contract.
    dry()
        .as_ref()
        .is_some_and(|d| d.source == unsafe { (*qd).sourceText })
}

/// The stand-in token the dry run's statement presents.
pub fn token() -> TokenPresented {
    match dry() {
        Some(d) => TokenPresented::Found(d.token.clone()),
        None => TokenPresented::None,
    }
}

/// The dry run's statement was allowed with the stand-in: it is used, and
/// the statement's tables are counted from now.
///
/// # Safety
/// `qd` is the statement's valid QueryDesc with its plan, inside a
/// transaction.
pub unsafe fn started(qd: *mut pg_sys::QueryDesc) {
    if let Some(d) = dry() {
        d.started = true;
        // SAFETY: per this function's contract.
        d.command = unsafe { (*qd).operation };
        d.token.used = Some(TokenUse {
            at: "the dry run".into(),
            pid: std::process::id() as i32,
        });
        // SAFETY: per this function's contract.
        unsafe { d.tally.track(qd, Via::Statement) };
    }
}

/// Shows a query that is starting to the dry run's tally.
///
/// # Safety
/// `qd` is a valid QueryDesc with its plan, inside a transaction.
pub unsafe fn observe(qd: *mut pg_sys::QueryDesc, fk: bool) {
    if let Some(d) = dry().as_mut().filter(|d| d.started) {
        // SAFETY: per this function's contract.
        let via = crate::row_count::via(unsafe { (*(*qd).plannedstmt).commandType }, fk);
        // SAFETY: per this function's contract.
        unsafe { d.tally.track(qd, via) };
    }
}

/// A query finished while the dry run counts: the rows it reported count
/// for a foreign table it writes.
///
/// # Safety
/// `qd` is the QueryDesc of a query that just finished (its EState live).
pub unsafe fn finished(qd: *mut pg_sys::QueryDesc) {
    if let Some(d) = dry().as_mut().filter(|d| d.started) {
        // SAFETY: per this function's contract.
        let processed = unsafe { crate::row_count::reported(qd) };
        // SAFETY: per this function's contract.
        unsafe { d.tally.finished(qd, processed) };
    }
}

/// Is a dry run going on? (Every query of an agent session asks.)
#[inline]
pub fn active() -> bool {
    dry().is_some()
}

/// A transaction ended: the dry run (if an error cut it short) and the last
/// preview go with it.
fn forget() {
    *dry() = None;
    *last() = None;
}

// SAFETY: called from the subtransaction callback (hooks); it only clears a static.
pub(crate) unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    // The dry run's own rollback comes before its preview is kept.
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        *last() = None;
    }
}

// SAFETY: called from the transaction callback (hooks); it only clears two statics.
pub(crate) unsafe extern "C-unwind" fn on_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if (dry().is_some() || last().is_some())
        && matches!(
            event,
            XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT | XACT_EVENT_PREPARE
        )
    {
        forget();
    }
}

/// The preview made for exactly `statement`, read with `search_path`, in
/// this transaction and since any rollback of a subtransaction, taken
/// (once) by the request that stores it.
pub fn take(statement: &str, search_path: &str) -> Option<(Value, i64)> {
    match last().take() {
        Some(l) if l.statement == statement && l.search_path == search_path => {
            Some((l.preview, l.rows))
        }
        _ => None,
    }
}

/// Runs `statement` (one DELETE, UPDATE, MERGE or INSERT ... ON CONFLICT
/// DO UPDATE) as the calling role in a
/// subtransaction that is rolled back, within `timeout_ms`, and returns its
/// preview: `[{"table": ..., "rows": ..., "via": ...}]` and the total.
/// `search_path` is the caller's, as the request reads the statement.
pub fn preview(
    statement: &str,
    search_path: &str,
    timeout_ms: i32,
) -> Result<(Value, i64), String> {
    if active() {
        return Err("a dry run cannot start inside another".into());
    }
    *last() = None;
    // Names in the statement resolve as the request read them.
    pg::with_search_path(search_path, || {
        preview_on_path(statement, search_path, timeout_ms)
    })?
}

fn preview_on_path(
    statement: &str,
    search_path: &str,
    timeout_ms: i32,
) -> Result<(Value, i64), String> {
    let requested = statement_form::requested(statement)?;
    let first = requested.classes.first().copied().unwrap_or("nothing");
    let class = OpClass::parse(first).ok_or("an unknown operation")?;
    if !matches!(class, OpClass::Delete | OpClass::Update) {
        return Err(format!(
            "a dry run is for DELETE, UPDATE, MERGE and INSERT ... ON CONFLICT DO UPDATE, not {first}"
        ));
    }
    let form = statement_form::for_request(statement, search_path)?;
    let text =
        CString::new(statement).map_err(|_| "the statement contains a NUL byte".to_string())?;
    let requested_by = if identity::session_user_is_agent() {
        pg::session_user_name()
    } else {
        pg::current_user_name()
    };
    let target = requested.target.1;
    *dry() = Some(Dry {
        source: text.as_ptr(),
        token: TokenFacts {
            id: Uuid::nil(),
            state: TokenState::Granted,
            requested_by,
            decided_by: Some("the dry run".into()),
            operation: class,
            target: Some(ObjectRef {
                classid: requested.target.0.to_u32(),
                objid: target.to_u32(),
                display: pg::relation_display(target),
            }),
            verb: None,
            expires_at_us: None,
            expires_at_text: String::new(),
            used: None,
            bound: Some(BoundStatement {
                approved: statement.to_string(),
                approved_form: form,
                presented: String::new(),
                presented_form: None,
            }),
        },
        command: pg_sys::CmdType::CMD_UNKNOWN,
        started: false,
        tally: Tally::default(),
    });
    let result = in_rolled_back_subtransaction(&text, timeout_ms);
    let d = dry().take();
    let (per_table, command) = match (result, d) {
        (Ok(per_table), Some(d)) => (per_table, d.command),
        (Ok(_), None) => return Err("the dry run lost its state".into()),
        (Err(e), _) => return Err(e),
    };
    let mut rows = Vec::new();
    let mut total = 0;
    for (relid, n, via) in per_table {
        // A count that went down (a table made and rolled back inside the
        // dry run) would hide rows: such a preview is not made.
        if n.kinds().iter().any(|(_, k)| *k < 0) {
            return Err(format!(
                "the row count of {} went down during its dry run (a table created or emptied and rolled back inside it), so its effect cannot be counted",
                pg::relation_display(relid)
            ));
        }
        if n.total() == 0 && via != Via::Statement {
            continue;
        }
        total += n.total();
        // Each kind of change it made, as the token will hold it.
        rows.push(crate::row_count::entry(relid, n, via, command));
    }
    let v = Value::Array(rows);
    *last() = Some(Last {
        statement: statement.to_string(),
        search_path: search_path.to_string(),
        preview: v.clone(),
        rows: total,
    });
    Ok((v, total))
}

/// Runs the dry run's text through SPI in a subtransaction that is always
/// rolled back, and reads the tally before the rollback.
fn in_rolled_back_subtransaction(
    text: &CString,
    timeout_ms: i32,
) -> Result<Vec<(pg_sys::Oid, aas_policy::row_cap::Changes, Via)>, String> {
    use pg::timeout::*;
    // SAFETY: PL/pgSQL's exception-block pattern: context and owner saved
    // and restored, the subtransaction rolled back on every path (closing
    // the SPI connections opened inside it).
    unsafe {
        let old_context = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        // The caller's statement_timeout keeps its own end.
        let outer = get_timeout_active(STATEMENT_TIMEOUT)
            .then(|| get_timeout_finish_time(STATEMENT_TIMEOUT));
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        let started = pg_sys::GetCurrentTimestamp();
        let ptr = text.as_ptr();
        let outcome = PgTryBuilder::new(|| {
            enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
            pg_sys::SPI_connect();
            let rc = pg_sys::SPI_execute(ptr, false, 0);
            let tally = dry().as_ref().map(|d| {
                (
                    d.tally.per_table(),
                    d.tally.uncountable(),
                    d.tally.cascades_elsewhere(),
                )
            });
            let (per_table, uncountable, cascades) = tally.unwrap_or_default();
            pg_sys::SPI_finish();
            disable_timeout(STATEMENT_TIMEOUT, false);
            if rc < 0 {
                return Err(format!("SPI reported error code {rc}"));
            }
            if let Some(t) = uncountable {
                return Err(format!(
                    "its dry run wrote {}, whose rows are another server's (a foreign or distributed table), in a way whose rows cannot be counted (a WITH clause's write, or one beside another write); write such a table only as the statement's own target",
                    pg::relation_display(t)
                ));
            }
            if let Some(t) = cascades {
                return Err(format!(
                    "in its dry run, {}",
                    aas_policy::row_cap::cascade_not_counted(&pg::relation_display(t))
                ));
            }
            Ok(per_table)
        })
        .catch_others(|e| {
            disable_timeout(STATEMENT_TIMEOUT, false);
            let (code, message) = match &e {
                pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                | pgrx::pg_sys::panic::CaughtError::ErrorReport(r)
                | pgrx::pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => {
                    (r.sql_error_code(), r.message().to_string())
                }
            };
            let elapsed_ms = (pg_sys::GetCurrentTimestamp() - started) / 1000;
            if code == PgSqlErrorCode::ERRCODE_QUERY_CANCELED && elapsed_ms >= timeout_ms as i64 {
                Err(format!(
                    "its dry run did not finish within ai_agent_safety.preview_timeout ({timeout_ms} ms)"
                ))
            } else {
                Err(format!("its dry run failed: {message}"))
            }
        })
        .execute();
        pg_sys::RollbackAndReleaseCurrentSubTransaction();
        pg_sys::MemoryContextSwitchTo(old_context);
        pg_sys::CurrentResourceOwner = old_owner;
        if let Some(end) = outer {
            enable_timeout_at(STATEMENT_TIMEOUT, end);
        }
        outcome
    }
}
