//! Who: is this session an agent?
//!
//! A session is an agent when its session_user or its current_user is a member,
//! directly or through other roles, of the group named by
//! `ai_agent_safety.agent_role`. Superuser status does not make a role a member
//! (`is_member_of_role_nosuper`), so a DBA is not mistaken for an agent.
//!
//! This is asked on every statement, so the answer is cached per role and the
//! cache is dropped by syscache callbacks when pg_authid or pg_auth_members change
//! (including changes made by other sessions), or when agent_role changes.

use crate::settings;
use pgrx::pg_sys;
use std::ffi::CString;

#[derive(Clone, Copy)]
struct Cached {
    role: pg_sys::Oid,
    is_agent: bool,
}

struct Cache {
    /// Bumped by the syscache callbacks.
    epoch: u64,
    agent_role_generation: u64,
    filled_epoch: u64,
    session: Option<Cached>,
    current: Option<Cached>,
}

// SAFETY: a backend is single-threaded; the cache is read and written only by
// its own thread (hooks, syscache callbacks between statements).
static mut CACHE: Cache = Cache {
    epoch: 1,
    agent_role_generation: 0,
    filled_epoch: 0,
    session: None,
    current: None,
};

#[pgrx::pg_guard]
// SAFETY: a syscache callback registered in register_invalidation.
unsafe extern "C-unwind" fn invalidate(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    // SAFETY: a backend is single-threaded; the callback runs between statements.
    unsafe { CACHE.epoch = CACHE.epoch.wrapping_add(1) };
}

/// Changes whenever a role or membership changes (syscache invalidation):
/// other per-session caches of role facts (credential expiry, the audit
/// context) compare it to know when to refill.
pub fn epoch() -> u64 {
    // SAFETY: a backend is single-threaded.
    unsafe { CACHE.epoch }
}

/// Registers the syscache callbacks. Called from `_PG_init`.
pub fn register_invalidation() {
    // SAFETY: called once from _PG_init; `invalidate` matches the callback type.
    unsafe {
        for id in [
            pg_sys::SysCacheIdentifier::AUTHOID,
            pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
            pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                id as i32,
                Some(invalidate),
                pg_sys::Datum::from(0),
            );
        }
    }
}

/// The agent group's oid, or InvalidOid when the role does not exist.
pub fn agent_group_oid() -> pg_sys::Oid {
    let Some(name) = settings::agent_role() else {
        return pg_sys::InvalidOid;
    };
    let Ok(c) = CString::new(name) else {
        return pg_sys::InvalidOid;
    };
    // SAFETY: catalog lookup with missing_ok = true.
    unsafe { pg_sys::get_role_oid(c.as_ptr(), true) }
}

/// Is `role` a member of the agent group? Needs catalog access (a transaction,
/// or authentication, where the shared catalogs are readable).
pub fn role_is_agent(role: pg_sys::Oid) -> bool {
    let group = agent_group_oid();
    if group == pg_sys::InvalidOid || role == pg_sys::InvalidOid {
        return false;
    }
    // SAFETY: catalog lookup (the caller is in a transaction or authenticating).
    unsafe { pg_sys::is_member_of_role_nosuper(role, group) }
}

/// Is the cache still valid: no role change and no new agent_role since it
/// was filled?
fn current(c: &Cache) -> bool {
    c.filled_epoch == c.epoch && c.agent_role_generation == settings::agent_role_generation()
}

/// Known from the cache alone, with no catalog access and nothing that can
/// raise an error, that neither the session user nor the current user is an
/// agent. What the hooks ask first, unguarded; false means "ask
/// [`session_is_agent`]" (an agent, or not cached yet).
#[inline]
pub fn known_not_agent() -> bool {
    // SAFETY: single-threaded backend; the two unguarded calls only read
    // backend variables and never raise.
    unsafe {
        let c = &*std::ptr::addr_of!(CACHE);
        if !current(c) {
            return false;
        }
        let s = crate::unguarded::GetSessionUserId();
        if !matches!(c.session, Some(x) if x.role == s && !x.is_agent) {
            return false;
        }
        let u = crate::unguarded::GetUserId();
        u == s || matches!(c.current, Some(x) if x.role == u && !x.is_agent)
    }
}

/// Is the session user (the login role, whatever SET ROLE or a SECURITY
/// DEFINER call made the current user) an agent?
pub fn session_user_is_agent() -> bool {
    let agent = session_is_agent();
    // SAFETY: single-threaded backend; session_is_agent filled the entry.
    agent
        && unsafe {
            (*std::ptr::addr_of!(CACHE))
                .session
                .is_some_and(|x| x.is_agent)
        }
}

/// The hot path: a few comparisons when nothing changed.
#[inline]
pub fn session_is_agent() -> bool {
    // SAFETY: as for `known_not_agent`; `role_is_agent` reads the catalog
    // only on a cache miss, from a hook (inside a transaction).
    unsafe {
        let c = &mut *std::ptr::addr_of_mut!(CACHE);
        if !current(c) {
            c.session = None;
            c.current = None;
            c.filled_epoch = c.epoch;
            c.agent_role_generation = settings::agent_role_generation();
        }
        let s = crate::unguarded::GetSessionUserId();
        let session_agent = match c.session {
            Some(x) if x.role == s => x.is_agent,
            _ => {
                let v = role_is_agent(s);
                c.session = Some(Cached {
                    role: s,
                    is_agent: v,
                });
                v
            }
        };
        if session_agent {
            return true;
        }
        let u = crate::unguarded::GetUserId();
        if u == s {
            return false;
        }
        match c.current {
            Some(x) if x.role == u => x.is_agent,
            _ => {
                let v = role_is_agent(u);
                c.current = Some(Cached {
                    role: u,
                    is_agent: v,
                });
                v
            }
        }
    }
}
