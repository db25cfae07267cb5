//! Loading closed spool files into `ai_agent_safety.audit_log`, each exactly
//! once: the file's name goes into `audit_spool_done` in the same
//! transaction as its `COPY`, so a writer that dies between commit and
//! unlink does not load it twice.

use super::spool::{Counters, SPOOL};
use aas_policy::audit::record;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

/// Loads one closed spool file, exactly once, with COPY.
pub fn load_file(path: &std::path::Path) {
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
    lines.retain(|l| record::copy_line_is_whole(l));
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
        // Counted before the file leaves the spool: whoever sees the spool
        // empty (audit_stats.queue_depth = 0) sees the final counts.
        Counters::add(&SPOOL.share().counters.dropped, total);
        let _ = std::fs::rename(path, path.with_extension("bad"));
        let _ = std::fs::remove_file(&attempts_path);
        pgrx::log!(
            "ai_agent_safety: spool file {name} failed to load 3 times; set aside as {}.bad, its {total} events are counted as dropped",
            name.trim_end_matches(".copy"),
        );
        return;
    }
    let _ = std::fs::write(&attempts_path, (attempts + 1).to_string());
    // The first attempt loads the lines in COPY's binary format, which the
    // server reads without parsing text (`aas_policy::audit::binary`: about
    // half of what a row cost). A file that failed to load once is loaded
    // as text, and after that as text with non-ASCII characters written as
    // <U+XXXX>: a character the database's encoding cannot store must keep
    // no event out of the log.
    let fold = attempts >= 2;
    let binary = if attempts == 0 {
        aas_policy::audit::binary::copy_file(&lines)
    } else {
        None
    };
    let clean_path = path.with_extension(if binary.is_some() { "bin" } else { "clean" });
    let source = if let Some(bytes) = &binary {
        if let Err(e) = std::fs::write(&clean_path, bytes) {
            pgrx::log!(
                "ai_agent_safety: cannot write {}: {e}; will retry",
                clean_path.display()
            );
            return;
        }
        clean_path.as_path()
    } else if bad == 0 && !fold {
        path
    } else {
        let mut clean = lines
            .iter()
            .map(|l| {
                if fold {
                    record::ascii_folded(l)
                } else {
                    (*l).into()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
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
    // Binary text values are read in the client encoding: UTF8, as spooled.
    let format = if binary.is_some() {
        "FORMAT binary"
    } else {
        "FORMAT text, ENCODING 'UTF8'"
    };
    let copy = format!(
        "COPY ai_agent_safety.audit_log ({}) FROM '{}' WITH ({format})",
        record::columns().join(", "),
        source.display()
    );
    let loaded = BackgroundWorker::transaction(|| {
        Spi::connect_mut(|c| {
            // The spool file is removed once this commits: the commit must
            // be on disk by then, whatever the server's or the database's
            // synchronous_commit says (asynchronous, a crash right after
            // would take the rows back with the file already gone).
            c.update("SET LOCAL synchronous_commit = on", None, &[])?;
            let fresh = c.update(
                "INSERT INTO ai_agent_safety.audit_spool_done (file) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1",
                None,
                &[name.clone().into()],
            )?;
            if fresh.len() == 1 && good > 0 {
                if binary.is_some() {
                    c.update("SET LOCAL client_encoding = 'UTF8'", None, &[])?;
                }
                c.update(&copy, None, &[])?;
            }
            Ok::<bool, pgrx::spi::Error>(fresh.len() == 1)
        })
    });
    // Either converted copy (one may be left by an earlier attempt that a
    // kill interrupted).
    let _ = std::fs::remove_file(path.with_extension("bin"));
    let _ = std::fs::remove_file(path.with_extension("clean"));
    match loaded {
        Ok(fresh) => {
            // Counted before the file leaves the spool, so that the counts
            // are final once audit_stats.queue_depth reads 0. A file loaded
            // before (fresh = false: its removal failed last time) is not
            // counted again.
            let shared = SPOOL.share();
            if fresh {
                Counters::add(&shared.counters.written, good);
                Counters::add(&shared.counters.dropped, bad);
            }
            // Its attempt count goes first: whoever sees the spool empty
            // (audit_stats.queue_depth = 0) finds nothing of it left.
            let _ = std::fs::remove_file(&attempts_path);
            let _ = std::fs::remove_file(path);
        }
        Err(e) => pgrx::log!("ai_agent_safety: loading {name} failed, will retry: {e}"),
    }
}
