//! The audit launcher: a static background worker (no database) that
//! starts a writer for every database whose spool has events and no writer,
//! and for every database whose retired writer left a maintenance time that
//! has come. This also recovers events left by a crash or a restart.
//! Backends start writers themselves through [`start_writer`] when they spool
//! an event and none runs.

use super::spool::{self, Counters, SPOOL};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::time::Duration;

/// Registers the launcher. Called from `_PG_init` (postmaster).
pub fn register() {
    BackgroundWorkerBuilder::new("ai_agent_safety audit launcher")
        .set_type("ai_agent_safety audit launcher")
        .set_library("ai_agent_safety")
        .set_function("aas_audit_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Starts a writer for a database (from a backend or the launcher). False when
/// no background worker slot was free: the slot is marked and retried.
pub fn start_writer(dboid: u32) -> bool {
    let r = BackgroundWorkerBuilder::new(&format!("ai_agent_safety audit writer {dboid}"))
        .set_type("ai_agent_safety audit writer")
        .set_library("ai_agent_safety")
        .set_function("aas_audit_writer_main")
        .set_argument(Some(pg_sys::Datum::from(dboid)))
        .enable_spi_access()
        .set_restart_time(None)
        .load_dynamic();
    if r.is_err() {
        spool::mark_no_worker(dboid);
        return false;
    }
    true
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aas_audit_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    // SAFETY: reads this process's latch pointer (in shared memory).
    SPOOL.exclusive().launcher_latch = unsafe { pg_sys::MyLatch as usize };
    let mut logged_no_worker = false;
    let mut pause = Duration::from_millis(1000);
    while BackgroundWorker::wait_latch(Some(pause)) {
        // A standby cannot write: its events wait in its spool until it is
        // promoted (PostgreSQL refuses an agent's writes there itself).
        // SAFETY: reads shared state; raises nothing.
        if unsafe { pg_sys::RecoveryInProgress() } {
            pause = Duration::from_millis(1000);
            continue;
        }
        let now = spool::now();
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a worker to reload its settings.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            // The retention may have changed: every sleeping database gets a
            // maintenance pass now.
            let mut shared = SPOOL.exclusive();
            for w in shared.wakes.iter_mut().filter(|w| w.dboid != 0) {
                w.at = now;
            }
        }
        free_idle_slots(now);
        let no_worker = start_pending() | start_due(now);
        if no_worker && !logged_no_worker {
            pgrx::log!("ai_agent_safety: no free background worker slot for an audit writer; events wait in the spool (raise max_worker_processes)");
        }
        logged_no_worker = no_worker;
        // While a database waits for a worker slot, look again soon: a slot
        // is free only once the postmaster has reaped a retired writer.
        pause = Duration::from_millis(if spool::someone_waits(&SPOOL.share()) {
            100
        } else {
            1000
        });
    }
}

/// Starts writers for databases with spooled events. True when one found no
/// free worker slot.
fn start_pending() -> bool {
    let mut no_worker = false;
    for db in spool::spooled_databases() {
        // Segments of backends that ended with everything taken (a crash
        // or a restart left them, or their writer had retired): removed
        // here, so they need no writer and no new event to go.
        super::segment::reap(&spool::db_dir(db));
        if !spool::pending(db) {
            continue;
        }
        if !database_exists(db) {
            drop_spool_of_missing_database(db);
            continue;
        }
        let claim = spool::claim(&mut SPOOL.exclusive(), db, true);
        if claim && !start_writer(db) {
            no_worker = true;
        }
    }
    no_worker
}

/// Starts writers for the maintenance of databases whose writer retired.
/// True when one found no free worker slot.
fn start_due(now: i64) -> bool {
    let due: Vec<u32> = {
        let mut shared = SPOOL.exclusive();
        let mut due = Vec::new();
        for w in shared.wakes.iter_mut() {
            if w.dboid != 0 && w.at <= now {
                due.push(w.dboid);
                *w = spool::Wake::default();
            }
        }
        due
    };
    let mut no_worker = false;
    for db in due {
        if !database_exists(db) {
            continue;
        }
        let claim = {
            let mut shared = SPOOL.exclusive();
            let c = spool::claim(&mut shared, db, true);
            if !c
                && !shared
                    .writers
                    .iter()
                    .any(|s| s.dboid == db && s.state != aas_policy::WriterState::Free)
            {
                // No room in the writer table: try again in a second.
                spool::set_wake(&mut shared, db, Some(now + 1_000_000));
            }
            c
        };
        if claim && !start_writer(db) {
            no_worker = true;
            // Still due: tried again on the next pass. (start_pending
            // retries only databases with events spooled; without this a
            // maintenance-only wake that found every worker slot taken was
            // lost, and with it a token's, a review's or a recycle bin
            // entry's expiry, until the database's next event.)
            spool::set_wake(&mut SPOOL.exclusive(), db, Some(now));
        }
    }
    no_worker
}

/// Frees writer slots that hold nothing: a writer started for a database
/// dropped before it connected never runs, and a start that never
/// completed (or a wait for CREATE EXTENSION) for a database whose spool
/// has since emptied waits for nothing; kept, such slots would pile up
/// until all 64 were taken and no database's events could load. A slot
/// is freed when its database is gone, or when it has waited 10 s with
/// nothing spooled (a new event claims one again).
fn free_idle_slots(now: i64) {
    let waiting: Vec<(u32, i64)> = SPOOL
        .share()
        .writers
        .iter()
        .filter(|s| {
            s.dboid != 0
                && matches!(
                    s.state,
                    aas_policy::WriterState::Starting
                        | aas_policy::WriterState::WaitingForExtension
                )
        })
        .map(|s| (s.dboid, s.since))
        .collect();
    for (db, since) in waiting {
        let gone = !database_exists(db);
        if !gone && (spool::pending(db) || now - since < 10_000_000) {
            continue;
        }
        let mut shared = SPOOL.exclusive();
        for s in shared.writers.iter_mut().filter(|s| {
            s.dboid == db
                && s.since == since
                && matches!(
                    s.state,
                    aas_policy::WriterState::Starting
                        | aas_policy::WriterState::WaitingForExtension
                )
        }) {
            *s = spool::WriterSlot::default();
        }
        if gone {
            for w in shared.wakes.iter_mut().filter(|w| w.dboid == db) {
                *w = spool::Wake::default();
            }
        }
    }
}

fn database_exists(dboid: u32) -> bool {
    // SAFETY: a catalog lookup by oid inside a transaction; NULL when missing.
    BackgroundWorker::transaction(|| unsafe {
        !pg_sys::get_database_name(pg_sys::Oid::from(dboid)).is_null()
    })
}

fn drop_spool_of_missing_database(dboid: u32) {
    let lines = spool::database_lines(dboid);
    Counters::add(&SPOOL.share().counters.dropped, lines);
    let _ = std::fs::remove_dir_all(spool::db_dir(dboid));
    pgrx::log!("ai_agent_safety: database oid {dboid} no longer exists; {lines} spooled audit events for it were dropped");
}
