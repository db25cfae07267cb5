//! Facts about agent credentials: a role's expiry and superuser status, read
//! from the syscache (also during authentication), and this session's expiry
//! cached until a role changes.
//!
//! What is done with them (refuse a login, end a session) is decided by the
//! policy crate and carried out by the login glue and the guard.

use crate::identity;
use aas_policy::LoginFacts;
use pgrx::pg_sys;

/// PostgreSQL's timestamp infinity: VALID UNTIL 'infinity' means no expiry.
const INFINITY: i64 = i64::MAX;

/// This session's agent status and expiry, valid while the role and the
/// identity epoch are unchanged (a DBA's ALTER ROLE ... VALID UNTIL bumps it).
#[derive(Clone, Copy)]
struct Expiry {
    epoch: u64,
    role: pg_sys::Oid,
    is_agent: bool,
    until: Option<i64>,
}

// SAFETY: a backend is single-threaded; only this module touches it.
static mut EXPIRY: Option<Expiry> = None;

/// (rolsuper, rolvaliduntil) from the syscache; `None` valid-until when unset or infinity.
pub fn role_expiry(role: pg_sys::Oid) -> Option<(bool, Option<i64>)> {
    // SAFETY: syscache lookup and release; the tuple is read while pinned.
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

/// The session user's expiry when it is an agent: `None` for a non-agent,
/// `Some(None)` for an agent without one. Cheap when nothing changed: a few
/// comparisons of cached values.
pub fn session_agent_expiry() -> Option<Option<i64>> {
    // SAFETY: reads a backend variable.
    let role = unsafe { pg_sys::GetSessionUserId() };
    let epoch = identity::epoch();
    // SAFETY: single-threaded backend.
    let cache = unsafe { &mut *std::ptr::addr_of_mut!(EXPIRY) };
    let e = match *cache {
        Some(e) if e.role == role && e.epoch == epoch => e,
        _ => {
            let e = Expiry {
                epoch,
                role,
                is_agent: identity::role_is_agent(role),
                until: role_expiry(role).and_then(|(_, u)| u),
            };
            *cache = Some(e);
            e
        }
    };
    e.is_agent.then_some(e.until)
}

/// Login facts for `role`, read from the shared catalogs (usable during authentication).
pub fn login_facts(role: pg_sys::Oid, name: &str) -> LoginFacts {
    let (is_superuser, until) = role_expiry(role).unwrap_or((false, None));
    LoginFacts {
        role: name.to_string(),
        is_agent: identity::role_is_agent(role),
        is_superuser,
        valid_until_us: until,
        valid_until_text: until.map(crate::pg::timestamp_text),
    }
}
