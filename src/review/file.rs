//! A prepared review's metadata, kept beside its prepared transaction: one
//! JSON file per review under `$PGDATA/ai_agent_safety_reviews/<database
//! oid>/<xid>.json`, written and synced before the transaction is prepared,
//! so it survives a crash or a restart as the prepared transaction does.
//! A review is the file named for the xid of a prepared transaction of its
//! database (xids are never reused while it lives); the gid is matched as
//! the bytes PostgreSQL has, whatever the database's encoding. When the
//! review is committed, rolled back or expired its file becomes a tombstone
//! (`<xid>.done`), kept 7 days so that no later review takes its name; a
//! file left by a prepare that failed becomes one too, once the audit
//! writer finds it a minute old and matching nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The reviews' directory, relative to the data directory (every backend's
/// and worker's working directory).
const DIR: &str = "ai_agent_safety_reviews";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// The gid as text, to show.
    pub gid: String,
    /// The gid's bytes in the database's encoding, to match.
    pub gid_bytes: Vec<u8>,
    pub xid: u32,
    pub database: String,
    pub requested_by: String,
    pub task: String,
    pub reason: Option<String>,
    pub begun_at: String,
    pub prepared_at: String,
    /// PostgreSQL timestamps (microseconds since 2000-01-01).
    pub prepared_at_us: i64,
    pub expires_at_us: i64,
    pub expires_at: String,
    /// `[{"statement": ..., "rows": n, "tables": [...]}]`
    pub statements: Value,
    pub rows: i64,
}

pub fn db_dir(dboid: u32) -> PathBuf {
    PathBuf::from(DIR).join(dboid.to_string())
}

/// How long a tombstone keeps its name from new reviews.
const TOMBSTONE_S: u64 = 7 * 24 * 3600;

pub fn path_of(dboid: u32, xid: u32) -> PathBuf {
    db_dir(dboid).join(format!("{xid}.json"))
}

/// The marker that the audit writer has announced the review (NOTIFY).
pub fn announced_marker(path: &Path) -> PathBuf {
    path.with_extension("announced")
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes the review's file and syncs it (and its directories) to disk.
pub fn write(dboid: u32, meta: &Meta) -> std::io::Result<PathBuf> {
    let dir = db_dir(dboid);
    std::fs::create_dir_all(&dir)?;
    let path = path_of(dboid, meta.xid);
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(meta).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    sync_dir(&dir)?;
    sync_dir(Path::new(DIR))?;
    Ok(path)
}

/// Removes a review's file and its marker (a PREPARE that failed; errors
/// are of no consequence: a file that matches no prepared transaction is
/// no review).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(announced_marker(path));
}

/// A finished review's file becomes its tombstone (and its marker goes).
pub fn retire(path: &Path) {
    let _ = std::fs::rename(path, path.with_extension("done"));
    let _ = std::fs::remove_file(announced_marker(path));
}

/// The review of the prepared transaction `xid`, if it is one.
pub fn read(dboid: u32, xid: u32) -> Option<(PathBuf, Meta)> {
    let path = path_of(dboid, xid);
    let meta = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    Some((path, meta))
}

/// Has a review (live, or finished within 7 days) been prepared under this
/// gid, in any database? Gids are the cluster's, not a database's.
pub fn gid_used(gid: &[u8]) -> bool {
    let Ok(databases) = std::fs::read_dir(DIR) else {
        return false;
    };
    databases
        .flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .any(|p| {
            p.extension().is_some_and(|x| x == "json" || x == "done")
                && std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
                    .is_some_and(|m| m.gid_bytes == gid)
        })
}

/// Removes the tombstones older than 7 days.
pub fn sweep_tombstones(dboid: u32) {
    let Ok(entries) = std::fs::read_dir(db_dir(dboid)) else {
        return;
    };
    for p in entries.flatten().map(|e| e.path()) {
        if p.extension().is_some_and(|x| x == "done") && age_s(&p) >= TOMBSTONE_S {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Every review file of a database, read: (path, metadata). Files that do
/// not read as a review are skipped.
pub fn list(dboid: u32) -> Vec<(PathBuf, Meta)> {
    let Ok(entries) = std::fs::read_dir(db_dir(dboid)) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Meta)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let meta = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            Some((p, meta))
        })
        .collect();
    out.sort_by_key(|(_, m)| m.prepared_at_us);
    out
}

/// How long ago (in seconds) the file was last written.
pub fn age_s(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(0, |d| d.as_secs())
}
