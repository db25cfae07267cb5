//! A kept database dropped for good: by `purge_dropped` (from a background
//! worker: DROP DATABASE cannot run inside a function's transaction) and by
//! the audit writer once the entry expires.

use super::database::database_row;
use super::{check_caller, file, held, held_entry};
use crate::pg;
use aas_policy::recycle as policy;
use aas_policy::EventKind;
use file::Entry;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CString;

/// `purge_dropped(id)`: drops the kept database for good, now. DROP
/// DATABASE cannot run in a function's transaction, so a background worker
/// runs it, in a transaction of its own, and this waits for it.
pub fn purge(id: i64) -> String {
    check_caller("purge_dropped");
    if let Some(k) = super::entries::entry(id) {
        let said = if k.holds_rows() {
            super::rows::drop_copies(id, &k.copies());
            format!(
                "recycle bin entry {id} purged: the rows of {} ({} by {}) are gone for good",
                k.object,
                policy::rows_verb_past(&k.kind),
                k.dropped_by
            )
        } else {
            if let Err(e) = super::objects::drop_for_good(&k.tables) {
                pgrx::error!("recycle bin entry {id} cannot be purged: {e}");
            }
            super::entries::forget(id);
            format!(
                "recycle bin entry {id} purged: {} {} (dropped by {}) is gone for good",
                k.kind, k.object, k.dropped_by
            )
        };
        super::record_rows(&k, EventKind::Purged, said.clone());
        return said;
    }
    let e = held_entry(id);
    let who = pg::session_user_name();
    // SAFETY: reads a backend variable.
    let here = pg_sys::Datum::from(unsafe { pg_sys::MyDatabaseId });
    let extra = format!("{}\n{who}", e.id);
    match crate::workers::start(|| {
        BackgroundWorkerBuilder::new("ai_agent_safety: purge a recycled database")
            .set_type("ai_agent_safety purge")
            .set_library("ai_agent_safety")
            .set_function("aas_recycle_purge_main")
            .set_argument(Some(here))
            .set_extra(&extra)
            .enable_spi_access()
    }) {
        Some(w) => {
            let _ = w.wait_for_shutdown();
        }
        None => pgrx::error!(
            "ai_agent_safety: no background worker could be started to purge recycle bin entry {id} within 10 s (see max_worker_processes); try again"
        ),
    }
    // See the worker's commit.
    // SAFETY: processes pending invalidations and drops the catalog
    // snapshot, as a new command would.
    unsafe {
        pg_sys::AcceptInvalidationMessages();
        pg_sys::InvalidateCatalogSnapshot();
    }
    if database_row(pg_sys::Oid::from(e.oid)).is_some() {
        pgrx::error!(
            "ai_agent_safety: recycle bin entry {id} could not be purged; the server log says why"
        );
    }
    format!(
        "recycle bin entry {} purged: database {} (dropped by {}) is gone for good",
        e.id, e.object, e.dropped_by
    )
}

/// Drops a held entry's database for good, in a transaction of its own,
/// after recording why (the record goes first: nothing may fail after
/// dropdb, which removes the files at once). Runs in a background worker.
/// Left for a later pass, entry and all, while another session holds a
/// lock on the database.
fn drop_for_good(e: &Entry, actor: &str, event: EventKind, reason: &str) {
    let recycled = CString::new(e.recycled.clone()).expect("a database name has no NUL");
    let p = recycled.as_ptr();
    let done = BackgroundWorker::transaction(|| {
        if !held(e) {
            return true;
        }
        // A session holding a lock on the database would hold this worker
        // (the audit writer, at an expiry) for as long as it liked: the
        // entry waits for a later pass instead.
        if !try_lock_database_for_drop(pg_sys::Oid::from(e.oid)) {
            pgrx::log!(
                "ai_agent_safety: recycle bin entry {}: another session holds a lock on database {}; it is dropped at a later pass",
                e.id,
                e.recycled
            );
            return false;
        }
        let line = Spi::get_one_with_args::<String>(
            "INSERT INTO ai_agent_safety.audit_row \
               (ts, database, session_user_name, current_user_name, task_id, source, event, decision, operation, object, reason, token) \
             VALUES (pg_catalog.now(), pg_catalog.current_database(), $1, $1, $2, 'recycle', $3, 'info', 'DROP DATABASE', $4, $5, $6::uuid) \
             RETURNING pg_catalog.row_to_json(audit_row)::text",
            &[
                actor.into(),
                e.task_id.clone().into(),
                event.as_str().into(),
                e.object.as_str().into(),
                reason.into(),
                e.token.clone().into(),
            ],
        );
        match line {
            Ok(Some(l)) => pgrx::log!("ai_agent_safety: {l}"),
            other => pgrx::log!(
                "ai_agent_safety: recording the purge of {} failed: {other:?}",
                e.recycled
            ),
        }
        // SAFETY: inside a transaction that does nothing after it, as DROP
        // DATABASE runs; missing_ok, and ending any session (none can
        // connect to a closed database but a worker).
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| pg_sys::dropdb(p, true, true));
        }
        true
    });
    if done {
        file::remove(e.id);
    }
}

