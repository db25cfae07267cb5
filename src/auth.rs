//! Login checks (ClientAuthentication_hook): expiring credentials and
//! environments, for every authentication method.
//!
//! The hook runs inside InitPostgres's transaction, before per-database and
//! per-role settings are applied and before SPI is usable, but with the shared
//! catalogs (pg_authid, pg_auth_members, pg_database, pg_db_role_setting)
//! readable. So it reads them directly.

use crate::credentials;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

static mut PREV_AUTH: pgrx::pg_sys::libpq::ClientAuthentication_hook_type = None;

pub fn install() {
    unsafe {
        PREV_AUTH = pg_sys::libpq::ClientAuthentication_hook;
        pg_sys::libpq::ClientAuthentication_hook = Some(client_authentication);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn client_authentication(port: *mut pg_sys::libpq::be::Port, status: i32) {
    if let Some(prev) = PREV_AUTH {
        pg_sys::ffi::pg_guard_ffi_boundary(|| prev(port, status));
    }
    if status != pg_sys::STATUS_OK as i32 || port.is_null() {
        return;
    }
    let user = crate::classify::cstr((*port).user_name);
    let Ok(cuser) = std::ffi::CString::new(user.clone()) else {
        return;
    };
    let role = pg_sys::get_role_oid(cuser.as_ptr(), true);
    if role == pg_sys::InvalidOid {
        return;
    }
    let facts = credentials::login_facts(role, &user);
    if !facts.is_agent {
        return;
    }
    let now = pg_sys::GetCurrentTimestamp();
    let max =
        crate::settings::max_credential_lifetime_seconds() * aas_policy::credentials::SECOND_US;
    if let Err(why) = aas_policy::check_login(&facts, now, max) {
        let db = crate::classify::cstr((*port).database_name);
        let cdb = std::ffi::CString::new(db.clone()).unwrap_or_default();
        crate::audit::record_login(
            "credentials",
            pg_sys::get_database_oid(cdb.as_ptr(), true),
            &db,
            &user,
            &crate::classify::cstr((*port).remote_host),
            &crate::classify::cstr((*port).application_name),
            &why,
        );
        refuse_login(why, format!(
            "A DBA can issue short-lived credentials: SELECT issue_agent_credentials('{user}', '1 hour');"
        ));
    }
    // Environments are settings (ALTER DATABASE / ALTER ROLE ... SET), which are
    // applied only after authentication and cannot be read here. The check runs
    // once they are: see `check_environment_at_login`.
    LOGIN_CHECK = Some((user, crate::classify::cstr((*port).database_name)));
}

/// Set by the auth hook for an agent login whose environment is still to check.
static mut LOGIN_CHECK: Option<(String, String)> = None;
/// The login-time answer, reported to the client as ai_agent_safety.agent_session.
static mut LOGGED_IN_AS_AGENT: bool = false;

/// Runs once per agent login, after per-database and per-role settings are
/// applied but before the client is told the connection is ready (from the
/// show hook of the GUC_REPORT setting ai_agent_safety.agent_session), and again
/// defensively on the statement path. Uses only settings: no catalog access.
pub fn check_environment_at_login() {
    let Some((user, db)) = (unsafe { (*std::ptr::addr_of_mut!(LOGIN_CHECK)).take() }) else {
        return;
    };
    unsafe { LOGGED_IN_AS_AGENT = true };
    let scope = crate::settings::allowed_environments().filter(|v| !v.is_empty());
    let env = crate::settings::environment();
    if let Err(why) = aas_policy::check_connect_environment(&user, scope.as_deref(), &db, env) {
        // Outside a transaction here: no catalog access, so the login variant.
        let (client, app) = unsafe {
            let port = pg_sys::MyProcPort as *const pg_sys::libpq::be::Port;
            if port.is_null() {
                (String::new(), String::new())
            } else {
                (
                    crate::classify::cstr((*port).remote_host),
                    crate::classify::cstr((*port).application_name),
                )
            }
        };
        crate::audit::record_login(
            "environment",
            unsafe { pg_sys::MyDatabaseId },
            &db,
            &user,
            &client,
            &app,
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

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn show_agent_session() -> *const std::ffi::c_char {
    check_environment_at_login();
    if LOGGED_IN_AS_AGENT {
        c"on".as_ptr()
    } else {
        c"off".as_ptr()
    }
}

fn refuse_login(message: String, hint: String) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        message,
        "ai_agent_safety",
    )
    .set_hint(hint)
    .report(PgLogLevel::FATAL);
    unreachable!()
}
