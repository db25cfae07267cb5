//! The audit writer: a dynamic background worker per database that moves
//! spooled events into `ai_agent_safety.audit_log` (its tables).
//!
//! It rotates its database's spool every 100 ms and loads each closed file
//! (`loader`), runs the maintenance (`maintenance`) when it starts and then
//! every 60 s, and retires when its spool has been empty for a while (sooner
//! when another database waits for a worker slot), so writers never hold all
//! of max_worker_processes: a cluster can have any number of audited
//! databases. A retiring writer leaves the time its database next needs
//! maintenance (a granted token's expiry, its oldest event passing the
//! retention); the launcher starts a writer then.

use super::loader::Tables;
use super::spool::{self, SPOOL};
use super::{loader, maintenance, segment};
use aas_policy::WriterState;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::Duration;

/// How long the writer's steps other than the load (reviews, the recycle
/// bin's expiry, the maintenance) wait for a lock before they give up and
/// try again at a later pass: a session could otherwise hold the writer,
/// and every event of its database, with a lock on something a step must
/// drop (an agent's table whose default names a kept sequence, say: the
/// expiry's DROP ... CASCADE locks it). The load itself waits (`loader`),
/// and so does a review's announcement for NOTIFY's lock, which sessions
/// hold only while they commit (`review::finish`).
const STEP_LOCK_TIMEOUT: &std::ffi::CStr = c"50ms";

/// A writer retires after its spool has been empty this long...
const IDLE_RETIRE_US: i64 = 5_000_000;
/// ...or this long, when another database waits for a worker slot.
const IDLE_RETIRE_CROWDED_US: i64 = 200_000;

#[pg_guard]
// SAFETY: a before_shmem_exit callback; the spool lock is usable until shared memory detaches.
unsafe extern "C-unwind" fn free_slot(_code: i32, arg: pg_sys::Datum) {
    let dboid = arg.value() as u32;
    let me = my_pid();
    let mut shared = SPOOL.exclusive();
    for s in shared.writers.iter_mut() {
        if s.dboid == dboid && s.pid == me {
            *s = spool::WriterSlot::default();
        }
    }
}

fn set_state(dboid: u32, state: WriterState) {
    let mut shared = SPOOL.exclusive();
    let now = spool::now();
    let pid = my_pid();
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
        let me = my_pid();
        let now = spool::now();
        let other_alive = shared.writers.iter().any(|s| {
            s.dboid == dboid
                && s.state == WriterState::Running
                && s.pid != me
                && process_alive(s.pid)
        });
        if other_alive {
            return;
        }
        let slot = match shared
            .writers
            .iter()
            .position(|s| s.dboid == dboid && s.state != WriterState::Free)
        {
            Some(i) => Some(i),
            None => shared
                .writers
                .iter()
                .position(|s| s.state == WriterState::Free),
        };
        match slot {
            Some(i) => {
                shared.writers[i] = spool::WriterSlot {
                    dboid,
                    state: WriterState::Running,
                    pid: me,
                    since: now,
                    no_worker: false,
                    pass_at: now,
                }
            }
            None => return,
        }
    }
    // SAFETY: registers this module's #[pg_guard] exit callback.
    unsafe { pg_sys::before_shmem_exit(Some(free_slot), pg_sys::Datum::from(dboid)) };
    keep_freed_memory();
    segment::keep_maps();
    // With BGWORKER_BYPASS_ALLOWCONN: a database whose connections are
    // switched off (ALTER DATABASE ... ALLOW_CONNECTIONS false) still gets
    // its audit events loaded; otherwise its owner could starve the log.
    crate::pg::worker::connect(dboid, pg_sys::BGWORKER_BYPASS_ALLOWCONN);
    BackgroundWorker::transaction(|| {
        // SAFETY: inside a transaction; a known setting and a valid value.
        unsafe {
            crate::pg::set_setting(
                c"lock_timeout",
                STEP_LOCK_TIMEOUT,
                pg_sys::GucAction::GUC_ACTION_SET,
            )
        }
    });

    let mut seq = 0u64;
    let mut last_maintenance = 0i64;
    let mut busy_at = spool::now();
    while BackgroundWorker::wait_latch(Some(Duration::from_millis(100))) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a worker to reload its settings.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let Some(tables) = extension_tables() else {
            // Keep the events; the launcher retries later. Their log lines
            // do not wait.
            let (_taker, files) = close_spooled(dboid, &mut seq);
            for f in &files {
                loader::log_owed_lines(f);
            }
            set_state(dboid, WriterState::WaitingForExtension);
            return;
        };
        began_pass(dboid);
        let loaded = drain(dboid, &mut seq, tables);
        // Prepared reviews: announced when new, rolled back when expired.
        crate::review::finish::tend(dboid);
        // Recycle bin entries kept from here: dropped for good once expired.
        crate::recycle::tend(dboid);
        let now = spool::now();
        if now - last_maintenance > 60_000_000 {
            maintenance::run(tables);
            last_maintenance = now;
        }
        if loaded {
            busy_at = now;
            continue;
        }
        let idle = now - busy_at;
        let crowded = spool::someone_waits(&SPOOL.share());
        if idle >= IDLE_RETIRE_US || (crowded && idle >= IDLE_RETIRE_CROWDED_US) {
            let wake = next_wake(dboid, tables);
            if retire(dboid, wake) {
                return;
            }
            busy_at = now;
        }
    }
    // SIGTERM (writer stop or server shutdown): load what is there, then go.
    if let Some(tables) = extension_tables() {
        drain(dboid, &mut seq, tables);
        let wake = next_wake(dboid, tables);
        let mut shared = SPOOL.exclusive();
        spool::set_wake(&mut shared, dboid, wake);
    }
}

