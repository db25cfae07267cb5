//! The background writers that move spooled events into ai_agent_safety.audit_log.
//!
//! - The launcher (static worker, no database) checks the spool every second and
//!   starts a writer for any database with pending events that has none. This
//!   also recovers events left by a crash or a restart.
//! - A writer (dynamic worker, one per database) rotates its database's spool
//!   every 100 ms, loads each closed file in one transaction together with the
//!   file's name in audit_spool_done (so a file is loaded exactly once, even if
//!   the writer dies between commit and unlink), then deletes it. It also purges
//!   events older than ai_agent_safety.audit_retention and records expired tokens
//!   (when it starts, then every 60 s).
//! - Backends start a writer themselves when they spool an event and none runs.
//! - A writer retires when its spool has been empty for a while (sooner when
//!   another database waits for a worker slot), so writers never hold all of
//!   max_worker_processes: a cluster can have any number of audited databases.
//!   A retiring writer leaves the time its database next needs maintenance (a
//!   granted token's expiry, its oldest event passing the retention); the
//!   launcher starts a writer then.

use super::spool::{self, Counters, SPOOL};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::time::Duration;

/// A writer retires after its spool has been empty this long...
const IDLE_RETIRE_US: i64 = 5_000_000;
/// ...or this long, when another database waits for a worker slot.
const IDLE_RETIRE_CROWDED_US: i64 = 200_000;

/// True inside a writer while it purges old events: the append-only trigger
/// lets exactly this through.
static mut PURGING: bool = false;

pub fn purging() -> bool {
    unsafe { PURGING }
}

