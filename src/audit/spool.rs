//! The spool: durable, append-only event files, one stream per database.
//!
//! `$PGDATA/ai_agent_safety_spool/<dboid>/current.copy` receives one line per
//! event, in COPY text format (`aas_policy::audit_record`). Backends append
//! with one `write()` on an `O_APPEND` descriptor while holding a shared-memory
//! LWLock in *shared* mode, so appenders never wait for each other (the kernel
//! keeps each append whole). The writer rotates the file
//! under the same lock in exclusive mode (rename to `<time>-<seq>.copy`,
//! bumping a generation number so every backend reopens `current.copy`), so no
//! append can land in a file after it is closed; then it loads closed files.
//! Files survive a writer crash and a server restart; nothing is kept only in
//! memory, so a full queue cannot exist: the spool grows on disk instead.

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub const DIR: &str = "ai_agent_safety_spool";
const MAX_WRITERS: usize = 64;

#[derive(Clone, Copy, Default)]
pub struct WriterSlot {
    pub dboid: u32,
    /// 0 free, 1 starting, 2 running, 3 waiting for CREATE EXTENSION.
    pub state: u8,
    pub pid: i32,
    /// When the slot entered its state (PostgreSQL timestamp).
    pub since: i64,
    /// Starting, but the last start found no free background worker slot
    /// (max_worker_processes): retried soon, and idle writers make room.
    pub no_worker: bool,
}

/// A database without a running writer that needs one at a given time for
/// maintenance: a granted token expires, or its oldest event passes the
/// retention. Writers leave this behind when they retire; the launcher acts on it.
#[derive(Clone, Copy, Default)]
pub struct Wake {
    pub dboid: u32,
    pub at: i64,
}

/// Event counters, updated under the lock in either mode (hence atomic).
#[derive(Default)]
pub struct Counters {
    pub spooled: AtomicU64,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct Shared {
    /// Changed only under the exclusive lock.
    pub generation: u64,
    pub counters: Counters,
    pub writer_restarts: u64,
    pub writers: [WriterSlot; MAX_WRITERS],
    pub wakes: [Wake; MAX_WRITERS],
    /// The launcher's latch (a PGPROC latch in shared memory), so a retiring
    /// writer can wake it when another database waits for a worker slot.
    pub launcher_latch: usize,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            generation: 1,
            counters: Counters::default(),
            writer_restarts: 0,
            writers: [WriterSlot::default(); MAX_WRITERS],
            wakes: [Wake::default(); MAX_WRITERS],
            launcher_latch: 0,
        }
    }
}

unsafe impl PGRXSharedMemory for Shared {}

pub static SPOOL: PgLwLock<Shared> = unsafe { PgLwLock::new(c"ai_agent_safety_spool") };

pub fn init_shmem() {
    pgrx::pg_shmem_init!(SPOOL);
}

/// This backend's open spool file.
struct Open {
    dboid: u32,
    generation: u64,
    file: File,
}
static mut OPEN: Option<Open> = None;

pub fn db_dir(dboid: u32) -> PathBuf {
    PathBuf::from(DIR).join(dboid.to_string())
}

pub fn current_path(dboid: u32) -> PathBuf {
    db_dir(dboid).join("current.copy")
}

fn open_current(dboid: u32) -> std::io::Result<File> {
    std::fs::create_dir_all(db_dir(dboid))?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(current_path(dboid))
}

/// Appends one event line (with its newline) in one `write()`. A failure to
/// write is an ERROR: an agent's statement is not allowed through with its
/// audit event lost.
pub fn append(dboid: pg_sys::Oid, line: &[u8]) {
    let dboid = dboid.to_u32();
    let served;
    {
        let shared = SPOOL.share();
        let open = unsafe { &mut *std::ptr::addr_of_mut!(OPEN) };
        let stale =
            !matches!(open, Some(o) if o.dboid == dboid && o.generation == shared.generation);
        if stale {
            match open_current(dboid) {
                Ok(f) => {
                    *open = Some(Open {
                        dboid,
                        generation: shared.generation,
                        file: f,
                    })
                }
                Err(e) => {
                    Counters::add(&shared.counters.dropped, 1);
                    drop(shared);
                    pgrx::error!("ai_agent_safety: cannot open the audit spool for database oid {dboid}: {e}");
                }
            }
        }
        let f = &mut open.as_mut().unwrap().file;
        if let Err(e) = f.write_all(line) {
            Counters::add(&shared.counters.dropped, 1);
            *open = None;
            drop(shared);
            pgrx::error!("ai_agent_safety: cannot write the audit spool: {e}");
        }
        Counters::add(&shared.counters.spooled, 1);
        served = shared
            .writers
            .iter()
            .any(|s| s.dboid == dboid && s.state == 2);
    }
    // No running writer: claim its start under the exclusive lock. (A writer
    // retires only under that lock and only with an empty spool, so one that
    // retires after this append's check has seen the line and stayed.)
    if !served && claim_writer_start(&mut SPOOL.exclusive(), dboid) {
        super::writer::start(dboid);
    }
}

