//! Facts about agent credentials: a role's expiry and superuser status, read
//! from the syscache (also during authentication), and this session's expiry
//! cached until a role changes.
//!
//! What is done with them (refuse a login, end a session) is decided by the
//! policy crate and carried out by the login glue and the guard.

use crate::identity;
use aas_policy::credentials::SUPERUSER_EQUIVALENT_ROLES;
use aas_policy::{HeldPrivilege, LoginFacts};
use pgrx::pg_sys;
use std::ffi::CString;

/// PostgreSQL's timestamp infinity: VALID UNTIL 'infinity' means no expiry.
const INFINITY: i64 = i64::MAX;

/// This session user's credential facts, valid while the role and the
/// identity epoch are unchanged (a DBA's ALTER ROLE, GRANT or REVOKE bumps
/// it), so a statement pays a few comparisons.
struct Cached {
    epoch: u64,
    role: pg_sys::Oid,
    facts: LoginFacts,
}

// SAFETY: a backend is single-threaded; only this module touches it.
static mut SESSION: Option<Cached> = None;

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

/// The session user's credential facts, as they are now in the catalog.
pub fn session_facts() -> &'static LoginFacts {
    // SAFETY: reads a backend variable.
    let role = unsafe { pg_sys::GetSessionUserId() };
    let epoch = identity::epoch();
    // SAFETY: see SESSION.
    let cache = unsafe { &mut *std::ptr::addr_of_mut!(SESSION) };
    if !matches!(cache, Some(c) if c.role == role && c.epoch == epoch) {
        *cache = Some(Cached {
            epoch,
            role,
            facts: login_facts(role, &crate::pg::role_name(role)),
        });
    }
    &cache.as_ref().expect("filled above").facts
}

/// Login facts for `role`, read from the shared catalogs (usable during
/// authentication). The privileges that reach around the guard are looked
/// for only when the role is an agent.
pub fn login_facts(role: pg_sys::Oid, name: &str) -> LoginFacts {
    let (is_superuser, until) = role_expiry(role).unwrap_or((false, None));
    let is_agent = identity::role_is_agent(role);
    LoginFacts {
        role: name.to_string(),
        is_agent,
        is_superuser,
        valid_until_us: until,
        valid_until_text: until.map(crate::pg::timestamp_text),
        dangerous: if is_agent {
            dangerous_privileges(role)
        } else {
            Vec::new()
        },
    }
}

/// The privileges `role` holds, itself or through a role it is a member of,
/// that an agent must never hold: SUPERUSER (through another role; its own
/// is `is_superuser`), CREATEROLE, REPLICATION, BYPASSRLS, and membership in
/// the predefined roles that equal superuser. Reads pg_authid with a heap
/// scan: shared, so readable during authentication.
pub fn dangerous_privileges(role: pg_sys::Oid) -> Vec<HeldPrivilege> {
    let mut held = Vec::new();
    // SAFETY: a shared catalog, readable during authentication; each
    // tuple's fixed part is read during the call.
    unsafe {
        crate::pg::scan_catalog(pg_sys::AuthIdRelationId, |tup, _| {
            let form = &*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_authid);
            let attributes = [
                (form.rolsuper && form.oid != role, "SUPERUSER"),
                (form.rolcreaterole, "CREATEROLE"),
                (form.rolreplication, "REPLICATION"),
                (form.rolbypassrls, "BYPASSRLS"),
            ];
            if !attributes.iter().any(|(has, _)| *has) {
                return;
            }
            let via = if form.oid == role {
                None
            } else if pg_sys::is_member_of_role_nosuper(role, form.oid) {
                Some(crate::pg::cstr(form.rolname.data.as_ptr()))
            } else {
                return;
            };
            for (_, name) in attributes.iter().filter(|(has, _)| *has) {
                held.push(HeldPrivilege {
                    privilege: name.to_string(),
                    via: via.clone(),
                });
            }
        });
    }
    for name in SUPERUSER_EQUIVALENT_ROLES {
        let c = CString::new(name).expect("no NUL in a role name");
        // SAFETY: catalog lookups with missing_ok = true.
        let member = unsafe {
            let oid = pg_sys::get_role_oid(c.as_ptr(), true);
            oid != pg_sys::InvalidOid && pg_sys::is_member_of_role_nosuper(role, oid)
        };
        if member {
            held.push(HeldPrivilege {
                privilege: name.to_string(),
                via: None,
            });
        }
    }
    held
}
