//! Loading closed spool files into `ai_agent_safety.audit_log`, each exactly
//! once: the file's name goes into `audit_spool_done` in the same
//! transaction as its `COPY`, so a writer that dies between commit and
//! unlink does not load it twice.

use super::spool::{Counters, SPOOL};
use aas_policy::audit::batch::Batch;
use aas_policy::audit::{record, spool_text, writer_log};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

/// Loads one closed spool file, exactly once: as batches, or as rows with
/// COPY.
pub fn load_file(path: &std::path::Path, tables: Tables) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    // A line cut inside a multi-byte character is not UTF-8; it fails the
    // whole-line check below like any other cut line, and must not keep the
    // rest of the file from loading.
    let text = spool_text::lossy_utf8(&bytes);
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
    let mut lines: Vec<&str> = spool_text::lines(&text).collect();
    let unterminated = if whole_file { None } else { lines.pop() };
    let total = lines.len() as u64 + unterminated.is_some() as u64;
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
    // The lines whose log line this writer owes (`writer_log`) lose their
    // mark, and at the first attempt their log lines are written, before the
    // attempt is counted: a writer that dies before that writes them again
    // (at least once), and a file that never loads still has them logged.
    let mut json = Vec::new();
    let mut marked = false;
    for l in lines.iter_mut() {
        let (owed, line) = writer_log::unmarked(l);
        if !owed {
            continue;
        }
        *l = line;
        marked = true;
        if attempts == 0 {
            log_owed_line(line, &mut json);
        }
    }
    let _ = std::fs::write(&attempts_path, (attempts + 1).to_string());
    // The first attempt stores the lines as batches (`audit_batch`, many
    // events to a row: `aas_policy::audit::batch`) where the database keeps
    // text as UTF-8 (or unchecked, SQL_ASCII), as the spool does; elsewhere
    // it loads them into `audit_row` in COPY's binary format, which the
    // server reads without parsing text (`aas_policy::audit::binary`) and
    // converts from UTF-8. A file that failed to load once is loaded as
    // text, and after that as text with non-ASCII characters written as
    // <U+XXXX>: a character the database's encoding cannot store must keep
    // no event out of the log.
    let fold = attempts >= 2;
    let batched = tables == Tables::Batched && crate::pg::database_stores_utf8();
    // The usual case: each line checked as it becomes part of a batch, in
    // one walk. Otherwise (a batch's line the binary form does not expect,
    // a later attempt, a database that keeps no UTF-8) the lines are
    // checked first, then loaded as rows.
    let checked = if attempts == 0 && batched {
        aas_policy::audit::batch::checked_batches(&lines)
    } else {
        None
    };
    let (good, how) = match checked {
        Some((batches, left_out)) => ((lines.len() - left_out) as u64, How::Batches(batches)),
        None => {
            lines.retain(|l| record::copy_line_is_whole(l));
            let how = if attempts > 0 || batched {
                How::Text
            } else {
                aas_policy::audit::binary::copy_file(&lines).map_or(How::Text, How::Binary)
            };
            (lines.len() as u64, how)
        }
    };
    let bad = total - good;
    let clean_path = path.with_extension(if matches!(how, How::Binary(_)) {
        "bin"
    } else {
        "clean"
    });
    let source = match &how {
        How::Batches(_) => path,
        How::Binary(bytes) => {
            if let Err(e) = std::fs::write(&clean_path, bytes) {
                pgrx::log!(
                    "ai_agent_safety: cannot write {}: {e}; will retry",
                    clean_path.display()
                );
                return;
            }
            clean_path.as_path()
        }
        // The file as it is, when COPY can read every line of it.
        How::Text if bad == 0 && !fold && !marked => path,
        How::Text => {
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
        }
    };
    // The path is relative to the data directory (the writer's working
    // directory) and made only of digits, dashes, dots and the spool's name.
    // Binary text values are read in the client encoding: UTF8, as spooled.
    let format = if matches!(how, How::Binary(_)) {
        "FORMAT binary"
    } else {
        "FORMAT text, ENCODING 'UTF8'"
    };
    let copy = format!(
        "COPY ai_agent_safety.{} ({}) FROM '{}' WITH ({format})",
        tables.rows(),
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
            // The load waits for its locks, however long (only a superuser
            // can hold the audit tables): a load given up would count
            // against the file (`writer::STEP_LOCK_TIMEOUT` is for the
            // writer's other steps).
            c.update("SET LOCAL lock_timeout = 0", None, &[])?;
            let fresh = c.update(
                "INSERT INTO ai_agent_safety.audit_spool_done (file) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1",
                None,
                &[name.clone().into()],
            )?;
            if fresh.len() == 1 && good > 0 {
                match &how {
                    How::Batches(batches) => store(c, batches)?,
                    How::Binary(_) => {
                        c.update("SET LOCAL client_encoding = 'UTF8'", None, &[])?;
                        c.update(&copy, None, &[])?;
                    }
                    How::Text => {
                        c.update(&copy, None, &[])?;
                    }
                }
            }
            Ok::<bool, pgrx::spi::Error>(fresh.len() == 1)
        })
    });
    // Either converted copy, and a copy without marks (one may be left by
    // an earlier attempt that a kill interrupted).
    let _ = std::fs::remove_file(path.with_extension("bin"));
    let _ = std::fs::remove_file(path.with_extension("clean"));
    let _ = std::fs::remove_file(path.with_extension("unmarked"));
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

