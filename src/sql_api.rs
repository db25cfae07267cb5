//! The extension's C-language SQL functions, all in schema ai_agent_safety.
//! The SQL API users call (tokens, credentials, audit views) is written in
//! SQL in `sql/`, on top of these.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// True when the library was loaded by shared_preload_libraries, so the hooks
/// run in every session. CREATE EXTENSION refuses to proceed otherwise.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init` when loading through shared_preload_libraries.
pub fn mark_preloaded() {
    PRELOADED.store(true, Relaxed);
}

fn preloaded() -> bool {
    PRELOADED.load(Relaxed)
}

#[pgrx::pg_schema]
pub mod ai_agent_safety {
    use crate::audit::spool::{Counters, SPOOL};
    use aas_policy::{EventKind, Source, Verdict, WriterState};
    use pgrx::prelude::*;

    /// Fails unless the library was preloaded: CREATE EXTENSION must not leave a
    /// database half-protected.
    #[pg_extern]
    fn assert_preloaded() {
        if !crate::sql_api::preloaded() {
            pgrx::error!("ai_agent_safety must be loaded through shared_preload_libraries");
        }
    }

    /// The version of the loaded library; `pg_extension.extversion` is the
    /// version of the SQL objects. This library serves SQL objects from
    /// `aas_policy::versions::OLDEST_SQL_SERVED` up to its own version.
    #[pg_extern(stable, parallel_safe)]
    fn library_version() -> &'static str {
        crate::pg::LIBRARY_VERSION
    }

    /// Is this role an agent (a member of the agent group, superuser or not)?
    #[pg_extern(stable, strict)]
    fn role_is_agent(role: pg_sys::Oid) -> bool {
        crate::identity::role_is_agent(role)
    }

    /// Is the calling session an agent (session_user or current_user)?
    #[pg_extern(stable)]
    fn session_is_agent() -> bool {
        crate::identity::session_is_agent()
    }

    /// Is code an agent owns running now (a function, trigger, rule or view
    /// of an agent, in whoever's session)? Deciding approvals and issuing
    /// credentials refuse it: an approver's query must not decide for the
    /// agent that planted the code.
    #[pg_extern(volatile)]
    fn agent_code_running() -> bool {
        crate::agent_code::running().is_some()
    }

    /// The form of one statement, read with pg_catalog first on the
    /// requester's search_path: what a token bound to the statement compares.
    #[pg_extern(volatile, strict)]
    fn _statement_form(statement: &str, search_path: &str) -> String {
        match crate::statement_form::for_request(statement, search_path) {
            Ok(form) => form,
            Err(why) => {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("the statement cannot be approved as given: {why}")
                );
            }
        }
    }

    /// What the statement given with a request does, read as the calling
    /// role: a row per operation class it performs (a MERGE may both delete
    /// and update), with the object. Raises a clear error when it cannot be
    /// bound.
    #[pg_extern(volatile)]
    fn _statement_facts(
        statement: &str,
    ) -> TableIterator<
        'static,
        (
            name!(operation, String),
            name!(classid, pg_sys::Oid),
            name!(objid, pg_sys::Oid),
        ),
    > {
        match crate::statement_form::requested(statement) {
            Ok(r) => TableIterator::new(
                r.classes
                    .into_iter()
                    .map(move |c| (c.to_string(), r.target.0, r.target.1)),
            ),
            Err(why) => {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("the statement cannot be approved as given: {why}")
                );
            }
        }
    }

    /// The preview of a request's DELETE or UPDATE: its dry run, as the
    /// calling role, in a subtransaction that is rolled back. Raises a
    /// clear error when the dry run fails or takes longer than
    /// ai_agent_safety.preview_timeout. The preview is kept for the request
    /// that follows in this transaction (`_take_preview`).
    #[pg_extern(volatile, strict)]
    fn _preview(statement: &str, search_path: &str) -> pgrx::JsonB {
        match crate::dry_run::preview(
            statement,
            search_path,
            crate::settings::preview_timeout_ms(),
        ) {
            Ok((v, _)) => pgrx::JsonB(v),
            Err(why) => {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("the statement cannot be approved as given: {why}"),
                    "Nothing it did was kept, and no token was created."
                );
            }
        }
    }

    /// Makes the current transaction a review (agents, in a transaction
    /// block, in a database with require_approval on): its DELETE and
    /// UPDATE run without tokens, and it ends with PREPARE TRANSACTION for
    /// an approver to COMMIT PREPARED.
    #[pg_extern(volatile)]
    fn begin_review(task_id: Option<&str>, reason: default!(Option<&str>, "NULL")) -> String {
        crate::review::begin(task_id, reason)
    }

    /// The prepared reviews of this database, as their metadata (JSON);
    /// `pending_reviews` keeps those whose transaction is still prepared.
    #[pg_extern(volatile)]
    fn _reviews() -> SetOfIterator<'static, pgrx::JsonB> {
        // SAFETY: reads a backend variable.
        let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
        SetOfIterator::new(
            crate::review::file::list(db)
                .into_iter()
                .filter_map(|(_, m)| serde_json::to_value(m).ok().map(pgrx::JsonB)),
        )
    }

    /// The recycle bin's entries held now, as their metadata (JSON), for
    /// `recycle_bin`. Agents are refused.
    #[pg_extern(volatile)]
    fn _recycle_bin() -> SetOfIterator<'static, pgrx::JsonB> {
        SetOfIterator::new(
            crate::recycle::entries()
                .into_iter()
                .filter_map(|e| serde_json::to_value(e).ok().map(pgrx::JsonB)),
        )
    }

    /// True for whoever may read the recycle bin; refuses an agent (the
    /// view's rows of this database's kept TRUNCATEs ask it).
    #[pg_extern(volatile)]
    fn _recycle_bin_readable() -> bool {
        crate::recycle::entries_readable()
    }

    /// Undoes one recycle bin entry: a dropped database is renamed back
    /// (or to `new_name`) and opened again. Approvers and superusers only.
    #[pg_extern(volatile)]
    fn restore_dropped(id: i64, new_name: default!(Option<&str>, "NULL")) -> String {
        crate::recycle::restore(id, new_name)
    }

    /// Drops one recycle bin entry for good, now. Approvers and superusers
    /// only.
    #[pg_extern(volatile, strict)]
    fn purge_dropped(id: i64) -> String {
        crate::recycle::purge(id)
    }

    /// The preview `_preview` made for exactly this statement and
    /// search_path in this transaction (and since any subtransaction rolled
    /// back), taken once: `{"preview": [...], "rows": n}`; NULL when there
    /// is none.
    #[pg_extern(volatile, strict)]
    fn _take_preview(statement: &str, search_path: &str) -> Option<pgrx::JsonB> {
        crate::dry_run::take(statement, search_path)
            .map(|(v, n)| pgrx::JsonB(serde_json::json!({"preview": v, "rows": n})))
    }

    /// Whether a TRUNCATE or DROP reaches past its object: CASCADE, and
    /// (TRUNCATE without ONLY) its children. Read from the raw parse tree.
    #[pg_extern(immutable, strict)]
    fn _statement_reach(
        statement: &str,
    ) -> TableIterator<'static, (name!(cascade, bool), name!(children, bool))> {
        match crate::statement_form::reach(statement) {
            Ok((cascade, children)) => TableIterator::once((cascade, children)),
            Err(why) => {
                pgrx::ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("the statement cannot be approved as given: {why}")
                );
            }
        }
    }

    /// Rolls back every prepared transaction `role` owns, in every database
    /// (for revoke_agent_credentials); returns how many. Not executable by
    /// PUBLIC.
    #[pg_extern(volatile, strict)]
    fn _roll_back_prepared(role: &str) -> i32 {
        crate::prepared::roll_back_all_of(role).0
    }

    /// Records an audit event from the extension's SQL functions (token and
    /// credential events). Not executable by PUBLIC.
    #[pg_extern]
    fn _audit(
        source: &str,
        event: &str,
        decision: &str,
        operation: Option<&str>,
        object: Option<&str>,
        reason: Option<&str>,
        token: Option<pgrx::Uuid>,
    ) {
        fn known<T>(v: &str, parsed: Option<T>) -> T {
            parsed.unwrap_or_else(|| {
                pgrx::error!("ai_agent_safety: unknown audit vocabulary \"{v}\"")
            })
        }
        // The SQL API records only its own events: requests, decisions,
        // credential changes.
        let event_kind = known(
            event,
            EventKind::parse(event).filter(|e| {
                matches!(
                    e,
                    EventKind::Requested
                        | EventKind::Granted
                        | EventKind::Denied
                        | EventKind::Cancelled
                        | EventKind::Issued
                        | EventKind::Revoked
                )
            }),
        );
        let verdict = known(
            decision,
            Verdict::parse(decision).filter(|v| *v != Verdict::WouldRefuse),
        );
        let e = crate::audit::Event {
            operation: operation.unwrap_or("").to_string(),
            object: object.unwrap_or("").to_string(),
            reason: reason.unwrap_or("").to_string(),
            token: token.map(|t| t.to_string()).unwrap_or_default(),
            ..crate::audit::Event::new(known(source, Source::parse(source)), event_kind, verdict)
        };
        crate::audit::record(e);
    }

    /// True only inside the audit writer's retention purge.
    #[pg_extern(volatile)]
    fn audit_writer_purging() -> bool {
        crate::audit::maintenance::purging()
    }

    /// The events of one `audit_batch` row, numbered from its first id:
    /// what the view `ai_agent_safety.audit_log` shows of it.
    #[pg_extern(immutable, strict, parallel_safe)]
    #[allow(clippy::type_complexity)]
    fn _audit_events(
        rows: &[u8],
        first_id: i64,
    ) -> TableIterator<
        'static,
        (
            name!(id, i64),
            name!(ts, Option<TimestampWithTimeZone>),
            name!(database, Option<String>),
            name!(pid, Option<i32>),
            name!(client_addr, Option<String>),
            name!(application_name, Option<String>),
            name!(session_user_name, Option<String>),
            name!(current_user_name, Option<String>),
            name!(task_id, Option<String>),
            name!(source, Option<String>),
            name!(event, Option<String>),
            name!(decision, Option<String>),
            name!(operation, Option<String>),
            name!(object, Option<String>),
            name!(statement, Option<String>),
            name!(reason, Option<String>),
            name!(token, Option<pgrx::Uuid>),
        ),
    > {
        use aas_policy::audit::batch::{self, Value};
        // Batches hold UTF-8, and are stored only where the database's
        // text is UTF-8 (or unchecked): elsewhere their texts would not be
        // valid text of the database.
        if !crate::pg::database_stores_utf8() {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "ai_agent_safety: audit batches are read only in a UTF8 or SQL_ASCII database"
            );
        }
        let events = batch::decode(rows).unwrap_or_else(|e| {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!("ai_agent_safety: {e}")
            );
        });
        let text = |v: Value| match v {
            Value::Text(t) => Some(t.to_string()),
            _ => None,
        };
        let out: Vec<_> = events
            .into_iter()
            .enumerate()
            .map(|(i, [ts, database, pid, client_addr, application_name, session_user_name, current_user_name, task_id, source, event, decision, operation, object, statement, reason, token])| {
                (
                    first_id.checked_add(i as i64).unwrap_or_else(|| {
                        ereport!(
                            ERROR,
                            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                            "ai_agent_safety: audit batch ids out of range"
                        );
                    }),
                    match ts {
                        Value::Timestamp(us) => TimestampWithTimeZone::try_from(us).ok(),
                        _ => None,
                    },
                    text(database),
                    match pid {
                        Value::Int4(n) => Some(n),
                        _ => None,
                    },
                    text(client_addr),
                    text(application_name),
                    text(session_user_name),
                    text(current_user_name),
                    text(task_id),
                    text(source),
                    text(event),
                    text(decision),
                    text(operation),
                    text(object),
                    text(statement),
                    text(reason),
                    match token {
                        Value::Uuid(b) => Some(pgrx::Uuid::from_bytes(b)),
                        _ => None,
                    },
                )
            })
            .collect();
        TableIterator::new(out)
    }

    /// The spool and writer counters behind ai_agent_safety.audit_stats.
    #[pg_extern(volatile)]
    fn _audit_stats() -> TableIterator<
        'static,
        (
            name!(queue_depth, i64),
            name!(events_spooled, i64),
            name!(events_written, i64),
            name!(events_dropped, i64),
            name!(writer_state, String),
            name!(writers, String),
        ),
    > {
        // SAFETY: reads a backend variable.
        let here = unsafe { pg_sys::MyDatabaseId.to_u32() };
        let (writers, spooled, written, dropped) = {
            let s = SPOOL.share();
            let c = &s.counters;
            (
                s.writers,
                Counters::get(&c.spooled),
                Counters::get(&c.written),
                Counters::get(&c.dropped),
            )
        };
        let active = || writers.iter().filter(|w| w.state != WriterState::Free);
        let mine = active()
            .find(|w| w.dboid == here)
            .map(|w| format!("{} (pid {})", w.state, w.pid))
            .unwrap_or_else(|| "idle (started on demand)".into());
        let all: Vec<String> = active()
            .map(|w| format!("db {}: {} pid {}", w.dboid, w.state, w.pid))
            .collect();
        TableIterator::once((
            crate::audit::spool::pending_lines() as i64,
            spooled as i64,
            written as i64,
            dropped as i64,
            mine,
            all.join("; "),
        ))
    }
}
