//! A recycle bin entry's metadata: one JSON file per kept database under
//! `$PGDATA/ai_agent_safety_recycle/<entry id>.json`, where no agent
//! can write, read from every database (an agent drops a database from
//! another one). The file is written and synced inside the DROP's
//! transaction and removed if it aborts; an entry counts only while the
//! database it names is still closed under its recycled name
//! (`aas_policy::recycle::is_held`), so a file a crash left behind names
//! nothing.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The entries' directory, relative to the data directory (every backend's
/// and worker's working directory).
const DIR: &str = "ai_agent_safety_recycle";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's id: numbered from 1, cluster-wide (`next_id`).
    pub id: u32,
    /// The kept database's oid.
    pub oid: u32,
    /// What was dropped: `database`.
    pub kind: String,
    /// Its name when it was dropped.
    pub object: String,
    /// The name it is kept under.
    pub recycled: String,
    /// Its owner when it was dropped (a kept database is the bootstrap
    /// superuser's; a restore gives it back).
    pub owner: String,
    pub dropped_by: String,
    pub task_id: Option<String>,
    pub token: Option<String>,
    pub statement: String,
    pub at: String,
    /// PostgreSQL timestamps (microseconds since 2000-01-01).
    pub at_us: i64,
    pub expires_at: String,
    pub expires_at_us: i64,
    pub bytes: Option<i64>,
    /// The database the DROP was run from: its audit writer expires the entry.
    pub from_database: u32,
}

/// A new entry id: one more than the last handed out in this cluster,
/// kept in `next_id` under an exclusive file lock (ids of entries whose
/// statement rolled back are not reused).
pub fn next_id() -> std::io::Result<u32> {
    take_ids(1)
}

/// How many ids a backend takes at once for the entries of its DELETEs:
/// taking one syncs a file (milliseconds), too much for each DELETE.
const BLOCK: u32 = 64;

// SAFETY: a backend is single-threaded: the ids it took and has not
// handed out yet (next, end).
static mut TAKEN: (u32, u32) = (0, 0);

/// An id for the entry of a DELETE: from a block of ids this backend took
/// with one sync (unused ones are never handed out: ids stay unique, with
/// gaps).
pub fn next_rows_id() -> std::io::Result<u32> {
    // SAFETY: see TAKEN.
    let taken = unsafe { &mut *std::ptr::addr_of_mut!(TAKEN) };
    if taken.0 >= taken.1 {
        let first = take_ids(BLOCK)?;
        *taken = (first, first + BLOCK);
    }
    let id = taken.0;
    taken.0 += 1;
    Ok(id)
}

/// Takes `n` consecutive ids; returns the first.
fn take_ids(n: u32) -> std::io::Result<u32> {
    use std::io::{Read, Seek};
    std::fs::create_dir_all(DIR)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(Path::new(DIR).join("next_id"))?;
    f.lock()?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let id = text.trim().parse::<u32>().unwrap_or(1).max(1);
    f.set_len(0)?;
    f.rewind()?;
    f.write_all((id + n).to_string().as_bytes())?;
    f.sync_all()?;
    f.unlock()?;
    Ok(id)
}

pub fn path_of(id: u32) -> PathBuf {
    PathBuf::from(DIR).join(format!("{id}.json"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes the entry's file and syncs it (and its directory) to disk.
pub fn write(e: &Entry) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(DIR)?;
    let path = path_of(e.id);
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(e).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    sync_dir(Path::new(DIR))?;
    Ok(path)
}

pub fn read(id: u32) -> Option<Entry> {
    let bytes = std::fs::read(path_of(id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every entry file there is (held or not: the caller checks).
pub fn list() -> Vec<Entry> {
    let Ok(dir) = std::fs::read_dir(DIR) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = dir
        .filter_map(|d| d.ok())
        .filter(|d| d.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|d| serde_json::from_slice(&std::fs::read(d.path()).ok()?).ok())
        .collect();
    out.sort_by_key(|e| e.at_us);
    out
}

pub fn remove(id: u32) {
    let _ = std::fs::remove_file(path_of(id));
    let _ = sync_dir(Path::new(DIR));
}