/// Writes the log line owed for a spooled event (`writer_log`); a line cut
/// by a crash has none.
fn log_owed_line(line: &str, json: &mut Vec<u8>) {
    json.clear();
    json.extend_from_slice(b"ai_agent_safety: ");
    // The JSON escapes every control character: its only NUL is the last.
    if writer_log::json_of_copy_line(line, json) {
        json.push(0);
        if let Ok(msg) = std::ffi::CStr::from_bytes_with_nul(json) {
            super::server_log(msg);
        }
    }
}

/// Writes the log lines a closed spool file owes (`writer_log`), then
/// puts the file back without its marks, for events that cannot be loaded
/// yet (the extension is not created in the database, or its objects are
/// of a version this library does not serve): their log lines do not wait
/// for that. A writer stopped in between writes them again (at least once).
pub fn log_owed_lines(path: &std::path::Path) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let text = spool_text::lossy_utf8(&bytes);
    let mut json = Vec::new();
    let Some(clean) = writer_log::unmark_file(&text, |l| log_owed_line(l, &mut json)) else {
        return;
    };
    // On disk before it replaces the file: the events are only there.
    let tmp = path.with_extension("unmarked");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        use std::io::Write;
        f.write_all(clean.as_bytes())?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => {}
        Err(e) => pgrx::log!(
            "ai_agent_safety: cannot put back {} without its marks: {e}; its log lines may be written again",
            path.display()
        ),
    }
}

/// The tables events go into: those of the extension's SQL version in this
/// database.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tables {
    /// 0.2.0 on: batches in `audit_batch`, single events in `audit_row`.
    Batched,
    /// 0.1.0, until ALTER EXTENSION ... UPDATE: one row per event in the
    /// table `audit_log`.
    Rows,
}

impl Tables {
    /// The table of one row per event.
    pub fn rows(self) -> &'static str {
        match self {
            Tables::Batched => "audit_row",
            Tables::Rows => "audit_log",
        }
    }
}

/// How a file's lines go into the log.
enum How {
    /// As batches into `audit_batch`.
    Batches(Vec<Batch>),
    /// Into `audit_row` with COPY, from this COPY binary file.
    Binary(Vec<u8>),
    /// Into `audit_row` with COPY, from the text lines.
    Text,
}

/// Stores the batches, each numbered from one value of the log's sequence.
fn store(c: &mut pgrx::spi::SpiClient<'_>, batches: &[Batch]) -> Result<(), pgrx::spi::Error> {
    let insert = c.prepare_mut(
        "INSERT INTO ai_agent_safety.audit_batch (first_id, events, ts_first, ts_last, rows) \
         VALUES (pg_catalog.nextval('ai_agent_safety.audit_row_id_seq'), $1, $2, $3, $4)",
        &[
            PgBuiltInOids::INT4OID.oid(),
            PgBuiltInOids::TIMESTAMPTZOID.oid(),
            PgBuiltInOids::TIMESTAMPTZOID.oid(),
            PgBuiltInOids::BYTEAOID.oid(),
        ],
    )?;
    for b in batches {
        let ts = |us: i64| TimestampWithTimeZone::try_from(us).ok();
        c.update(
            &insert,
            None,
            &[
                (b.events as i32).into(),
                ts(b.ts_first).into(),
                ts(b.ts_last).into(),
                b.rows.as_slice().into(),
            ],
        )?;
    }
    Ok(())
}