/// Registers the launcher. Called from `_PG_init` (postmaster).
pub fn register_launcher() {
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
pub fn start(dboid: u32) -> bool {
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
    SPOOL.exclusive().launcher_latch = unsafe { pg_sys::MyLatch as usize };
    let mut logged_no_worker = false;
    let mut pause = Duration::from_millis(1000);
    while BackgroundWorker::wait_latch(Some(pause)) {
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            // The retention may have changed: every sleeping database gets a
            // maintenance pass now.
            let mut shared = SPOOL.exclusive();
            for w in shared.wakes.iter_mut().filter(|w| w.dboid != 0) {
                w.at = now;
            }
        }
        let mut no_worker = false;
        for db in spool::spooled_databases() {
            if !spool::pending(db) {
                continue;
            }
            if !database_exists(db) {
                drop_spool_of_missing_database(db);
                continue;
            }
            let claim = {
                let mut shared = SPOOL.exclusive();
                spool::claim(&mut shared, db, true)
            };
            if claim && !start(db) {
                no_worker = true;
            }
        }
        // Maintenance of databases whose writer retired.
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
        for db in due {
            if !database_exists(db) {
                continue;
            }
            let claim = {
                let mut shared = SPOOL.exclusive();
                let c = spool::claim(&mut shared, db, true);
                if !c && !shared.writers.iter().any(|s| s.dboid == db && s.state != 0) {
                    // No room in the writer table: try again in a second.
                    spool::set_wake(&mut shared, db, Some(now + 1_000_000));
                }
                c
            };
            if claim && !start(db) {
                no_worker = true;
            }
        }
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

fn database_exists(dboid: u32) -> bool {
    BackgroundWorker::transaction(|| unsafe {
        !pg_sys::get_database_name(pg_sys::Oid::from(dboid)).is_null()
    })
}

fn drop_spool_of_missing_database(dboid: u32) {
    let lines = spool::closed_files(dboid)
        .into_iter()
        .chain(std::iter::once(spool::current_path(dboid)))
        .filter_map(|f| std::fs::read(f).ok())
        .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
        .sum::<u64>();
    let _ = std::fs::remove_dir_all(spool::db_dir(dboid));
    Counters::add(&SPOOL.share().counters.dropped, lines);
    pgrx::log!("ai_agent_safety: database oid {dboid} no longer exists; {lines} spooled audit events for it were dropped");
}

#[pg_guard]
unsafe extern "C-unwind" fn free_slot(_code: i32, arg: pg_sys::Datum) {
    let dboid = arg.value() as u32;
    let mut shared = SPOOL.exclusive();
    for s in shared.writers.iter_mut() {
        if s.dboid == dboid && s.pid == pg_sys::MyProcPid {
            *s = spool::WriterSlot::default();
        }
    }
}

fn set_state(dboid: u32, state: u8) {
    let mut shared = SPOOL.exclusive();
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let pid = unsafe { pg_sys::MyProcPid };
    if let Some(s) = shared
        .writers
        .iter_mut()
        .find(|s| s.dboid == dboid && s.pid == pid)
    {
        s.state = state;
        s.since = now;
        // Kept after this process exits (free_slot matches on the pid).
        s.pid = 0;
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aas_audit_writer_main(arg: pg_sys::Datum) {
    let dboid = arg.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    {
        let mut shared = SPOOL.exclusive();
        let me = unsafe { pg_sys::MyProcPid };
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let other_alive = shared.writers.iter().any(|s| {
            s.dboid == dboid && s.state == 2 && s.pid != me && unsafe { libc_kill0(s.pid) }
        });
        if other_alive {
            return;
        }
        let slot = match shared
            .writers
            .iter()
            .position(|s| s.dboid == dboid && s.state != 0)
        {
            Some(i) => Some(i),
            None => shared.writers.iter().position(|s| s.state == 0),
        };
        match slot {
            Some(i) => {
                shared.writers[i] = spool::WriterSlot {
                    dboid,
                    state: 2,
                    pid: me,
                    since: now,
                    no_worker: false,
                }
            }
            None => return,
        }
        shared.writer_restarts += 1;
    }
    unsafe { pg_sys::before_shmem_exit(Some(free_slot), pg_sys::Datum::from(dboid)) };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);

    let mut seq = 0u64;
    let mut last_maintenance = 0i64;
    let mut busy_at = unsafe { pg_sys::GetCurrentTimestamp() };
    while BackgroundWorker::wait_latch(Some(Duration::from_millis(100))) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !extension_present() {
            // Keep the events; the launcher retries later.
            set_state(dboid, 3);
            return;
        }
        let loaded = drain(dboid, &mut seq);
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        if now - last_maintenance > 60_000_000 {
            maintenance();
            last_maintenance = now;
        }
        if loaded {
            busy_at = now;
            continue;
        }
        let idle = now - busy_at;
        let crowded = spool::someone_waits(&SPOOL.share());
        if idle >= IDLE_RETIRE_US || (crowded && idle >= IDLE_RETIRE_CROWDED_US) {
            let wake = next_maintenance();
            if retire(dboid, wake) {
                return;
            }
            busy_at = now;
        }
    }
    // SIGTERM (writer stop or server shutdown): load what is there, then go.
    if extension_present() {
        drain(dboid, &mut seq);
        let wake = next_maintenance();
        let mut shared = SPOOL.exclusive();
        spool::set_wake(&mut shared, dboid, wake);
    }
}

/// Frees this writer's slot if the spool is empty (under the spool lock, so an
/// event spooled from now on starts a new writer), leaving the database's next
/// maintenance time for the launcher. False when events arrived meanwhile.
fn retire(dboid: u32, wake: Option<i64>) -> bool {
    let mut shared = SPOOL.exclusive();
    if spool::pending(dboid) {
        return false;
    }
    let me = unsafe { pg_sys::MyProcPid };
    for s in shared.writers.iter_mut() {
        if s.dboid == dboid && s.pid == me {
            *s = spool::WriterSlot::default();
        }
    }
    spool::set_wake(&mut shared, dboid, wake);
    let latch = shared.launcher_latch;
    let wake_launcher = spool::someone_waits(&shared);
    drop(shared);
    if wake_launcher && latch != 0 {
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
    true
}

/// When this database next needs the writer's maintenance with no events
/// coming in: a granted, unused token expires, or the oldest event passes the
/// retention (one second late, so the moment has surely passed).
fn next_maintenance() -> Option<i64> {
    // Unix epoch microseconds to PostgreSQL's (2000-01-01).
    const PG_EPOCH_US: i64 = 946_684_800_000_000;
    BackgroundWorker::transaction(|| {
        Spi::get_one::<i64>(
            "SELECT (pg_catalog.date_part('epoch', x) * 1000000)::int8
               FROM (SELECT LEAST(
                        (SELECT pg_catalog.min(expires_at) FROM ai_agent_safety.tokens
                          WHERE state = 'granted' AND used_at IS NULL AND NOT expiry_logged),
                        (SELECT pg_catalog.min(ts) FROM ai_agent_safety.audit_log)
                          + pg_catalog.current_setting('ai_agent_safety.audit_retention')::interval
                     ) AS x) t
              WHERE pg_catalog.isfinite(x)",
        )
        .ok()
        .flatten()
    })
    .map(|unix_us| unix_us - PG_EPOCH_US + 1_000_000)
}

unsafe fn libc_kill0(pid: i32) -> bool {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    pid > 0 && kill(pid, 0) == 0
}

fn extension_present() -> bool {
    BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>(
            "SELECT pg_catalog.to_regclass('ai_agent_safety.audit_spool_done') IS NOT NULL",
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    })
}

/// Loads everything spooled so far. True when there was anything.
fn drain(dboid: u32, seq: &mut u64) -> bool {
    spool::rotate(dboid, seq);
    let files = spool::closed_files(dboid);
    for f in &files {
        load_file(f);
    }
    !files.is_empty()
}

/// Loads one closed spool file, exactly once, with COPY.
fn load_file(path: &std::path::Path) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    // A line cut inside a multi-byte character is not UTF-8; it fails the
    // whole-line check below like any other cut line, and must not keep the
    // rest of the file from loading.
    let text = String::from_utf8_lossy(&bytes);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    // A line cut by a crash mid-write runs into the next one (or ends the
    // file without a newline): left out and counted as dropped, so the other
    // lines still load. Lines are checked as they are split; only when some
    // is left out is a clean copy of the file written for COPY.
    let whole_file = text.ends_with('\n');
    let mut lines: Vec<&str> = text.split_terminator('\n').collect();
    let unterminated = if whole_file { None } else { lines.pop() };
    let total = lines.len() as u64 + unterminated.is_some() as u64;
    lines.retain(|l| aas_policy::audit_record::copy_line_is_whole(l));
    let good = lines.len() as u64;
    let bad = total - good;
    // A file whose load keeps failing (say, a line that passes the check but
    // that COPY rejects, after an OS crash) must not stop the audit log for
    // good: the attempt count survives the writer, and after three failed
    // attempts the file is set aside as <name>.bad and its lines are counted
    // as dropped (audit_stats.events_dropped).
    let attempts_path = path.with_extension("attempts");
    let attempts: u32 = std::fs::read_to_string(&attempts_path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    if attempts >= 3 {
        let _ = std::fs::rename(path, path.with_extension("bad"));
        let _ = std::fs::remove_file(&attempts_path);
        Counters::add(&SPOOL.share().counters.dropped, total);
        pgrx::log!(
            "ai_agent_safety: spool file {name} failed to load 3 times; set aside as {}.bad, its {total} events are counted as dropped",
            name.trim_end_matches(".copy"),
        );
        return;
    }
    let _ = std::fs::write(&attempts_path, (attempts + 1).to_string());
    let clean_path = path.with_extension("clean");
    let source = if bad == 0 {
        path
    } else {
        let mut clean = lines.join("\n");
        clean.push('\n');
        if let Err(e) = std::fs::write(&clean_path, clean) {
            pgrx::log!(
                "ai_agent_safety: cannot write {}: {e}; will retry",
                clean_path.display()
            );
            return;
        }
        clean_path.as_path()
    };
    // The path is relative to the data directory (the writer's working
    // directory) and made only of digits, dashes, dots and the spool's name.
    let copy = format!(
        "COPY ai_agent_safety.audit_log \
           (ts, database, pid, client_addr, application_name, session_user_name, current_user_name, task_id, \
            source, event, decision, operation, object, statement, reason, token) \
         FROM '{}' WITH (FORMAT text, ENCODING 'UTF8')",
        source.display()
    );
    let loaded = BackgroundWorker::transaction(|| {
        Spi::connect_mut(|c| {
            let fresh = c.update(
                "INSERT INTO ai_agent_safety.audit_spool_done (file) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1",
                None,
                &[name.clone().into()],
            )?;
            if fresh.len() == 1 && good > 0 {
                c.update(&copy, None, &[])?;
            }
            Ok::<bool, pgrx::spi::Error>(fresh.len() == 1)
        })
    });
    let _ = std::fs::remove_file(&clean_path);
    match loaded {
        Ok(fresh) => {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(&attempts_path);
            let shared = SPOOL.share();
            if fresh {
                Counters::add(&shared.counters.written, good);
            }
            Counters::add(&shared.counters.dropped, bad);
        }
        Err(e) => pgrx::log!("ai_agent_safety: loading {name} failed, will retry: {e}"),
    }
}

/// Retention purge and token-expiry events.
fn maintenance() {
    BackgroundWorker::transaction(|| {
        unsafe { PURGING = true };
        let r = Spi::connect_mut(|c| {
            c.update(
                "DELETE FROM ai_agent_safety.audit_log \
                  WHERE ts < pg_catalog.now() - pg_catalog.current_setting('ai_agent_safety.audit_retention')::interval",
                None,
                &[],
            )?;
            c.update(
                "DELETE FROM ai_agent_safety.audit_spool_done WHERE done_at < pg_catalog.now() - interval '7 days'",
                None,
                &[],
            )
            .map(|_| ())
        });
        unsafe { PURGING = false };
        if let Err(e) = r {
            pgrx::log!("ai_agent_safety: audit retention purge failed: {e}");
        }
        let expired = Spi::connect_mut(|c| {
            let t = c.update(
                "WITH e AS (UPDATE ai_agent_safety.tokens SET expiry_logged = true \
                             WHERE state = 'granted' AND used_at IS NULL AND NOT expiry_logged \
                               AND expires_at < pg_catalog.now() RETURNING *) \
                 INSERT INTO ai_agent_safety.audit_log \
                   (ts, database, session_user_name, current_user_name, task_id, source, event, decision, operation, object, reason, token) \
                 SELECT pg_catalog.now(), e.database, e.requested_by, e.requested_by, e.task_id, 'token', 'expired', 'info', \
                        e.operation, COALESCE(e.target_text, 'any object'), \
                        pg_catalog.format('approval token %s for %s on %s expired unused at %s', e.id, e.operation, \
                                          COALESCE(e.target_text, 'any object'), e.expires_at), e.id \
                   FROM e RETURNING pg_catalog.row_to_json(audit_log)::text",
                None,
                &[],
            )?;
            let mut lines = Vec::new();
            for row in t {
                if let Some(l) = row.get::<String>(1)? {
                    lines.push(l);
                }
            }
            Ok::<_, pgrx::spi::Error>(lines)
        });
        if let Ok(lines) = expired {
            for l in lines {
                pgrx::log!("ai_agent_safety: {l}");
            }
        }
    });
}
