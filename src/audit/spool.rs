//! The spool: durable, append-only event files, one stream per database.
//!
//! `$PGDATA/ai_agent_safety_spool/<dboid>/current.jsonl` receives one JSON line
//! per event, appended under a shared-memory LWLock. The writer rotates it
//! (rename to `<time>-<seq>.jsonl` under the same lock, bumping a generation
//! number so every backend reopens `current.jsonl`), then loads closed files.
//! Files survive a writer crash and a server restart; nothing is kept only in
//! memory, so a full queue cannot exist: the spool grows on disk instead.

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

pub const DIR: &str = "ai_agent_safety_spool";
const MAX_WRITERS: usize = 64;

#[derive(Clone, Copy, Default)]
pub struct WriterSlot {
    pub dboid: u32,
    /// 0 free, 1 starting, 2 running.
    pub state: u8,
    pub pid: i32,
    /// When the slot entered its state (PostgreSQL timestamp).
    pub since: i64,
}

#[derive(Clone, Copy)]
pub struct Shared {
    pub generation: u64,
    pub events_spooled: u64,
    pub events_written: u64,
    pub events_dropped: u64,
    pub writer_restarts: u64,
    pub writers: [WriterSlot; MAX_WRITERS],
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            generation: 1,
            events_spooled: 0,
            events_written: 0,
            events_dropped: 0,
            writer_restarts: 0,
            writers: [WriterSlot::default(); MAX_WRITERS],
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
    db_dir(dboid).join("current.jsonl")
}

fn open_current(dboid: u32) -> std::io::Result<File> {
    std::fs::create_dir_all(db_dir(dboid))?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(current_path(dboid))
}

/// Appends one event line. A failure to write is an ERROR: an agent's statement
/// is not allowed through with its audit event lost.
pub fn append(dboid: pg_sys::Oid, line: &str) {
    let dboid = dboid.to_u32();
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let need_writer;
    {
        let mut shared = SPOOL.exclusive();
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
                    shared.events_dropped += 1;
                    drop(shared);
                    pgrx::error!("ai_agent_safety: cannot open the audit spool for database oid {dboid}: {e}");
                }
            }
        }
        let f = &mut open.as_mut().unwrap().file;
        if let Err(e) = f.write_all(buf.as_bytes()) {
            shared.events_dropped += 1;
            *open = None;
            drop(shared);
            pgrx::error!("ai_agent_safety: cannot write the audit spool: {e}");
        }
        shared.events_spooled += 1;
        need_writer = claim_writer_start(&mut shared, dboid);
    }
    if need_writer {
        super::writer::start(dboid);
    }
}

/// True when no writer serves this database: the slot is then marked
/// "starting" and the caller starts one.
fn claim_writer_start(shared: &mut Shared, dboid: u32) -> bool {
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    if let Some(s) = shared
        .writers
        .iter_mut()
        .find(|s| s.dboid == dboid && s.state != 0)
    {
        // A start that never completed (no free worker slot): try again after 2 s.
        if s.state == 1 && now - s.since > 2_000_000 {
            s.since = now;
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
        };
        return true;
    }
    false
}

/// Rotates `current.jsonl` of a database if it holds anything. Returns the
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
        "{:020}-{:06}-{}.jsonl",
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
                    p.extension().is_some_and(|x| x == "jsonl")
                        && p.file_name().is_some_and(|n| n != "current.jsonl")
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
