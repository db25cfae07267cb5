//! Which agent's code a planned query runs, besides functions (those are
//! `agent_code`'s): read from the range table, with caches so that
//! sessions that are not agents look no further than the entries.
//!
//! - The relations of a rule's actions and of a view are checked as the
//!   rule's table owner or the view owner (`checkAsUser`, read through `range_table` on every major).
//! - A view (a security_invoker one too) keeps an entry of its own, for its
//!   permission check: its owner wrote its definition.
//! - A relation the query writes runs its owner's column defaults, check
//!   constraints and triggers.
//!
//! [`judged_as`] answers "whose write is this?" (a rule or view of an agent
//! decides where the write goes); [`code_of`] answers "whose code runs in
//! it?" (any of the above), for as long as the query runs.

use crate::range_table::{relations, Relation};
use crate::{agent_code, identity};
use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;

struct Relations {
    /// Bumped by the relcache callback.
    epoch: u64,
    filled: (u64, u64),
    /// Relation -> is its owner an agent?
    owned_by_agent: Option<HashMap<pg_sys::Oid, bool>>,
}

// SAFETY: a backend is single-threaded; read and written only by its own
// thread (hooks, cache callbacks).
static mut RELATIONS: Relations = Relations {
    epoch: 1,
    filled: (0, 0),
    owned_by_agent: None,
};

#[pgrx::pg_guard]
// SAFETY: a relcache callback registered in register_invalidation.
unsafe extern "C-unwind" fn invalidate(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    // SAFETY: see RELATIONS.
    unsafe { RELATIONS.epoch = RELATIONS.epoch.wrapping_add(1) };
}

/// Registers the relcache callback. Called from `_PG_init`.
pub fn register_invalidation() {
    // SAFETY: called once from _PG_init; `invalidate` matches the callback type.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(invalidate), pg_sys::Datum::from(0)) };
}

/// Works on the relation cache, emptied first when a relation or a role
/// changed. `f` must not call back into this module.
fn with_relations<R>(f: impl FnOnce(&mut HashMap<pg_sys::Oid, bool>) -> R) -> R {
    // SAFETY: see RELATIONS; the one borrow lives for this call only.
    let c = unsafe { &mut *std::ptr::addr_of_mut!(RELATIONS) };
    let now = (c.epoch, identity::epoch());
    if c.filled != now {
        c.filled = now;
        if let Some(m) = c.owned_by_agent.as_mut() {
            m.clear();
        }
    }
    f(c.owned_by_agent.get_or_insert_with(HashMap::default))
}

/// Is this relation's owner an agent? From the cache, or the catalog.
fn relation_is_agents(relid: pg_sys::Oid) -> bool {
    if let Some(a) = with_relations(|m| m.get(&relid).copied()) {
        return a;
    }
    // SAFETY: inside a transaction (the guarded executor path).
    let a = unsafe { crate::pg::relation_owner(relid) }.is_some_and(agent_code::role_is_agent);
    with_relations(|m| m.insert(relid, a));
    a
}

/// The agent that owns this relation, if one does (its defaults, checks
/// and triggers run on writes; its check constraints on validation).
pub fn agent_owner(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    if !relation_is_agents(relid) {
        return None;
    }
    // SAFETY: inside a transaction.
    unsafe { crate::pg::relation_owner(relid) }
}

const WRITES: pg_sys::AclMode =
    (pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE | pg_sys::ACL_DELETE) as pg_sys::AclMode;

fn writes(rel: &Relation) -> bool {
    rel.required & WRITES != 0
}

/// From the caches alone, raising nothing: does the query run no agent's
/// code? False means "ask [`judged_as`] and [`code_of`]".
///
/// # Safety
/// `ps` is a valid PlannedStmt.
#[inline]
pub unsafe fn known_free_of_agents(ps: &pg_sys::PlannedStmt) -> bool {
    // Most queries check every relation as the current user (0): no role
    // to look up; a view, or a relation written, needs its owner.
    // SAFETY: see RELATIONS; reading the caches raises nothing.
    let rel = unsafe { &*std::ptr::addr_of!(RELATIONS) };
    let rel_fresh = rel.filled == (rel.epoch, identity::epoch());
    // SAFETY: per this function's contract; only reads.
    unsafe { relations(ps) }.all(|r| {
        let role = r.check_as;
        (role == pg_sys::InvalidOid || agent_code::cached_role_is_agent(role) == Some(false))
            && (!(r.is_view() || writes(&r))
                || (rel_fresh
                    && rel.owned_by_agent.as_ref().and_then(|m| m.get(&r.relid())) == Some(&false)))
    })
}

/// The agent whose rule or view decides what this query writes, if any:
/// the write is judged as that agent's.
///
/// # Safety
/// `ps` is a valid PlannedStmt, inside a transaction.
pub unsafe fn judged_as(ps: &pg_sys::PlannedStmt) -> Option<pg_sys::Oid> {
    // SAFETY: per this function's contract.
    unsafe { relations(ps) }.filter(writes).find_map(|r| {
        let role = r.check_as;
        if role != pg_sys::InvalidOid && agent_code::role_is_agent(role) {
            return Some(role);
        }
        // SAFETY: inside a transaction.
        let view_owner = r
            .is_view()
            .then(|| unsafe { crate::pg::relation_owner(r.relid()) })
            .flatten();
        view_owner.filter(|o| agent_code::role_is_agent(*o))
    })
}

/// The agent whose code runs in this query, if any: a rule's or view's
/// relations checked as it, a view it owns, a relation it owns that the
/// query writes.
///
/// # Safety
/// `ps` is a valid PlannedStmt, inside a transaction.
pub unsafe fn code_of(ps: &pg_sys::PlannedStmt) -> Option<pg_sys::Oid> {
    // SAFETY: per this function's contract.
    unsafe { relations(ps) }.find_map(|r| {
        let role = r.check_as;
        if role != pg_sys::InvalidOid && agent_code::role_is_agent(role) {
            return Some(role);
        }
        if (r.is_view() || writes(&r)) && relation_is_agents(r.relid()) {
            // SAFETY: inside a transaction.
            return unsafe { crate::pg::relation_owner(r.relid()) };
        }
        None
    })
}
