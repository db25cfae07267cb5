//! The agent audit log: one event per decision about an agent.
//!
//! An event is written, at the moment of the decision, to
//! 1. the spool (`spool.rs`): an append-only file per database under
//!    `$PGDATA/ai_agent_safety_spool/`, outside any transaction, so it survives
//!    the agent's rollback, a writer crash and a server restart; then
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

/// Where and who, filled from the running session.
#[derive(Clone)]
struct Context {
    db_oid: pg_sys::Oid,
    database: String,
    session_user: String,
    current_user: String,
    client_addr: String,
    application_name: String,
}

/// The session's context, kept between events (audit_level = all records every
/// statement): rebuilt when the session or current user changes or a role
/// changes in the catalog (the identity cache epoch).
static mut CONTEXT: Option<((pg_sys::Oid, pg_sys::Oid, u64), Context)> = None;

fn session_context() -> Context {
    unsafe {
        let key = (
            pg_sys::GetSessionUserId(),
            pg_sys::GetUserId(),
            identity::epoch(),
        );
        let application_name = crate::classify::cstr(pg_sys::GetConfigOption(
            c"application_name".as_ptr(),
            true,
            false,
        ));
        let cache = &mut *std::ptr::addr_of_mut!(CONTEXT);
        if let Some((k, c)) = cache {
            if *k == key {
                let mut c = c.clone();
                c.application_name = application_name;
                return c;
            }
        }
        let port = pg_sys::MyProcPort as *const pg_sys::libpq::be::Port;
        let client_addr = if port.is_null() {
            String::new()
        } else {
            crate::classify::cstr((*port).remote_host)
        };
        let c = Context {
            db_oid: pg_sys::MyDatabaseId,
            database: crate::dbfacts::current_database_name(),
            session_user: identity::session_user_name(),
            current_user: identity::current_user_name(),
            client_addr,
            application_name,
        };
        *cache = Some((key, c.clone()));
        c
    }
}

fn push_json_str(out: &mut String, key: &str, val: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    if val.is_empty() {
        out.push_str("null");
    } else {
        out.push('"');
        for c in val.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(',');
}

pub use aas_policy::time::iso_utc;

/// Cuts the statement text at `ai_agent_safety.audit_statement_max` characters,
/// showing the cut.
pub fn cut_statement(s: &str) -> String {
    let max = settings::audit_statement_max();
    let n = s.chars().count();
    if n <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}... [cut: {n} characters in all]")
    }
}

fn to_json(e: &Event, c: &Context, task_id: &str) -> String {
    let mut o = String::with_capacity(512);
    o.push('{');
    push_json_str(
        &mut o,
        "ts",
        &iso_utc(unsafe { pg_sys::GetCurrentTimestamp() }),
    );
    push_json_str(&mut o, "database", &c.database);
    o.push_str(&format!("\"pid\":{},", unsafe { pg_sys::MyProcPid }));
    push_json_str(&mut o, "client_addr", &c.client_addr);
    push_json_str(&mut o, "application_name", &c.application_name);
    push_json_str(&mut o, "session_user_name", &c.session_user);
    push_json_str(&mut o, "current_user_name", &c.current_user);
    push_json_str(&mut o, "task_id", task_id);
    push_json_str(&mut o, "source", e.source);
    push_json_str(&mut o, "event", e.event);
    push_json_str(&mut o, "decision", e.decision);
    push_json_str(&mut o, "operation", &e.operation);
    push_json_str(&mut o, "object", &e.object);
    push_json_str(&mut o, "statement", &cut_statement(&e.statement));
    push_json_str(&mut o, "reason", &e.reason);
    push_json_str(&mut o, "token", &e.token);
    o.pop();
    o.push('}');
    o
}

/// Records an event of the current session: spool first, then the server log,
/// so nothing in the log can be missing from the table.
pub fn record(e: Event) {
    let c = session_context();
    let line = to_json(&e, &c, settings::task_id().unwrap_or(""));
    spool::append(c.db_oid, &line);
    pgrx::log!("ai_agent_safety: {line}");
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
        application_name: app.to_string(),
    };
    let e = Event {
        source,
        event: "login_refused",
        decision: "refuse",
        reason: reason.to_string(),
        ..Default::default()
    };
    let line = to_json(&e, &c, "");
    if db_oid != pg_sys::InvalidOid {
        spool::append(db_oid, &line);
    }
    pgrx::log!("ai_agent_safety: {line}");
}
