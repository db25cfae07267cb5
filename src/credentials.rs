//! Credentials that really expire.
//!
//! At login (ClientAuthentication_hook, for every authentication method) an agent
//! role needs a VALID UNTIL in the future, no further ahead than
//! `ai_agent_safety.max_credential_lifetime`, and must not be a superuser. An
//! open agent session ends with FATAL at its first statement after the expiry.
//! The expiry is cached per session and the cache is dropped by the pg_authid
//! syscache callback, so a DBA's ALTER ROLE ... VALID UNTIL reaches open
//! sessions without a catalog read per statement.

use aas_policy::LoginFacts;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

const INFINITY: i64 = i64::MAX;

struct Expiry {
    valid: bool,
    role: pg_sys::Oid,
    is_agent: bool,
    until: Option<i64>,
}

static mut EXPIRY: Expiry = Expiry {
    valid: false,
    role: pg_sys::InvalidOid,
    is_agent: false,
    until: None,
};

pub fn invalidate_expiry_cache() {
    unsafe { EXPIRY.valid = false }
}

/// (rolsuper, rolvaliduntil) from the syscache; `None` valid-until when unset or infinity.
pub fn role_expiry(role: pg_sys::Oid) -> Option<(bool, Option<i64>)> {
    unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::AUTHOID as i32,
            pg_sys::Datum::from(role),
        );
        if tup.is_null() {
            return None;
        }
        let form = pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_authid;
        let rolsuper = (*form).rolsuper;
        let mut isnull = false;
        let d = pg_sys::SysCacheGetAttr(
            pg_sys::SysCacheIdentifier::AUTHOID as i32,
            tup,
            pg_sys::Anum_pg_authid_rolvaliduntil as i16,
            &mut isnull,
        );
        let until = if isnull { None } else { Some(d.value() as i64) }.filter(|v| *v != INFINITY);
        pg_sys::ReleaseSysCache(tup);
        Some((rolsuper, until))
    }
}

pub fn timestamp_text(t: i64) -> String {
    unsafe { crate::classify::cstr(pg_sys::timestamptz_to_str(t)) }
}

/// Ends an agent session whose credentials expired. Cheap when nothing changed:
/// one comparison of cached values.
pub fn check_open_session() {
    crate::auth::check_environment_at_login();
    unsafe {
        let s = pg_sys::GetSessionUserId();
        let e = &mut *std::ptr::addr_of_mut!(EXPIRY);
        if !e.valid || e.role != s {
            e.role = s;
            e.is_agent = crate::identity::role_is_agent(s);
            e.until = role_expiry(s).and_then(|(_, u)| u);
            e.valid = true;
        }
        if !e.is_agent {
            return;
        }
        if let Some(until) = e.until {
            if pg_sys::GetCurrentTimestamp() >= until {
                let role = crate::identity::role_name(s);
                let msg = format!(
                    "credentials of agent role \"{}\" expired at {}; ending the session",
                    role,
                    timestamp_text(until)
                );
                crate::audit::record(crate::audit::Event {
                    source: "credentials",
                    event: "session_expired",
                    decision: "refuse",
                    reason: msg.clone(),
                    ..Default::default()
                });
                ErrorReport::new(PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, msg, "ai_agent_safety")
                    .set_detail("Agent sessions do not outlive their credentials (VALID UNTIL).")
                    .set_hint(format!(
                        "A DBA can issue fresh credentials: SELECT issue_agent_credentials('{role}', '1 hour');"
                    ))
                    .report(PgLogLevel::FATAL);
            }
        }
    }
}

/// Login facts for `role`, read from the shared catalogs (usable during authentication).
pub fn login_facts(role: pg_sys::Oid, name: &str) -> LoginFacts {
    let (is_superuser, until) = role_expiry(role).unwrap_or((false, None));
    LoginFacts {
        role: name.to_string(),
        is_agent: crate::identity::role_is_agent(role),
        is_superuser,
        valid_until_us: until,
        valid_until_text: until.map(timestamp_text),
    }
}