/// True when no writer serves this database: the slot is then marked
/// "starting" and the caller starts one.
fn claim_writer_start(shared: &mut Shared, dboid: u32) -> bool {
    claim(shared, dboid, false)
}

/// Claims the start of a writer for a database, for a backend that just
/// spooled an event or for the launcher. True when the caller must start one.
pub fn claim(shared: &mut Shared, dboid: u32, launcher: bool) -> bool {
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    if let Some(s) = shared
        .writers
        .iter_mut()
        .find(|s| s.dboid == dboid && s.state != 0)
    {
        let retry_after = match s.state {
            // No free worker slot last time: the launcher retries on every
            // pass (and when a writer retires), backends every 100 ms.
            1 if s.no_worker => {
                if launcher {
                    0
                } else {
                    100_000
                }
            }
            // A start that never completed: try again after 2 s.
            1 => 2_000_000,
            // The extension is missing: the launcher looks again every 30 s;
            // a backend with a new event (after CREATE EXTENSION, say) after 1 s.
            3 => {
                if launcher {
                    30_000_000
                } else {
                    1_000_000
                }
            }
            _ => return false,
        };
        if now - s.since >= retry_after {
            s.state = 1;
            s.since = now;
            s.no_worker = false;
            return true;
        }
        return false;
    }
    if let Some(s) = shared.writers.iter_mut().find(|s| s.state == 0) {
        *s = WriterSlot {
            dboid,
            state: 1,
            pid: 0,
            since: now,
            no_worker: false,
        };
        return true;
    }
    false
}

/// Records that a writer start found no free background worker slot.
pub fn mark_no_worker(dboid: u32) {
    let mut shared = SPOOL.exclusive();
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    if let Some(s) = shared
        .writers
        .iter_mut()
        .find(|s| s.dboid == dboid && s.state == 1)
    {
        s.no_worker = true;
        s.since = now;
    }
}

/// Does any database wait for a background worker slot?
pub fn someone_waits(shared: &Shared) -> bool {
    shared.writers.iter().any(|s| s.state == 1 && s.no_worker)
}

/// Sets (or with `None` clears) the maintenance wake-up time of a database.
/// When the table is full, the latest wake-up gives way to an earlier one.
pub fn set_wake(shared: &mut Shared, dboid: u32, at: Option<i64>) {
    let existing = shared.wakes.iter().position(|w| w.dboid == dboid);
    let Some(at) = at else {
        if let Some(i) = existing {
            shared.wakes[i] = Wake::default();
        }
        return;
    };
    let i = existing
        .or_else(|| shared.wakes.iter().position(|w| w.dboid == 0))
        .or_else(|| {
            let (i, latest) = shared.wakes.iter().enumerate().max_by_key(|(_, w)| w.at)?;
            (latest.at > at).then_some(i)
        });
    if let Some(i) = i {
        shared.wakes[i] = Wake { dboid, at };
    }
}

/// Is anything waiting in the spool of a database? (Call under the lock to
/// decide whether a writer may retire.)
pub fn pending(dboid: u32) -> bool {
    !closed_files(dboid).is_empty()
        || std::fs::metadata(current_path(dboid))
            .map(|m| m.len() > 0)
            .unwrap_or(false)
}

/// Rotates `current.copy` of a database if it holds anything. Returns the
/// closed file's path.
pub fn rotate(dboid: u32, seq: &mut u64) -> Option<PathBuf> {
    let mut shared = SPOOL.exclusive();
    let cur = current_path(dboid);
    let len = std::fs::metadata(&cur).map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return None;
    }
    *seq += 1;
    let closed = db_dir(dboid).join(format!(
        "{:020}-{:06}-{}.copy",
        unsafe { pg_sys::GetCurrentTimestamp() },
        *seq,
        unsafe { pg_sys::MyProcPid }
    ));
    if std::fs::rename(&cur, &closed).is_err() {
        return None;
    }
    shared.generation += 1;
    Some(closed)
}

/// Closed spool files of a database, oldest first.
pub fn closed_files(dboid: u32) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(db_dir(dboid))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "copy")
                        && p.file_name().is_some_and(|n| n != "current.copy")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Database oids that have spool directories (for recovery after a restart).
pub fn spooled_databases() -> Vec<u32> {
    std::fs::read_dir(DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Lines waiting in the spool (all databases), for audit_stats.
pub fn pending_lines() -> i64 {
    let mut n = 0i64;
    for db in spooled_databases() {
        let mut files = closed_files(db);
        files.push(current_path(db));
        for f in files {
            if let Ok(s) = std::fs::read(&f) {
                n += s.iter().filter(|b| **b == b'\n').count() as i64;
            }
        }
    }
    n
}
