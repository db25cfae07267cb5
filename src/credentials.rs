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
/// the predefined roles that equal superuser. Reads only the syscaches of
/// pg_auth_members and pg_authid, as PostgreSQL's own authentication does:
/// a heap scan of pg_authid there can meet a relcache rebuilt by a cache
/// reset before a database is selected, and fail the login.
pub fn dangerous_privileges(role: pg_sys::Oid) -> Vec<HeldPrivilege> {
    let mut held = Vec::new();
    for r in memberships(role) {
        // SAFETY: syscache lookup and release; the tuple is read while pinned.
        unsafe {
            let tup = pg_sys::SearchSysCache1(
                pg_sys::SysCacheIdentifier::AUTHOID as i32,
                pg_sys::Datum::from(r),
            );
            if tup.is_null() {
                continue;
            }
            let form = &*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_authid);
            let attributes = [
                (form.rolsuper && r != role, "SUPERUSER"),
                (form.rolcreaterole, "CREATEROLE"),
                (form.rolreplication, "REPLICATION"),
                (form.rolbypassrls, "BYPASSRLS"),
            ];
            let name = crate::pg::cstr(form.rolname.data.as_ptr());
            pg_sys::ReleaseSysCache(tup);
            let via = (r != role).then_some(name.clone());
            for (_, privilege) in attributes.iter().filter(|(has, _)| *has) {
                held.push(HeldPrivilege {
                    privilege: privilege.to_string(),
                    via: via.clone(),
                });
            }
            if SUPERUSER_EQUIVALENT_ROLES.contains(&name.as_str()) {
                held.push(HeldPrivilege {
                    privilege: name,
                    via: None,
                });
            }
        }
    }
    held
}

/// The start of FormData_pg_auth_members, which pgrx does not bind. Where
/// the majors differ: 16 put an `oid` column first.
#[repr(C)]
struct AuthMembers {
    #[cfg(not(feature = "pg15"))]
    _oid: pg_sys::Oid,
    roleid: pg_sys::Oid,
    member: pg_sys::Oid,
}

/// `role` and every role it is a member of, directly or through others.
fn memberships(role: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    let mut seen = vec![role];
    let mut next = 0;
    while next < seen.len() {
        let member = seen[next];
        next += 1;
        // SAFETY: a syscache list by member, released before use of the
        // copied oids; each member tuple is read while the list is pinned.
        unsafe {
            let list = pg_sys::SearchSysCacheList(
                pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE as i32,
                1,
                pg_sys::Datum::from(member),
                pg_sys::Datum::from(0),
                pg_sys::Datum::from(0),
            );
            let members = (*list).members.as_slice((*list).n_members as usize);
            for ct in members {
                let form =
                    pg_sys::GETSTRUCT(&(**ct).tuple as *const pg_sys::HeapTupleData as *mut _)
                        as *const AuthMembers;
                let group = (*form).roleid;
                if !seen.contains(&group) {
                    seen.push(group);
                }
            }
            pg_sys::ReleaseCatCacheList(list);
        }
    }
    seen
}
