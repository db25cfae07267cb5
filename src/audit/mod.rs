//! The agent audit log: one event per decision about an agent.
//!
//! An event is written, at the moment of the decision, to
//! 1. the spool (`spool`): an append-only file per database under
//!    `$PGDATA/ai_agent_safety_spool/`, one line of COPY text format per event,
//!    outside any transaction, so it survives the agent's rollback, a writer
//!    crash and a server restart; then
//! 2. the server log, as one line `ai_agent_safety: {json}`.
//!
//! An allowed statement that `audit_level` records goes only where
//! `audit_destination` says (`aas_policy::AuditDestination::routes`); under
//! `both`, its log line is written by the writer as it loads the event
//! (`aas_policy::audit::writer_log`), not by the agent's backend.
//!
//! Both encodings come from the one definition of a record,
//! `aas_policy::audit::record::Record`. A background writer per database
//! (`writer`, started by a backend or the `launcher`) moves spooled events
//! into `ai_agent_safety.audit_log` within a fraction of a second, exactly
//! once (`loader`), and keeps the table trimmed (`maintenance`).

pub mod launcher;
pub mod loader;
pub mod maintenance;
pub mod segment;
pub mod spool;
pub mod writer;

use crate::{dbfacts, identity, pg, settings};
use aas_policy::audit::record::{write_both, write_copy_line, write_json, Record};
use aas_policy::audit::writer_log;
use aas_policy::{EventKind, Source, Verdict};
use pgrx::pg_sys;
use std::borrow::Cow;

/// One audit event: what was decided, about what. Where and who are filled
/// in from the session. Empty strings are stored as NULL.
#[derive(Debug, Clone)]
pub struct Event {
    pub source: Source,
    pub event: EventKind,
    pub decision: Verdict,
    pub operation: String,
    pub object: String,
    pub statement: String,
    pub reason: String,
    pub token: String,
}

impl Event {
    pub fn new(source: Source, event: EventKind, decision: Verdict) -> Event {
        Event {
            source,
            event,
            decision,
            operation: String::new(),
            object: String::new(),
            statement: String::new(),
            reason: String::new(),
            token: String::new(),
        }
    }
}

/// Where and who, filled from the running session (application_name, which a
/// session may change at any time, is read per event).
struct Context {
    db_oid: pg_sys::Oid,
    database: String,
    session_user: String,
    current_user: String,
    client_addr: String,
}

type ContextKey = (pg_sys::Oid, pg_sys::Oid, u64);

// Kept between events (audit_level = all records every statement), rebuilt
// when the session or current user changes or a role changes in the catalog
// (the identity cache epoch).
// SAFETY: a backend is single-threaded; only `session_context` touches it.
static mut CONTEXT: Option<(ContextKey, Context)> = None;

/// The client address of this backend's connection (empty for none).
fn client_addr() -> String {
    crate::port::this_backend().host
}

fn session_context() -> &'static Context {
    // SAFETY: reads backend variables.
    let key = unsafe {
        (
            pg_sys::GetSessionUserId(),
            pg_sys::GetUserId(),
            identity::epoch(),
        )
    };
    // SAFETY: see CONTEXT.
    let cache = unsafe { &mut *std::ptr::addr_of_mut!(CONTEXT) };
    if !matches!(cache, Some((k, _)) if *k == key) {
        *cache = Some((
            key,
            Context {
                // SAFETY: reads a backend variable.
                db_oid: unsafe { pg_sys::MyDatabaseId },
                database: dbfacts::current_database_name(),
                session_user: pg::session_user_name(),
                current_user: pg::current_user_name(),
                client_addr: client_addr(),
            },
        ));
    }
    &cache.as_ref().expect("filled above").1
}

/// The session's application_name, as it is now.
fn application_name() -> Cow<'static, str> {
    // SAFETY: application_name is NULL or a NUL-terminated setting value.
    unsafe {
        let p = pg_sys::application_name;
        if p.is_null() {
            "".into()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy()
        }
    }
}

