//! Reviewed transactions, in the agent's backend: `begin_review` makes the
//! transaction a review; its statements are recorded with the rows each
//! changed (counted as a row cap counts them, `row_count`); COMMIT is
//! refused; at PREPARE TRANSACTION the review's metadata is written beside
//! the prepared transaction (`file`). Finishing a prepared review (COMMIT
//! or ROLLBACK PREPARED, expiry, the announcement) is `finish`'s. What a
//! review covers and who may finish it is `aas_policy::review`'s.

pub mod file;
pub mod finish;

use crate::row_count::{Tally, Via};
use crate::{audit, dbfacts, identity, pg, settings};
use aas_policy::review as policy;
use aas_policy::{EventKind, Source, Verdict};
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use serde_json::{json, Value};

// SAFETY: the declaration of twophase.h's setting variable (not in pgrx's
// bindings); the same in 15 to 18, only read.
extern "C" {
    static max_prepared_xacts: std::ffi::c_int;
}

/// A statement of the review being counted.
struct Counting {
    query: *mut pg_sys::QueryDesc,
    subxact: pg_sys::SubTransactionId,
    text: String,
    tally: Tally,
}

struct Recorded {
    subxact: pg_sys::SubTransactionId,
    entry: Value,
    rows: i64,
}

struct Review {
    task: String,
    reason: Option<String>,
    subxact: pg_sys::SubTransactionId,
    begun_at: i64,
    /// The PREPARE TRANSACTION's gid: as text, and its bytes.
    gid: Option<(String, Vec<u8>)>,
    statements: Vec<Recorded>,
    counting: Option<Counting>,
    /// The metadata file, once written (at PRE_PREPARE).
    file: Option<std::path::PathBuf>,
}

// SAFETY: a backend is single-threaded; set by begin_review, cleared when
// its transaction ends or the subtransaction it began in rolls back.
static mut REVIEW: Option<Review> = None;

// SAFETY: see REVIEW; the one place it is borrowed from.
fn review() -> &'static mut Option<Review> {
    // SAFETY: see REVIEW.
    unsafe { &mut *std::ptr::addr_of_mut!(REVIEW) }
}

/// Is this transaction a review? (Every statement of an agent session asks.)
#[inline]
pub fn active() -> bool {
    review().is_some()
}

/// The review's task, when this transaction is one.
pub fn task() -> Option<String> {
    review().as_ref().map(|r| r.task.clone())
}

/// Is a statement of the review being counted?
#[inline]
pub fn counting() -> bool {
    review().as_ref().is_some_and(|r| r.counting.is_some())
}

fn subxact() -> pg_sys::SubTransactionId {
    // SAFETY: reads a backend variable.
    unsafe { crate::unguarded::GetCurrentSubTransactionId() }
}

/// `ai_agent_safety.begin_review(task_id, reason)`: makes the current
/// transaction a review, or raises why it cannot be one.
pub fn begin(task: Option<&str>, reason: Option<&str>) -> String {
    let here = dbfacts::current();
    let facts = policy::BeginFacts {
        is_agent: identity::session_user_is_agent(),
        // SAFETY: read transaction state.
        in_transaction_block: unsafe { pg_sys::IsTransactionBlock() },
        require_approval: here.require_approval,
        database: here.name.clone(),
        // SAFETY: reads a server setting's variable.
        max_prepared_transactions: unsafe { max_prepared_xacts },
        already: self::task(),
        task: task.map(str::to_string),
    };
    if let Some((message, hint)) = policy::begin_error(&facts) {
        let code = if facts
            .task
            .as_deref()
            .is_none_or(|t| t.trim().is_empty() || t.chars().count() > 200)
        {
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        } else {
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        };
        raise(code, message, hint);
    }
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > 1000) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "the reason is longer than 1000 characters".into(),
            "Give a shorter reason; the statements themselves are recorded with the review.".into(),
        );
    }
    let task = task.unwrap_or_default().trim().to_string();
    let gid = policy::suggested_gid(&task);
    *review() = Some(Review {
        task: task.clone(),
        reason: reason.map(str::to_string),
        subxact: subxact(),
        // SAFETY: reads the clock.
        begun_at: unsafe { pg_sys::GetCurrentTimestamp() },
        gid: None,
        statements: Vec::new(),
        counting: None,
        file: None,
    });
    audit::record_for_task(
        audit::Event {
            reason: format!(
                "{} began a review (task {task}){}: its DELETE and UPDATE run without tokens and take effect only if an approver commits the prepared transaction",
                pg::session_user_name(),
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
            ..audit::Event::new(Source::Review, EventKind::Begun, Verdict::Info)
        },
        &task,
    );
    format!(
        "review of task {task} begun: DELETE and UPDATE now run without tokens; end the transaction with PREPARE TRANSACTION '{gid}' for an approver to commit"
    )
}

