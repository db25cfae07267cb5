//! The spool: durable, append-only event files, one stream per database.
//!
//! Each event is one line of COPY text format (`aas_policy::audit::record`).
//! A backend appends it to a segment of its own under
//! `$PGDATA/ai_agent_safety_spool/<dboid>/` (`segment`: a mapped file, no
//! system call per event) or, for a login refusal, its first few events and
//! file systems where segments are not used, with one `write()` to the
//! database's shared `current.copy` (see `Via`), in both cases while holding
//! a shared-memory LWLock in *shared* mode, so appenders never wait for
//! each other. The writer rotates `current.copy` under the same lock in
//! exclusive mode (rename to `<time>-<seq>-<pid>.copy`, bumping a
//! generation number so every backend reopens it), so no append lands in a
//! file after it is closed, takes the segments' new lines into closed files
//! too, and loads those; it decides to retire under the exclusive lock, so
//! no line is appended unseen. Files survive a backend's SIGKILL, a writer
//! crash and a server restart; nothing is kept only in memory, so a full
//! queue cannot exist: the spool grows on disk instead.

use aas_policy::audit::writer_log;
use aas_policy::WriterState;
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
    pub state: WriterState,
    pub pid: i32,
    /// When the slot entered its state (PostgreSQL timestamp).
    pub since: i64,
    /// Starting, but the last start found no free background worker slot
    /// (max_worker_processes): retried soon, and idle writers make room.
    pub no_worker: bool,
    /// When the running writer last began a pass (PostgreSQL timestamp):
    /// one that falls behind (`writer_log::keeps_up`) is not left the log
    /// lines of new events.
    pub pass_at: i64,
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
    pub writers: [WriterSlot; MAX_WRITERS],
    pub wakes: [Wake; MAX_WRITERS],
    /// The launcher's latch (a PGPROC latch in shared memory), so a retiring
    /// writer can wake it when another database waits for a worker slot.
    pub launcher_latch: usize,
    /// Until when (µs) a backend waits for a worker slot of its own (a
    /// revocation's rollback worker): idle writers retire sooner meanwhile.
    pub slot_wanted_until: i64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            generation: 1,
            counters: Counters::default(),
            writers: [WriterSlot::default(); MAX_WRITERS],
            wakes: [Wake::default(); MAX_WRITERS],
            launcher_latch: 0,
            slot_wanted_until: 0,
        }
    }
}

// SAFETY: plain data (integers, atomics, arrays of Copy structs): valid in
// shared memory, with no pointers into any one process.
unsafe impl PGRXSharedMemory for Shared {}

// SAFETY: the name is unique to this extension, and the lock is initialised
// by `init_shmem` from _PG_init before any backend uses it.
pub static SPOOL: PgLwLock<Shared> = unsafe { PgLwLock::new(c"ai_agent_safety_spool") };

pub fn init_shmem() {
    pgrx::pg_shmem_init!(SPOOL);
}

pub fn db_dir(dboid: u32) -> PathBuf {
    PathBuf::from(DIR).join(dboid.to_string())
}

pub fn current_path(dboid: u32) -> PathBuf {
    db_dir(dboid).join("current.copy")
}

/// This backend's open shared spool file (`current.copy`).
struct Open {
    dboid: u32,
    generation: u64,
    file: File,
}
// SAFETY: a backend is single-threaded; only `append_shared` touches it.
static mut OPEN: Option<Open> = None;

fn open_current(dboid: u32) -> std::io::Result<File> {
    std::fs::create_dir_all(db_dir(dboid))?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(current_path(dboid))
}

/// Appends one line to the database's shared `current.copy` in one
/// `write()` (the kernel keeps each append whole). Call under the shared lock.
fn append_shared(shared: &Shared, dboid: u32, line: &[u8]) -> std::io::Result<()> {
    // SAFETY: see OPEN.
    let open = unsafe { &mut *std::ptr::addr_of_mut!(OPEN) };
    if !matches!(open, Some(o) if o.dboid == dboid && o.generation == shared.generation) {
        *open = Some(Open {
            dboid,
            generation: shared.generation,
            file: open_current(dboid)?,
        });
    }
    let r = open.as_mut().expect("opened above").file.write_all(line);
    if r.is_err() {
        *open = None;
    }
    r
}

/// Where an event line goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// This backend's own segment (`segment`), once it has spooled more
    /// than a few events (a short session's go to the shared file: a
    /// segment per connection would cost an agent that opens many of them
    /// a file and a disk block each, where no writer removes them), and
    /// where the file system allocates a mapped file's blocks up front;
    /// else the shared file.
    Segment,
    /// The shared `current.copy`: for a login refusal, whose backend ends
    /// at once (a segment per refused connection would cost an agent that
    /// retries nothing but a file and a disk block each time).
    Shared,
}

