//! The agent audit log: one event per decision about an agent.
//!
//! An event is written, at the moment of the decision, to
//! 1. the spool (`spool.rs`): an append-only file per database under
//!    `$PGDATA/ai_agent_safety_spool/`, one line of COPY text format per event,
//!    outside any transaction, so it survives the agent's rollback, a writer
//!    crash and a server restart; then
//! 2. the server log, as one line `ai_agent_safety: {json}`.
//!
//! A background writer per database (`writer.rs`) moves spooled events into
//! `ai_agent_safety.audit_log` within a fraction of a second, exactly once.

pub mod spool;
pub mod writer;

use crate::{identity, settings};
use pgrx::pg_sys;

/// Levels of `ai_agent_safety.audit_level`.
pub const LEVEL_DECISIONS: i32 = 0;
pub const LEVEL_WRITES: i32 = 1;
pub const LEVEL_ALL: i32 = 2;

/// One audit event. Empty strings are stored as NULL.
#[derive(Default, Debug, Clone)]
pub struct Event {
    pub source: &'static str,
    pub event: &'static str,
    pub decision: &'static str,
    pub operation: String,
    pub object: String,
    pub statement: String,
    pub reason: String,
    pub token: String,
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

/// The session's context, kept between events (audit_level = all records every
/// statement): rebuilt when the session or current user changes or a role
/// changes in the catalog (the identity cache epoch).
static mut CONTEXT: Option<((pg_sys::Oid, pg_sys::Oid, u64), Context)> = None;

fn session_context() -> &'static Context {
    unsafe {
        let key = (
            pg_sys::GetSessionUserId(),
            pg_sys::GetUserId(),
            identity::epoch(),
        );
        let cache = &mut *std::ptr::addr_of_mut!(CONTEXT);
        if !matches!(cache, Some((k, _)) if *k == key) {
            let port = pg_sys::MyProcPort as *const pg_sys::libpq::be::Port;
            let client_addr = if port.is_null() {
                String::new()
            } else {
                crate::classify::cstr((*port).remote_host)
            };
            *cache = Some((
                key,
                Context {
                    db_oid: pg_sys::MyDatabaseId,
                    database: crate::dbfacts::current_database_name(),
                    session_user: identity::session_user_name(),
                    current_user: identity::current_user_name(),
                    client_addr,
                },
            ));
        }
        &cache.as_ref().unwrap().1
    }
}

/// The session's application_name, as it is now.
fn application_name() -> std::borrow::Cow<'static, str> {
    unsafe {
        let p = pg_sys::application_name;
        if p.is_null() {
            "".into()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy()
        }
    }
}

/// Cuts the statement text at `ai_agent_safety.audit_statement_max` characters,
/// showing the cut.
pub fn cut_statement(s: &str) -> std::borrow::Cow<'_, str> {
    let max = settings::audit_statement_max();
    // No more bytes than the limit: no more characters either.
    if s.len() <= max {
        return s.into();
    }
    let n = s.chars().count();
    if n <= max {
        s.into()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}... [cut: {n} characters in all]").into()
    }
}

/// Spools the event (a COPY line), then writes it to the server log (JSON), so
/// nothing in the log can be missing from the table.
fn emit(e: &Event, c: &Context, application_name: &str, task_id: &str) {
    use aas_policy::audit_record::{write_copy_line, write_json, Value::*};
    let mut ts = String::with_capacity(27);
    aas_policy::time::write_iso_utc(&mut ts, unsafe { pg_sys::GetCurrentTimestamp() });
    let statement = cut_statement(&e.statement);
    let record = [
        Text(&ts),
        Text(&c.database),
        Int(unsafe { pg_sys::MyProcPid } as i64),
        Text(&c.client_addr),
        Text(application_name),
        Text(&c.session_user),
        Text(&c.current_user),
        Text(task_id),
        Text(e.source),
        Text(e.event),
        Text(e.decision),
        Text(&e.operation),
        Text(&e.object),
        Text(&statement),
        Text(&e.reason),
        Text(&e.token),
    ];
    if c.db_oid != pg_sys::InvalidOid {
        let mut line = String::with_capacity(256 + statement.len() + e.reason.len());
        write_copy_line(&mut line, &record);
        line.push('\n');
        spool::append(c.db_oid, line.as_bytes());
    }
    let mut msg = String::with_capacity(384 + statement.len() + e.reason.len());
    msg.push_str("ai_agent_safety: ");
    write_json(&mut msg, &record);
    msg.push('\0');
    // write_json escapes every control character: the only NUL is the last.
    if let Ok(msg) = std::ffi::CStr::from_bytes_with_nul(msg.as_bytes()) {
        server_log(msg);
    }
}

/// Writes a message to the server log at LOG level, without the STATEMENT
/// line PostgreSQL would add to it: the JSON holds the statement (cut at
/// audit_statement_max), and with audit_level = all a second copy of every
/// statement would double what each event costs the log.
fn server_log(msg: &std::ffi::CStr) {
    use std::ffi::{c_char, c_int};
    // Not in pgrx's bindings (it wraps them in its own ereport).
    extern "C-unwind" {
        fn errstart(elevel: c_int, domain: *const c_char) -> bool;
        fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
    }
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

/// Records an event of the current session.
pub fn record(e: Event) {
    emit(
        &e,
        session_context(),
        &application_name(),
        settings::task_id().unwrap_or(""),
    );
}

/// Records a login refusal, before any database session exists: it goes to the
/// spool of the database the agent tried to reach.
pub fn record_login(
    source: &'static str,
    db_oid: pg_sys::Oid,
    database: &str,
    user: &str,
    client: &str,
    app: &str,
    reason: &str,
) {
    let c = Context {
        db_oid,
        database: database.to_string(),
        session_user: user.to_string(),
        current_user: user.to_string(),
        client_addr: client.to_string(),
    };
    let e = Event {
        source,
        event: "login_refused",
        decision: "refuse",
        reason: reason.to_string(),
        ..Default::default()
    };
    emit(&e, &c, app, "");
}
