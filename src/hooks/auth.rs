//! Login checks (ClientAuthentication_hook): expiring credentials and
//! environments, for every authentication method.
//!
//! The hook runs inside InitPostgres's transaction, before per-database and
//! per-role settings are applied and before SPI is usable, but with the shared
//! catalogs (pg_authid, pg_auth_members, pg_database, pg_db_role_setting)
//! readable. So it reads them directly. The environment check needs those
//! settings, so it runs later, from the show hook of the reported setting
//! `ai_agent_safety.agent_session` (before the client is told the
//! connection is ready), and again on the first statement.

use crate::audit::{self, Login};
use crate::{credentials, port, settings};
use aas_policy::Source;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::ffi::CString;

// SAFETY: written once by `install` (from _PG_init), then only read.
static mut PREV_AUTH: pgrx::pg_sys::libpq::ClientAuthentication_hook_type = None;

pub fn install() {
    // SAFETY: hook installation from _PG_init, keeping the previous hook.
    unsafe {
        PREV_AUTH = pg_sys::libpq::ClientAuthentication_hook;
        pg_sys::libpq::ClientAuthentication_hook = Some(client_authentication);
    }
}

/// The oid of database `name` (InvalidOid if none), read as PostgreSQL
/// reads it before a database is selected: a heap scan of pg_database.
/// (get_database_oid scans the name index, and right after the shared
/// catalogs' relcache init file was invalidated (autovacuum of pg_authid,
/// roles created and dropped) that index is not loaded yet: opening it
/// reads pg_class, which PostgreSQL cannot do before a database is
/// selected, and the login ended with FATAL "cannot read pg_class without
/// having selected a database".)
fn database_oid(name: &str) -> pg_sys::Oid {
    let mut found = pg_sys::InvalidOid;
    // SAFETY: a heap scan of a shared catalog during authentication, as
    // PostgreSQL's GetDatabaseTuple does; each tuple is read during the call.
    unsafe {
        crate::pg::scan_catalog(pg_sys::DatabaseRelationId, |tup, _| {
            let form = &*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_database);
            if std::ffi::CStr::from_ptr(form.datname.data.as_ptr()).to_bytes() == name.as_bytes() {
                found = form.oid;
            }
        })
    };
    found
}

#[pgrx::pg_guard]
// SAFETY: installed as ClientAuthentication_hook; PostgreSQL passes its Port and the status.
unsafe extern "C-unwind" fn client_authentication(port: *mut pg_sys::libpq::be::Port, status: i32) {
    // SAFETY: see PREV_AUTH; the previous hook is called as PostgreSQL would.
    if let Some(prev) = unsafe { PREV_AUTH } {
        unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| prev(port, status)) };
    }
    if status != pg_sys::STATUS_OK as i32 || port.is_null() {
        return;
    }
    // SAFETY: port is this backend's connection.
    let who = unsafe { port::client(port as *const std::ffi::c_void) };
    let Ok(cuser) = CString::new(who.user.clone()) else {
        return;
    };
    // SAFETY: catalog lookup with missing_ok = true.
    let role = unsafe { pg_sys::get_role_oid(cuser.as_ptr(), true) };
    if role == pg_sys::InvalidOid {
        return;
    }
    let facts = credentials::login_facts(role, &who.user);
    if !facts.is_agent {
        return;
    }
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let max = settings::max_credential_lifetime_seconds() * aas_policy::credentials::SECOND_US;
    if let Err(why) = aas_policy::check_login(&facts, now, max) {
        // The refusal stands whatever happens while recording it: an error
        // there (a catalog read before a database is selected can meet a
        // cache reset) must not replace the reason the agent is told.
        let _ = pgrx::PgTryBuilder::new(|| {
            audit::record_login(
                Source::Credentials,
                &Login {
                    db_oid: database_oid(&who.database),
                    database: &who.database,
                    user: &who.user,
                    client: &who.host,
                    application_name: &who.application_name,
                },
                &why,
            );
            true
        })
        .catch_others(|_| false)
        .execute();
        refuse_login(why, aas_policy::login_hint(&facts));
    }
    // An agent that logs in and never sends a statement still ends at its
    // VALID UNTIL.
    crate::expiry::arm(
        facts.valid_until_us,
        role,
        &facts.role,
        facts.valid_until_text.as_deref().unwrap_or_default(),
        now,
    );
    // Environments are settings (ALTER DATABASE / ALTER ROLE ... SET), which are
    // applied only after authentication and cannot be read here. The check runs
    // once they are: see `check_environment_at_login`.
    // SAFETY: see LOGIN_CHECK.
    unsafe { LOGIN_CHECK = Some((who.user, who.database)) };
}

/// Set by the auth hook for an agent login whose environment is still to check.
// SAFETY: a backend is single-threaded; set by the auth hook, taken by the
// first check after per-database settings are applied.
static mut LOGIN_CHECK: Option<(String, String)> = None;
/// The login-time answer, reported to the client as ai_agent_safety.agent_session.
// SAFETY: as LOGIN_CHECK.
static mut LOGGED_IN_AS_AGENT: bool = false;

/// Runs once per agent login, after per-database and per-role settings are
/// applied but before the client is told the connection is ready (from the
/// show hook of the GUC_REPORT setting ai_agent_safety.agent_session), and again
/// defensively on the statement path. Uses only settings: no catalog access.
pub fn check_environment_at_login() {
    // SAFETY: see LOGIN_CHECK.
    let Some((user, db)) = (unsafe { (*std::ptr::addr_of_mut!(LOGIN_CHECK)).take() }) else {
        return;
    };
    // SAFETY: see LOGIN_CHECK.
    unsafe { LOGGED_IN_AS_AGENT = true };
    let scope = settings::allowed_environments().filter(|v| !v.is_empty());
    let env = settings::environment();
    if let Err(why) = aas_policy::check_connect_environment(&user, scope.as_deref(), &db, env) {
        // Outside a transaction here: no catalog access, so the login variant.
        let who = port::this_backend();
        audit::record_login(
            Source::Environment,
            &Login {
                // SAFETY: reads a backend variable.
                db_oid: unsafe { pg_sys::MyDatabaseId },
                database: &db,
                user: &user,
                client: &who.host,
                application_name: &who.application_name,
            },
            &why,
        );
        refuse_login(
            why,
            format!(
                "If the agent should work there, a DBA can widen its scope: ALTER ROLE \"{user}\" SET ai_agent_safety.allowed_environments = '{}';",
                env.unwrap_or_default()
            ),
        );
    }
}

/// The show hook of `ai_agent_safety.agent_session`.
#[pgrx::pg_guard]
// SAFETY: a GUC show hook: returns a static string; #[pg_guard] catches panics.
pub unsafe extern "C-unwind" fn show_agent_session() -> *const std::ffi::c_char {
    check_environment_at_login();
    // SAFETY: see LOGIN_CHECK.
    if unsafe { LOGGED_IN_AS_AGENT } {
        c"on".as_ptr()
    } else {
        c"off".as_ptr()
    }
}

/// Refuses the login, the message ending with the next step (clients that
/// show only the primary message still tell the agent what to ask for).
fn refuse_login(message: String, hint: String) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        format!(
            "{message}; {}",
            aas_policy::way_forward::next_from_hint(&hint)
        ),
        "ai_agent_safety",
    )
    .set_hint(hint)
    .report(PgLogLevel::FATAL);
    unreachable!()
}