/// Cuts the statement text at `ai_agent_safety.audit_statement_max`
/// characters, keeping its head and its tail and showing the cut, so a
/// long leading comment cannot push the statement itself out of the log.
pub fn cut_statement(s: &str) -> Cow<'_, str> {
    aas_policy::audit::cut_text(s, settings::audit_statement_max())
}

/// Spools the event (a COPY line), then writes it to the server log (JSON),
/// so nothing in the log can be missing from the table; an allowed statement
/// goes only where `ai_agent_safety.audit_destination` says, and only that
/// encoding is built, and under `both` its log line is the writer's, written
/// as it loads the line (`aas_policy::audit::writer_log`). When the spool
/// cannot be written, the ERROR (the statement does not run) is raised after
/// the log line, so the event still reaches the log.
fn emit(e: &Event, c: &Context, application_name: &str, task_id: &str) {
    let at = spool::now();
    let ts = aas_policy::time::iso_utc(at);
    let statement = cut_statement(&e.statement);
    let record = Record {
        ts: &ts,
        database: &c.database,
        // SAFETY: reads a backend variable.
        pid: Some(unsafe { pg_sys::MyProcPid }),
        client_addr: &c.client_addr,
        application_name,
        session_user_name: &c.session_user,
        current_user_name: &c.current_user,
        task_id,
        source: e.source,
        event: e.event,
        decision: e.decision,
        operation: &e.operation,
        object: &e.object,
        statement: &statement,
        reason: &e.reason,
        token: &e.token,
    };
    let routes = settings::audit_destination().routes(e.source, e.event);
    let table = routes.table && c.db_oid != pg_sys::InvalidOid;
    // The writer writes this event's log line as it loads it
    // (`aas_policy::audit::writer_log`), where it loads events now.
    let later = routes.log_by_writer && table && writer_loads_here();
    let now = routes.log && !later;
    let size = statement.len() + e.reason.len();
    let mut line = String::with_capacity(if table { 257 + size } else { 0 });
    let mut msg = Vec::with_capacity(if routes.log { 384 + size } else { 0 });
    if routes.log {
        msg.extend_from_slice(b"ai_agent_safety: ");
    }
    if later {
        line.push(writer_log::MARK);
    }
    match (table, now) {
        (true, true) => write_both(&mut line, &mut msg, &record),
        (true, false) => write_copy_line(&mut line, &record),
        (false, true) => write_json(&mut msg, &record),
        (false, false) => {}
    }
    let spooled = if table {
        line.push('\n');
        // A login refusal's backend ends at once: the shared file.
        let via = if e.event == EventKind::LoginRefused {
            spool::Via::Shared
        } else {
            spool::Via::Segment
        };
        spool::append(c.db_oid, line.as_bytes(), via, at)
    } else {
        Ok(spool::Appended {
            start_writer: false,
            marked: false,
        })
    };
    // An event the spool could not take, or took while no writer ran to
    // write its line, is logged here all the same.
    let owed_here = later && !matches!(&spooled, Ok(a) if a.marked);
    if now || owed_here {
        if later {
            write_json(&mut msg, &record);
        }
        // write_json escapes every control character: the only NUL is the last.
        msg.push(0);
        if let Ok(msg) = std::ffi::CStr::from_bytes_with_nul(&msg) {
            server_log(msg);
        }
    }
    match spooled {
        Ok(a) => {
            if a.start_writer {
                launcher::start_writer(c.db_oid.to_u32());
            }
        }
        Err(e) => pgrx::error!("{e}"),
    }
}

/// Does this database's audit writer load events now, so that it writes
/// the log lines it owes at once? Not on a standby (no writer runs there
/// until it is promoted), nor where the extension is not created: there the
/// events wait for CREATE EXTENSION, and a waiting database's writer slot
/// can be taken by another's, so an agent with many such databases could
/// keep its writer from coming back. Where it does not, the backend writes
/// the line itself. (The extension's schema comes and goes with it, and is
/// cached until a schema changes.)
fn writer_loads_here() -> bool {
    // SAFETY: reads shared state and a backend variable; raises nothing.
    let readable = unsafe { !pg_sys::RecoveryInProgress() && pg_sys::IsTransactionState() };
    readable && pg::own_namespace() != pg_sys::InvalidOid
}