fn raise(code: PgSqlErrorCode, message: String, hint: String) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(code, message, "ai_agent_safety")
        .set_hint(hint)
        .report(pgrx::PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Starts counting a writing statement of the review (`text` is its
/// statement text), unless one is being counted already (it then counts
/// with that one).
///
/// # Safety
/// `qd` is the query being started, with its plan; inside a transaction.
pub unsafe fn start(qd: *mut pg_sys::QueryDesc, text: String) {
    let sub = subxact();
    if let Some(r) = review().as_mut().filter(|r| r.counting.is_none()) {
        let mut tally = Tally::default();
        // SAFETY: per this function's contract.
        unsafe { tally.track(qd, Via::Statement) };
        r.counting = Some(Counting {
            query: qd,
            subxact: sub,
            text,
            tally,
        });
    }
}

/// Shows a query that is starting to the statement being counted.
///
/// # Safety
/// `qd` is a valid QueryDesc with its plan, inside a transaction.
pub unsafe fn observe(qd: *mut pg_sys::QueryDesc, fk: bool) {
    if let Some(c) = review().as_mut().and_then(|r| r.counting.as_mut()) {
        // SAFETY: per this function's contract.
        let via = crate::row_count::via(unsafe { (*(*qd).plannedstmt).commandType }, fk);
        // SAFETY: per this function's contract.
        unsafe { c.tally.track(qd, via) };
    }
}

/// A query finished: rows it reported count for a foreign table it wrote;
/// the counted statement itself is recorded with its rows per table.
///
/// # Safety
/// `qd` is the QueryDesc of a query that just finished (its EState live).
pub unsafe fn finished(qd: *mut pg_sys::QueryDesc) {
    let Some(r) = review().as_mut() else { return };
    let Some(c) = r.counting.as_mut() else { return };
    // SAFETY: per this function's contract.
    let processed = unsafe { crate::row_count::reported(qd) };
    // SAFETY: per this function's contract.
    unsafe { c.tally.finished(qd, processed) };
    if c.query != qd {
        return;
    }
    let c = r.counting.take().expect("checked above");
    // SAFETY: per this function's contract.
    let command = unsafe { (*qd).operation };
    let mut tables = Vec::new();
    let mut rows = 0;
    for (relid, n, via) in c.tally.per_table() {
        if n.total() == 0 && via != Via::Statement {
            continue;
        }
        rows += n.total().max(0);
        tables.push(crate::row_count::entry(relid, n, via, command));
    }
    // Rows no count here sees (another server's, written where the query
    // does not report them, or a foreign key's action there): named for
    // the approver, who sees them as not counted.
    let mut entry = json!({"statement": cut(&c.text), "rows": rows, "tables": tables});
    let uncounted: Vec<String> = [c.tally.uncountable(), c.tally.cascades_elsewhere()]
        .into_iter()
        .flatten()
        .map(pg::relation_display)
        .collect();
    if !uncounted.is_empty() {
        entry["not_counted"] = json!(uncounted);
    }
    r.statements.push(Recorded {
        subxact: c.subxact,
        entry,
        rows,
    });
}

fn cut(text: &str) -> String {
    audit::cut_statement(text).into_owned()
}

/// A utility statement of the review (an agent's, judged): COMMIT is
/// refused, PREPARE TRANSACTION names the review, and any other that
/// writes is recorded (with no row counts).
///
/// # Safety
/// `node` is a valid utility statement.
pub unsafe fn utility(node: *mut pg_sys::Node, text: &str, writes: bool) {
    let Some(r) = review().as_mut() else { return };
    // SAFETY: per this function's contract.
    if unsafe { (*node).type_ } == pg_sys::NodeTag::T_TransactionStmt {
        // SAFETY: a TransactionStmt node.
        let t = unsafe { &*(node as *const pg_sys::TransactionStmt) };
        match t.kind {
            pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT => refuse_commit(),
            pg_sys::TransactionStmtKind::TRANS_STMT_PREPARE => {
                // SAFETY: a PREPARE TRANSACTION's gid is a C string.
                let (text, raw) = unsafe {
                    (
                        pg::cstr(t.gid),
                        std::ffi::CStr::from_ptr(t.gid).to_bytes().to_vec(),
                    )
                };
                if file::gid_used(&raw) {
                    let d = policy::gid_reused_denial(&text, &r.task);
                    refuse_recorded(d, "PREPARE TRANSACTION");
                }
                r.gid = Some((text, raw));
            }
            _ => {}
        }
        return;
    }
    // SAFETY: per this function's contract.
    if unsafe { (*node).type_ } == pg_sys::NodeTag::T_LockStmt {
        // SAFETY: a LockStmt node.
        let mode = unsafe { (*(node as *const pg_sys::LockStmt)).mode };
        if mode > pg_sys::RowExclusiveLock as i32 {
            let name = LOCK_MODES
                .get(mode as usize)
                .copied()
                .unwrap_or("a stronger");
            let d = policy::lock_denial(&pg::session_user_name(), &r.task, name);
            refuse_recorded(d, "LOCK TABLE");
        }
    }
    if writes {
        r.statements.push(Recorded {
            subxact: subxact(),
            entry: json!({"statement": cut(text), "rows": null, "tables": []}),
            rows: 0,
        });
    }
}

/// LOCK TABLE's modes by number (lockdefs.h), as LOCK TABLE writes them.
const LOCK_MODES: [&str; 9] = [
    "",
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
];

/// Refuses a statement of the review (recorded).
fn refuse_recorded(d: aas_policy::Denial, operation: &str) -> ! {
    let task = task().unwrap_or_default();
    audit::record_for_task(
        audit::Event {
            operation: operation.into(),
            reason: d.reason(),
            ..audit::Event::new(Source::Review, EventKind::Refused, Verdict::Refuse)
        },
        &task,
    );
    pg::refuse(d)
}

/// Refuses to commit the review (recorded).
fn refuse_commit() -> ! {
    let d = policy::commit_denial(&pg::session_user_name(), &task().unwrap_or_default());
    refuse_recorded(d, "COMMIT")
}

/// A change the review allowed that no counted statement shows (a large
/// object written by `lo_put`, say): listed by its statement and what it
/// does, with no row counts.
pub fn note(operation: &str, text: &str) {
    if let Some(r) = review().as_mut() {
        r.statements.push(Recorded {
            subxact: subxact(),
            entry: json!({"statement": cut(text), "operation": operation, "rows": null, "tables": []}),
            rows: 0,
        });
    }
}

/// PRE_PREPARE: the review's metadata goes to disk before the transaction
/// is prepared (an error here stops the PREPARE).
fn write_metadata() {
    let Some(r) = review().as_mut() else { return };
    let Some((gid, gid_bytes)) = r.gid.clone() else {
        pgrx::error!(
            "ai_agent_safety: the review's PREPARE TRANSACTION was not seen; nothing was prepared"
        );
    };
    // A lock stronger than row changes take, on another role's table (a
    // foreign key the review added to one takes SHARE ROW EXCLUSIVE),
    // would block it while a person reads.
    if let Some((table, mode)) = strong_lock_on_others() {
        let mode = mode.trim_end_matches("Lock");
        refuse_recorded(
            policy::held_lock_denial(&pg::session_user_name(), &r.task, &table, mode),
            "PREPARE TRANSACTION",
        );
    }
    // SAFETY: reads transaction state; PrepareTransaction assigned the xid.
    let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() };
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let expires = now.saturating_add(settings::review_ttl_s().saturating_mul(1_000_000));
    let statements: Vec<Value> = r.statements.iter().map(|s| s.entry.clone()).collect();
    let meta = file::Meta {
        gid: gid.clone(),
        gid_bytes,
        xid: xid.into_inner(),
        database: dbfacts::current().name,
        requested_by: pg::session_user_name(),
        task: r.task.clone(),
        reason: r.reason.clone(),
        begun_at: aas_policy::time::iso_utc(r.begun_at),
        prepared_at: aas_policy::time::iso_utc(now),
        prepared_at_us: now,
        expires_at_us: expires,
        expires_at: aas_policy::time::iso_utc(expires),
        rows: r.statements.iter().map(|s| s.rows).sum(),
        statements: Value::Array(statements),
    };
    // SAFETY: reads a backend variable.
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    match file::write(dboid, &meta) {
        Ok(path) => r.file = Some(path),
        Err(e) => pgrx::error!(
            "ai_agent_safety: could not write the review's metadata ({e}); nothing was prepared"
        ),
    }
    audit::record_for_task(
        audit::Event {
            operation: "PREPARE TRANSACTION".into(),
            object: format!("review '{gid}'"),
            reason: format!(
                "{} prepared review '{gid}' (task {}): {} statements, {} rows; it waits for an approver's COMMIT PREPARED until {}",
                meta.requested_by,
                meta.task,
                r.statements.len(),
                meta.rows,
                meta.expires_at
            ),
            ..audit::Event::new(Source::Review, EventKind::Prepared, Verdict::Info)
        },
        &meta.task,
    );
}

/// A relation lock this transaction holds, stronger than ROW EXCLUSIVE, on
/// a relation the session's role does not own: (relation, mode).
fn strong_lock_on_others() -> Option<(String, String)> {
    // PRE_PREPARE runs with no active snapshot; the query needs one.
    // SAFETY: pushed and popped around the query (an error aborts the
    // transaction, which pops it).
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let found = crate::privileged::run(|| {
        pgrx::spi::Spi::connect(|c| {
            let r = c.select(
                "SELECT l.relation::pg_catalog.regclass::text, l.mode FROM pg_catalog.pg_locks l \
                   JOIN pg_catalog.pg_class c ON c.oid = l.relation \
                  WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted \
                    AND l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock') \
                    AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user) \
                    AND c.relnamespace IS DISTINCT FROM pg_catalog.to_regnamespace('ai_agent_safety_recycle') \
                    AND NOT EXISTS (SELECT FROM pg_catalog.pg_class b \
                                     WHERE b.relnamespace = pg_catalog.to_regnamespace('ai_agent_safety_recycle') \
                                       AND b.reltoastrelid IN (c.oid, (SELECT i.indrelid FROM pg_catalog.pg_index i \
                                                                        WHERE i.indexrelid = c.oid))) \
                  ORDER BY 1 LIMIT 1",
                None,
                &[],
            )?;
            let mut out = None;
            for row in r {
                if let (Some(t), Some(m)) = (row.get::<String>(1)?, row.get::<String>(2)?) {
                    out = Some((t, m));
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    })
    .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: reading the review's locks: {e}"));
    // SAFETY: the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
    found
}

/// Unguarded: every transaction of every session passes here, and only a
/// review's PRE_COMMIT and PRE_PREPARE take the guarded path (they may
/// raise: the transaction then aborts).
// SAFETY: called from the transaction callback (hooks); without a review it returns at once, and otherwise it only clears state or calls the guarded `before_end`.
pub(crate) unsafe extern "C-unwind" fn on_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if !active() {
        return;
    }
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            // SAFETY: called from the transaction callback, inside a transaction.
            unsafe { before_end(event) }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            // A PREPARE that failed after the file was written.
            if let Some(f) = review().as_ref().and_then(|r| r.file.as_ref()) {
                file::remove(f);
            }
            *review() = None;
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => *review() = None,
        _ => {}
    }
}

/// A review's transaction is about to commit (refused: an implicit commit,
/// the end of a multi-statement query, say) or to be prepared (its
/// metadata is written).
#[pgrx::pg_guard]
// SAFETY: called from `on_xact` at PRE_COMMIT or PRE_PREPARE, where raising aborts the transaction; #[pg_guard] turns panics into errors.
unsafe extern "C-unwind" fn before_end(event: pg_sys::XactEvent::Type) {
    if event == pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE {
        write_metadata();
    } else {
        refuse_commit();
    }
}

// SAFETY: called from the subtransaction callback (hooks); it only trims state.
pub(crate) unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event != pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        return;
    }
    let gone = match review().as_mut() {
        None => return,
        Some(r) if r.subxact >= sub => true,
        Some(r) => {
            r.statements.retain(|s| s.subxact < sub);
            if r.counting.as_ref().is_some_and(|c| c.subxact >= sub) {
                r.counting = None;
            }
            false
        }
    };
    if gone {
        *review() = None;
    }
}