/// The purge worker: connected to the database purge_dropped was called
/// in, it drops the entry named in its extra data (`<id>\n<who>`).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aas_recycle_purge_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let extra = BackgroundWorker::get_extra().to_string();
    let (id, who) = extra.split_once('\n').unwrap_or((extra.as_str(), ""));
    // As the bootstrap superuser, which may drop any database; with
    // BGWORKER_BYPASS_ALLOWCONN, as the other workers: a database closed to
    // connections after purge_dropped was called in it still gets its purge.
    crate::pg::worker::connect(arg.value() as u32, pg_sys::BGWORKER_BYPASS_ALLOWCONN);
    let Some(e) = id.parse::<u32>().ok().and_then(file::read) else {
        return;
    };
    drop_for_good(
        &e,
        who,
        EventKind::Purged,
        &format!(
            "{who} purged recycle bin entry {} for good: database {} (dropped by {} at {})",
            e.id, e.object, e.dropped_by, e.at
        ),
    );
}

/// The audit writer of database `dboid`: drops the entries kept from it
/// whose retention has passed. Runs outside any transaction.
pub fn tend(dboid: u32) {
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    // Looked at once a second at most: the writer loops far more often.
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    if now - LAST.load(std::sync::atomic::Ordering::Relaxed) < 1_000_000 {
        return;
    }
    LAST.store(now, std::sync::atomic::Ordering::Relaxed);
    // Kept TRUNCATEs of this database (a failure here must not end the
    // writer: it is logged, and tried again next time).
    BackgroundWorker::transaction(|| super::rows::expire_all(super::objects::drop_for_good));
    for e in file::list()
        .into_iter()
        .filter(|e| e.from_database == dboid && policy::expired(e.expires_at_us, now))
    {
        let still = BackgroundWorker::transaction(|| held(&e));
        if !still {
            // Restored, or its DROP rolled back: the file names nothing.
            if now - e.at_us > 60_000_000 {
                file::remove(e.id);
            }
            continue;
        }
        drop_for_good(
            &e,
            &e.dropped_by,
            EventKind::Expired,
            &format!(
                "recycle bin entry {} expired at {}: database {} (dropped by {} at {}) dropped for good",
                e.id, e.expires_at, e.object, e.dropped_by, e.at
            ),
        );
    }
}

/// When the next entry kept from database `dboid` (a database) or in it
/// (a TRUNCATE's rows) expires. Runs outside any transaction.
pub fn next_expiry(dboid: u32) -> Option<i64> {
    let rows = BackgroundWorker::transaction(super::rows::next_expiry);
    file::list()
        .into_iter()
        .filter(|e| e.from_database == dboid)
        .map(|e| e.expires_at_us)
        .chain(rows)
        .min()
}

/// Takes the lock DROP DATABASE takes on a database (held to the end of the
/// transaction) only if it is free: false, and nothing taken, when another
/// session holds a lock on the database object (a COMMENT ON DATABASE in a
/// transaction left open, say). For the extension's workers, which must
/// not wait on a session's locks.
fn try_lock_database_for_drop(db: pg_sys::Oid) -> bool {
    // As SET_LOCKTAG_OBJECT for a shared object (no database), which
    // LockSharedObject and dropdb use.
    let tag = pg_sys::LOCKTAG {
        locktag_field1: 0,
        locktag_field2: pg_sys::DatabaseRelationId.to_u32(),
        locktag_field3: db.to_u32(),
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    // SAFETY: the lock manager, inside a transaction, never waiting; then
    // the invalidations LockSharedObject takes in after its lock.
    unsafe {
        let got = pg_sys::LockAcquire(&tag, pg_sys::AccessExclusiveLock as i32, false, true);
        if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
            return false;
        }
        pg_sys::AcceptInvalidationMessages();
    }
    true
}