/// Notes in this writer's slot that it begins a pass: the lines spooled
/// from now on are seen by this pass or the next. Backends leave the log
/// lines of their allowed statements only to a writer that keeps doing
/// this (`aas_policy::audit::writer_log::keeps_up`): one held up later in
/// its loop (a lock it waits for in its review, recycle-bin or maintenance
/// steps) is not left new lines to write.
fn began_pass(dboid: u32) {
    let now = spool::now();
    let me = my_pid();
    let mut shared = SPOOL.exclusive();
    if let Some(s) = shared
        .writers
        .iter_mut()
        .find(|s| s.dboid == dboid && s.pid == me)
    {
        s.pass_at = now;
    }
}

/// When the database next needs a writer with no events coming in: its
/// maintenance, or a review's expiry (a second late).
fn next_wake(dboid: u32, tables: Tables) -> Option<i64> {
    let review = crate::review::finish::next_expiry(dboid).map(|t| t + 1_000_000);
    let recycled = crate::recycle::next_expiry(dboid).map(|t| t + 1_000_000);
    [maintenance::next_time(tables), review, recycled]
        .into_iter()
        .flatten()
        .min()
}

/// Frees this writer's slot if the spool is empty (under the spool lock, so an
/// event spooled from now on starts a new writer), leaving the database's next
/// maintenance time for the launcher. False when events arrived meanwhile.
fn retire(dboid: u32, wake: Option<i64>) -> bool {
    let mut shared = SPOOL.exclusive();
    if spool::pending(dboid) {
        return false;
    }
    let me = my_pid();
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
        // SAFETY: the launcher's latch lives in shared memory for the server's life.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
    true
}

/// Each pass allocates a few megabytes (the lines, their binary form, the
/// batches as the server stores them) and frees them. With malloc's
/// defaults the large ones are fresh mappings each time and the heap's top
/// goes back to the kernel, so every pass page-faulted its memory in again:
/// about a third of the writer's system time (`perf`, `strace -c`: 14
/// `brk` and 5 `munmap` per pass). Kept instead, up to 64 MiB.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Is a process with this pid alive (signal 0)?
fn process_alive(pid: i32) -> bool {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && unsafe { kill(pid, 0) } == 0
}

fn my_pid() -> i32 {
    // SAFETY: reads a backend variable.
    unsafe { pg_sys::MyProcPid }
}

fn extension_tables() -> Option<Tables> {
    // The extension's own tables, as members of the extension: never a
    // table that is only named like one (an agent can make a schema called
    // ai_agent_safety where the extension is not created, with triggers
    // that would run as this superuser worker).
    // Objects of a version this library does not serve wait, with their
    // events kept, until ALTER EXTENSION ... UPDATE (or the right library).
    // SAFETY: reads shared state; raises nothing.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return None;
    }
    BackgroundWorker::transaction(|| {
        let own = |name: &std::ffi::CStr| crate::pg::own_relation(name) != pg_sys::InvalidOid;
        if !own(c"audit_spool_done") || crate::pg::sql_objects_served().is_err() {
            None
        } else if own(c"audit_batch") && own(c"audit_row") {
            Some(Tables::Batched)
        } else if own(c"audit_log") {
            // 0.1.0's objects, until ALTER EXTENSION ... UPDATE.
            Some(Tables::Rows)
        } else {
            None
        }
    })
}

/// Loads everything spooled so far. True when there was anything.
fn drain(dboid: u32, seq: &mut u64, tables: Tables) -> bool {
    let (_taker, files) = close_spooled(dboid, seq);
    for f in &files {
        loader::load_file(f, tables);
    }
    segment::reap(&spool::db_dir(dboid));
    !files.is_empty()
}

/// Everything spooled so far, as closed files: the shared file (login
/// refusals, each backend's first events, and file systems without
/// segments: `spool::Via`) rotated, and the segments' lines taken. The
/// taker's lock comes with them, to hold until they are dealt with: nobody
/// else takes these lines.
fn close_spooled(dboid: u32, seq: &mut u64) -> (Option<std::fs::File>, Vec<std::path::PathBuf>) {
    spool::rotate(dboid, seq);
    let dir = spool::db_dir(dboid);
    let taker = segment::taker_lock(&dir);
    if taker.is_some() {
        segment::recover(&dir);
        segment::take(&dir, seq);
    }
    (taker, spool::closed_files(dboid))
}