/// Writes a message to the server log at LOG level, without the STATEMENT
/// line PostgreSQL would add to it: the JSON holds the statement (cut at
/// audit_statement_max), and with audit_level = all a second copy of every
/// statement would double what each event costs the log.
pub fn server_log(msg: &std::ffi::CStr) {
    use std::ffi::{c_char, c_int};
    // Not in pgrx's bindings (it wraps them in its own ereport).
    extern "C-unwind" {
        fn errstart(elevel: c_int, domain: *const c_char) -> bool;
        fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
    }
    // SAFETY: the ereport protocol (errstart, details, errfinish) inside the
    // FFI guard, so an error while logging becomes a PostgreSQL error.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            if errstart(pg_sys::LOG as c_int, std::ptr::null()) {
                pg_sys::errmsg_internal(c"%s".as_ptr(), msg.as_ptr());
                pg_sys::errhidestmt(true);
                pg_sys::errhidecontext(true);
                errfinish(
                    c"src/audit/mod.rs".as_ptr(),
                    line!() as c_int,
                    c"server_log".as_ptr(),
                );
            }
        })
    }
}

/// Records an event of the current session (with the task its statement
/// names in a comment tag, or else the session's).
pub fn record(e: Event) {
    let task = crate::presented::task_of(&e.statement);
    emit(
        &e,
        session_context(),
        &application_name(),
        task.as_deref().unwrap_or(""),
    );
}

/// Records an event of the current session about `task` (a review's,
/// whatever the session's own task is).
pub fn record_for_task(e: Event, task: &str) {
    emit(&e, session_context(), &application_name(), task);
}

/// Fills the session's audit context now, inside a statement, for an event
/// that may have to be recorded where the catalog cannot be read (at exit).
pub fn prepare_context() {
    session_context();
}

/// Records with the context last filled, reading no catalog: for an event
/// at the end of the backend. A session that never ran a statement has no
/// context yet; then the connection's own names are used. False when there
/// is no database to record in.
pub fn record_with_last_context(e: Event) -> bool {
    // SAFETY: see CONTEXT.
    let filled = unsafe { (*std::ptr::addr_of!(CONTEXT)).as_ref() }.map(|(_, c)| c);
    let from_connection;
    let c = match filled {
        Some(c) => c,
        None => {
            // SAFETY: reads a backend variable.
            if unsafe { pg_sys::MyProcPort.is_null() } {
                return false;
            }
            let crate::port::Client { user, database, .. } = crate::port::this_backend();
            from_connection = Context {
                // SAFETY: reads a backend variable.
                db_oid: unsafe { pg_sys::MyDatabaseId },
                database,
                session_user: user.clone(),
                current_user: user,
                client_addr: client_addr(),
            };
            &from_connection
        }
    };
    if c.db_oid == pg_sys::InvalidOid {
        return false;
    }
    emit(
        &e,
        c,
        &application_name(),
        settings::task_id().unwrap_or(""),
    );
    true
}

/// Who tried to log in, and from where, for a login refusal.
pub struct Login<'a> {
    pub db_oid: pg_sys::Oid,
    pub database: &'a str,
    pub user: &'a str,
    pub client: &'a str,
    pub application_name: &'a str,
}

/// Records a login refusal, before any database session exists: it goes to the
/// spool of the database the agent tried to reach.
pub fn record_login(source: Source, login: &Login, reason: &str) {
    let c = Context {
        db_oid: login.db_oid,
        database: login.database.to_string(),
        session_user: login.user.to_string(),
        current_user: login.user.to_string(),
        client_addr: login.client.to_string(),
    };
    let e = Event {
        reason: reason.to_string(),
        ..Event::new(source, EventKind::LoginRefused, Verdict::Refuse)
    };
    emit(&e, &c, login.application_name, "");
}