/// What [`append`] did with a line.
pub struct Appended {
    /// No writer serves the database: the caller starts one (its start is
    /// claimed).
    pub start_writer: bool,
    /// The line kept its mark (`aas_policy::audit::writer_log`): a running
    /// writer writes its log line. A marked line is appended without its
    /// mark when no writer is running for the database (none could start,
    /// say, every background worker slot being taken), or the one running
    /// has fallen behind (`writer_log::keeps_up`: held up on a lock, say):
    /// the caller writes the line then, as nothing would for as long as
    /// that lasted.
    pub marked: bool,
}

/// Appends one event line (with its newline), which may begin with the mark
/// of `writer_log`, at `now` (the event's time). A failure is returned (the
/// line is counted as dropped) for the caller to raise: an agent's
/// statement is not allowed through with its audit event lost.
pub fn append(dboid: pg_sys::Oid, line: &[u8], via: Via, now: i64) -> Result<Appended, String> {
    let dboid = dboid.to_u32();
    let served;
    let marked;
    {
        // Held in shared mode across the append: a writer retires only
        // under the exclusive lock, after finding nothing waiting, and
        // rotates `current.copy` only under it, so a line appended here is
        // either seen by it or finds it gone, and never lands in a file
        // already closed. So a writer running now sees a marked line.
        let shared = SPOOL.share();
        let running = shared
            .writers
            .iter()
            .find(|s| s.dboid == dboid && s.state == WriterState::Running);
        served = running.is_some();
        let has_mark = line.first() == Some(&(writer_log::MARK as u8));
        marked = has_mark && running.is_some_and(|s| writer_log::keeps_up(s.pass_at, now));
        let line = if has_mark && !marked {
            &line[1..]
        } else {
            line
        };
        let r = if via == Via::Segment
            && super::segment::wanted()
            && super::segment::usable(|| db_dir(dboid))
        {
            super::segment::append(dboid, || db_dir(dboid), line)
        } else {
            append_shared(&shared, dboid, line)
        };
        if let Err(e) = r {
            Counters::add(&shared.counters.dropped, 1);
            return Err(format!(
                "ai_agent_safety: cannot open the audit spool for database oid {dboid}: {e}"
            ));
        }
        Counters::add(&shared.counters.spooled, 1);
    }
    // No running writer: claim its start under the exclusive lock. (A writer
    // retires only under that lock and only with an empty spool, so one that
    // retires after this append's check has seen the line and stayed.)
    // In single-user mode no worker can start (nor a writer run): the
    // events wait in the spool for the next start of the server.
    // SAFETY: reads a backend variable.
    let can_start = unsafe { pg_sys::IsUnderPostmaster };
    Ok(Appended {
        start_writer: !served && can_start && claim(&mut SPOOL.exclusive(), dboid, false),
        marked,
    })
}

/// Claims the start of a writer for a database, for a backend that just
/// spooled an event or for the launcher. True when the caller must start one.
pub fn claim(shared: &mut Shared, dboid: u32, launcher: bool) -> bool {
    let now = now();
    if let Some(s) = shared
        .writers
        .iter_mut()
        .find(|s| s.dboid == dboid && s.state != WriterState::Free)
    {
        let retry_after = match s.state {
            // No free worker slot last time: the launcher retries on every
            // pass (and when a writer retires), backends every 100 ms.
            WriterState::Starting if s.no_worker => {
                if launcher {
                    0
                } else {
                    100_000
                }
            }
            // A start that never completed: try again after 2 s.
            WriterState::Starting => 2_000_000,
            // The extension is missing: the launcher looks again every 30 s;
            // a backend with a new event (after CREATE EXTENSION, say) after 1 s.
            WriterState::WaitingForExtension => {
                if launcher {
                    30_000_000
                } else {
                    1_000_000
                }
            }
            _ => return false,
        };
        if now - s.since >= retry_after {
            s.state = WriterState::Starting;
            s.since = now;
            s.no_worker = false;
            return true;
        }
        return false;
    }
    // A free slot, or else, for a backend's new event, the longest wait
    // for CREATE EXTENSION: a database without the extension runs no
    // writer, and must not keep others' events from loading (an agent can
    // make events in every database it can connect to). The launcher's
    // retries take free slots only, so waiting databases do not take turns
    // evicting each other.
    let slot = match shared
        .writers
        .iter()
        .position(|s| s.state == WriterState::Free)
    {
        Some(i) => Some(i),
        None if launcher => None,
        None => shared
            .writers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == WriterState::WaitingForExtension)
            .min_by_key(|(_, s)| s.since)
            .map(|(i, _)| i),
    };
    if let Some(s) = slot.map(|i| &mut shared.writers[i]) {
        *s = WriterSlot {
            dboid,
            state: WriterState::Starting,
            pid: 0,
            since: now,
            no_worker: false,
            pass_at: 0,
        };
        return true;
    }
    false
}

