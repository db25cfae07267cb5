//! The writer's maintenance of its database: the retention purge of old
//! events, and an `expired` event for every granted token that ran out
//! unused.

use super::loader::Tables;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

/// True inside a writer while it purges old events: the append-only trigger
/// lets exactly this through.
static PURGING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn purging() -> bool {
    PURGING.load(std::sync::atomic::Ordering::Relaxed)
}

fn set_purging(on: bool) {
    PURGING.store(on, std::sync::atomic::Ordering::Relaxed)
}

/// Retention purge and token-expiry events.
pub fn run(tables: Tables) {
    BackgroundWorker::transaction(|| {
        // Each part in a subtransaction: a lock it gave up on
        // (`writer::STEP_LOCK_TIMEOUT`) is logged, and tried again next time.
        set_purging(true);
        let r = crate::pg::in_subtransaction("the audit retention purge", || {
            Spi::connect_mut(|c| {
                // A batch goes once its newest event is past the retention.
                let mut purged = vec![format!("{} WHERE ts", tables.rows())];
                if tables == Tables::Batched {
                    purged.push("audit_batch WHERE ts_last".into());
                }
                for table in purged {
                    c.update(
                    &format!(
                        "DELETE FROM ai_agent_safety.{table} \
                          < pg_catalog.now() - pg_catalog.current_setting('ai_agent_safety.audit_retention')::interval"
                    ),
                    None,
                    &[],
                )?;
                }
                c.update(
                "DELETE FROM ai_agent_safety.audit_spool_done WHERE done_at < pg_catalog.now() - interval '7 days'",
                None,
                &[],
            )
            .map(|_| ())
            })
        });
        set_purging(false);
        if let Some(Err(e)) = r {
            pgrx::log!("ai_agent_safety: audit retention purge failed: {e}");
        }
        let expired = crate::pg::in_subtransaction("the token expiry records", || {
            Spi::connect_mut(|c| {
                let rows = tables.rows();
                let t = c.update(
                // A token whose row is locked (an agent using or cancelling it
                // in a transaction it keeps open) is skipped, and looked at
                // again by the next pass: waiting for it would hold the
                // writer, and every event of the database, for as long as
                // the agent liked.
                &format!("WITH e AS (UPDATE ai_agent_safety.tokens SET expiry_logged = true \
                             WHERE id IN (SELECT id FROM ai_agent_safety.tokens \
                                           WHERE state = 'granted' AND used_at IS NULL AND NOT expiry_logged \
                                             AND expires_at < pg_catalog.now() FOR UPDATE SKIP LOCKED) \
                             RETURNING *) \
                 INSERT INTO ai_agent_safety.{rows} \
                   (ts, database, session_user_name, current_user_name, task_id, source, event, decision, operation, object, reason, token) \
                 SELECT pg_catalog.now(), e.database, e.requested_by, e.requested_by, e.task_id, 'token', 'expired', 'info', \
                        e.operation, COALESCE(e.target_text, 'any object'), \
                        pg_catalog.format('approval token %s for %s on %s expired unused at %s', e.id, e.operation, \
                                          COALESCE(e.target_text, 'any object'), e.expires_at), e.id \
                   FROM e RETURNING pg_catalog.row_to_json({rows})::text"),
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
            })
        });
        if let Some(Ok(lines)) = expired {
            for l in lines {
                pgrx::log!("ai_agent_safety: {l}");
            }
        }
    });
}

/// When this database next needs the writer's maintenance with no events
/// coming in: a granted, unused token expires, or the oldest event passes the
/// retention (one second late, so the moment has surely passed): the
/// batch whose newest event is oldest (an index on ts_last), or the oldest
/// single row, the first loaded (by the primary key; its ts index is BRIN,
/// which cannot give a minimum without reading the table): events are
/// loaded in about the order of their ts, and one that was loaded late is
/// purged by the next pass.
pub fn next_time(tables: Tables) -> Option<i64> {
    // Unix epoch microseconds to PostgreSQL's (2000-01-01).
    const PG_EPOCH_US: i64 = 946_684_800_000_000;
    let rows = tables.rows();
    let batches = match tables {
        Tables::Batched => "(SELECT pg_catalog.min(ts_last) FROM ai_agent_safety.audit_batch)",
        Tables::Rows => "NULL",
    };
    BackgroundWorker::transaction(|| {
        Spi::get_one::<i64>(&format!(
            "SELECT (pg_catalog.date_part('epoch', x) * 1000000)::int8
               FROM (SELECT LEAST(
                        (SELECT pg_catalog.min(expires_at) FROM ai_agent_safety.tokens
                          WHERE state = 'granted' AND used_at IS NULL AND NOT expiry_logged),
                        LEAST((SELECT ts FROM ai_agent_safety.{rows} ORDER BY id LIMIT 1),
                              {batches})
                          + pg_catalog.current_setting('ai_agent_safety.audit_retention')::interval
                     ) AS x) t
              WHERE pg_catalog.isfinite(x)"
        ))
        .ok()
        .flatten()
    })
    .map(|unix_us| unix_us - PG_EPOCH_US + 1_000_000)
}