/// Records that a writer start found no free background worker slot.
pub fn mark_no_worker(dboid: u32) {
    let mut shared = SPOOL.exclusive();
    let now = now();
    if let Some(s) = shared
        .writers
        .iter_mut()
        .find(|s| s.dboid == dboid && s.state == WriterState::Starting)
    {
        s.no_worker = true;
        s.since = now;
    }
}

/// Does any database, or any backend, wait for a background worker slot?
pub fn someone_waits(shared: &Shared) -> bool {
    shared
        .writers
        .iter()
        .any(|s| s.state == WriterState::Starting && s.no_worker)
        || shared.slot_wanted_until > now()
}

/// Says that this backend waits for a background worker slot (for the next
/// second): idle audit writers retire sooner to free one.
pub fn want_worker_slot() {
    SPOOL.exclusive().slot_wanted_until = now() + 1_000_000;
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
        || super::segment::any_waiting(&db_dir(dboid))
        || std::fs::metadata(current_path(dboid))
            .map(|m| m.len() > 0)
            .unwrap_or(false)
}

/// Rotates `current.copy` of a database if it holds anything. Returns the
/// closed file's path.
pub fn rotate(dboid: u32, seq: &mut u64) -> Option<PathBuf> {
    let cur = current_path(dboid);
    // Most passes find nothing: no exclusive lock for those.
    if std::fs::metadata(&cur).map_or(true, |m| m.len() == 0) {
        return None;
    }
    let mut shared = SPOOL.exclusive();
    let len = std::fs::metadata(&cur).map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return None;
    }
    *seq += 1;
    // SAFETY: reads a backend variable.
    let pid = unsafe { pg_sys::MyProcPid };
    let closed = db_dir(dboid).join(format!("{:020}-{:06}-{pid}.copy", now(), *seq));
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

/// The spool directory's marker: the identity of the directory it was
/// written in (its inode, and its birth time where the file system keeps
/// one). A copy of the directory (pg_basebackup, a restore) is a new
/// directory; a restart, a reboot or a remount of the same one is not.
const ORIGIN: &str = "ai_agent_safety_spool/origin";

fn this_spool_dir() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(DIR).ok()?;
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some(format!("{} {born}\n", m.ino()))
}

/// A data directory copied from another server (by pg_basebackup for a
/// standby, or a file-level restore) carries that server's spool: events it
/// loads itself, whose rows then arrive here through WAL. Loaded here too,
/// they would appear twice. So when the spool's marker names another
/// directory, each database's spooled files are set aside, unloaded, in
/// `ai_agent_safety_spool/copied-<time>-<database oid>/` (kept for a DBA to
/// read; nothing is deleted), and the marker is made for this directory.
/// Returns how many files were set aside.
fn set_aside_a_copied_spool() -> usize {
    let Some(here) = this_spool_dir() else {
        return 0;
    };
    let marked = std::fs::read_to_string(ORIGIN).ok();
    let mut moved = 0;
    if marked.as_deref().is_some_and(|m| m != here) {
        let stamp = now() / 1_000_000;
        for db in spooled_databases() {
            let files = std::fs::read_dir(db_dir(db)).into_iter().flatten().count();
            let aside = PathBuf::from(DIR).join(format!("copied-{stamp}-{db}"));
            if files > 0 && std::fs::rename(db_dir(db), aside).is_ok() {
                moved += files;
            }
        }
    }
    if marked.as_deref() != Some(here.as_str()) {
        let _ = std::fs::write(ORIGIN, here);
    }
    moved
}

/// At server start, in the postmaster as it loads the library (its working
/// directory is the data directory), before any backend (or a standby's
/// first event) exists: see [`set_aside_a_copied_spool`].
pub fn set_aside_a_copied_spool_at_start() {
    let _ = std::fs::create_dir_all(DIR);
    let moved = set_aside_a_copied_spool();
    if moved > 0 {
        pgrx::log!("ai_agent_safety: set aside {moved} audit spool file(s) copied with this data directory from another server (pg_basebackup or a restore), unloaded, in {DIR}/copied-*: that server loads their events, which reach this one through WAL");
    }
}

/// Lines waiting in the spool (all databases), for audit_stats.
pub fn pending_lines() -> u64 {
    spooled_databases().into_iter().map(database_lines).sum()
}

/// Lines waiting in the spool of one database, closed files and current.
pub fn database_lines(dboid: u32) -> u64 {
    closed_files(dboid)
        .into_iter()
        .chain(std::iter::once(current_path(dboid)))
        .map(|f| line_count(&f))
        .sum::<u64>()
        + super::segment::waiting_lines(&db_dir(dboid))
}

/// The current time, as PostgreSQL keeps it.
pub fn now() -> i64 {
    // SAFETY: reads the clock; never raises.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Lines in a spool file (0 when it cannot be read).
pub fn line_count(path: &std::path::Path) -> u64 {
    std::fs::read(path)
        .map(|s| s.iter().filter(|b| **b == b'\n').count() as u64)
        .unwrap_or(0)
}
