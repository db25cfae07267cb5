//! Code an agent wrote is the agent's, whoever runs it.
//!
//! An agent's code can run inside another role's statement in two ways:
//! - a function it owns: called in a query, or as a trigger, column default,
//!   check constraint, index expression or row-level security policy.
//!   PostgreSQL asks `needs_fmgr_hook` about every function it looks up
//!   (builtins aside, which no agent owns); for one an agent owns the answer
//!   is yes, and each call then passes `fmgr_hook` (hooks/fmgr.rs), which
//!   keeps the stack of agents whose code is [`running`];
//! - a rule or a view it owns: after rewriting, the range-table entries of
//!   the rule's actions and of the view's relations are checked as their
//!   owner (`checkAsUser`), which [`plan_agent`] reads.
//!
//! While an agent's code runs, every statement it runs is judged as that
//! agent's (`hooks::gate::agent_statement`), and a planned query whose
//! relations are checked as an agent is judged as that agent's.
//!
//! Sessions that are not agents ask these questions per function lookup and
//! per planned query, so the answers are cached: function -> owning agent,
//! dropped when pg_proc changes; role -> is it an agent, dropped when roles
//! or memberships change (`identity::epoch`).

use crate::identity;
use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;

struct Functions {
    /// Bumped by the pg_proc syscache callback.
    epoch: u64,
    filled: (u64, u64),
    /// Function -> the agent that owns it, if one does.
    owner: Option<HashMap<pg_sys::Oid, Option<pg_sys::Oid>>>,
}

// SAFETY: a backend is single-threaded; the caches and the stack are read
// and written only by its own thread (hooks, syscache callbacks).
static mut FUNCTIONS: Functions = Functions {
    epoch: 1,
    filled: (0, 0),
    owner: None,
};

/// Role -> is it an agent, for the owners met in plans and functions.
// SAFETY: as FUNCTIONS.
static mut ROLES: (u64, Vec<(pg_sys::Oid, bool)>) = (0, Vec::new());

/// One entry per hooked call that is running, innermost last: the agent
/// that owns the function, or none (hooked for another reason).
// SAFETY: as FUNCTIONS.
static mut RUNNING: Vec<Option<pg_sys::Oid>> = Vec::new();

#[pgrx::pg_guard]
// SAFETY: a syscache callback registered in register_invalidation.
unsafe extern "C-unwind" fn invalidate(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    // SAFETY: see FUNCTIONS.
    unsafe { FUNCTIONS.epoch = FUNCTIONS.epoch.wrapping_add(1) };
}

/// Registers the pg_proc syscache callback. Called from `_PG_init`.
pub fn register_invalidation() {
    // SAFETY: called once from _PG_init; `invalidate` matches the callback type.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            Some(invalidate),
            pg_sys::Datum::from(0),
        )
    };
}

/// Works on the function cache, emptied first when pg_proc or a role
/// changed. `f` must not call back into this module.
fn with_functions<R>(f: impl FnOnce(&mut HashMap<pg_sys::Oid, Option<pg_sys::Oid>>) -> R) -> R {
    // SAFETY: see FUNCTIONS; the one borrow lives for this call only.
    let c = unsafe { &mut *std::ptr::addr_of_mut!(FUNCTIONS) };
    let now = (c.epoch, identity::epoch());
    if c.filled != now {
        c.filled = now;
        if let Some(m) = c.owner.as_mut() {
            m.clear();
        }
    }
    f(c.owner.get_or_insert_with(HashMap::default))
}

/// From the cache alone, no catalog access: does an agent own this
/// function? `None` when not cached yet.
#[inline]
pub fn cached_function_agent(func: pg_sys::Oid) -> Option<Option<pg_sys::Oid>> {
    with_functions(|m| m.get(&func).copied())
}

/// The agent that owns this function, if one does (from the cache, or the
/// catalog on a miss).
pub fn function_agent(func: pg_sys::Oid) -> Option<pg_sys::Oid> {
    if let Some(known) = cached_function_agent(func) {
        return known;
    }
    // SAFETY: syscache lookup and release; the tuple is read while pinned.
    let owner = unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            pg_sys::Datum::from(func),
        );
        if tup.is_null() {
            None
        } else {
            let owner = (*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_proc)).proowner;
            pg_sys::ReleaseSysCache(tup);
            Some(owner)
        }
    };
    let agent = owner.filter(|o| role_is_agent(*o));
    with_functions(|m| m.insert(func, agent));
    agent
}

/// Works on the role cache, emptied first when a role changed. `f` must
/// not call back into this module.
fn with_roles<R>(f: impl FnOnce(&mut Vec<(pg_sys::Oid, bool)>) -> R) -> R {
    // SAFETY: see ROLES; the one borrow lives for this call only.
    let r = unsafe { &mut *std::ptr::addr_of_mut!(ROLES) };
    if r.0 != identity::epoch() {
        r.0 = identity::epoch();
        r.1.clear();
    }
    f(&mut r.1)
}

/// From the cache alone, raising nothing: is this role an agent? `None`
/// when not cached (or the cache is stale).
#[inline]
pub fn cached_role_is_agent(role: pg_sys::Oid) -> Option<bool> {
    // SAFETY: see ROLES; only reads.
    let r = unsafe { &*std::ptr::addr_of!(ROLES) };
    if r.0 != identity::epoch() {
        return None;
    }
    r.1.iter().find(|(x, _)| *x == role).map(|x| x.1)
}

/// Is this role an agent? From the cache, or the catalog on a miss.
pub fn role_is_agent(role: pg_sys::Oid) -> bool {
    if let Some(a) = with_roles(|v| v.iter().find(|(r, _)| *r == role).map(|x| x.1)) {
        return a;
    }
    let a = identity::role_is_agent(role);
    with_roles(|v| v.push((role, a)));
    a
}

/// For the guard settings' check hooks: is this an agent session, or is an
/// agent's code running (a superuser's session that calls an agent's
/// function must not let it switch the guard off)?
pub fn session_or_code_is_agent() -> bool {
    identity::session_is_agent() || running().is_some()
}

/// The agent whose code is running now, if any: the innermost of its
/// functions that is running, else the query that runs its view, rule or
/// table code. Raises nothing.
#[inline]
pub fn running() -> Option<pg_sys::Oid> {
    // SAFETY: see RUNNING and EXECUTING.
    unsafe {
        (*std::ptr::addr_of!(RUNNING))
            .iter()
            .rev()
            .find_map(|a| *a)
            .or_else(|| (*std::ptr::addr_of!(EXECUTING)).last().map(|e| e.1))
    }
}

/// Queries that run an agent's view, rule or table code (defaults, checks,
/// triggers of the relations they write), until ExecutorEnd: the query and
/// the agent. Only while such a query's executor is at work (starting,
/// running, finishing) does its agent's code count as running, not while
/// it waits as an open cursor.
// SAFETY: as FUNCTIONS.
static mut MARKED: Vec<(usize, pg_sys::Oid)> = Vec::new();

/// The marked queries whose executor is at work now, innermost last, with
/// the subtransaction each began in.
// SAFETY: as FUNCTIONS.
static mut EXECUTING: Vec<(usize, pg_sys::Oid, pg_sys::SubTransactionId)> = Vec::new();

/// This query runs `agent`'s code.
pub fn mark(query: *mut pg_sys::QueryDesc, agent: pg_sys::Oid) {
    // SAFETY: see MARKED.
    unsafe { (*std::ptr::addr_of_mut!(MARKED)).push((query as usize, agent)) };
}

/// The query ended (ExecutorEnd), or a new one starts at its address.
/// Unguarded: no PostgreSQL call, nothing that allocates.
#[inline]
pub fn unmark(query: *mut pg_sys::QueryDesc) {
    // SAFETY: see MARKED and EXECUTING; retain neither allocates nor raises.
    unsafe {
        let m = &mut *std::ptr::addr_of_mut!(MARKED);
        if !m.is_empty() {
            m.retain(|x| x.0 != query as usize);
        }
        let e = &mut *std::ptr::addr_of_mut!(EXECUTING);
        if !e.is_empty() {
            e.retain(|x| x.0 != query as usize);
        }
    }
}

/// The executor starts work on a query (start, run, finish): if it is
/// marked, its agent's code runs until [`idle`]. Returns whether it was.
#[inline]
pub fn busy(query: *mut pg_sys::QueryDesc) -> bool {
    // SAFETY: see MARKED and EXECUTING.
    unsafe {
        let m = &*std::ptr::addr_of!(MARKED);
        if m.is_empty() {
            return false;
        }
        let Some(&(_, agent)) = m.iter().find(|x| x.0 == query as usize) else {
            return false;
        };
        let sub = crate::unguarded::GetCurrentSubTransactionId();
        (*std::ptr::addr_of_mut!(EXECUTING)).push((query as usize, agent, sub));
        true
    }
}

/// The executor's work on the query returned (an error instead unwinds to
/// the (sub)transaction's abort, which forgets it).
#[inline]
pub fn idle(query: *mut pg_sys::QueryDesc) {
    // SAFETY: see EXECUTING.
    let e = unsafe { &mut *std::ptr::addr_of_mut!(EXECUTING) };
    if let Some(i) = e.iter().rposition(|x| x.0 == query as usize) {
        e.remove(i);
    }
}

/// A (sub)transaction ended: work begun in it is over, returned or not.
/// `None`: the whole transaction, whose queries are gone too.
pub fn forget_executing(sub: Option<pg_sys::SubTransactionId>) {
    // SAFETY: see MARKED and EXECUTING; neither allocates nor raises.
    unsafe {
        let e = &mut *std::ptr::addr_of_mut!(EXECUTING);
        match sub {
            None => {
                e.clear();
                (*std::ptr::addr_of_mut!(MARKED)).clear();
            }
            Some(s) => e.retain(|x| x.2 < s),
        }
    }
}

/// Is a function an agent owns running (its own code, not a query that
/// runs an agent's view or table)?
pub fn function_running() -> bool {
    // SAFETY: see RUNNING.
    unsafe { (*std::ptr::addr_of!(RUNNING)).iter().any(Option::is_some) }
}

/// How many hooked calls are running (to tell later which started since).
pub fn depth() -> usize {
    // SAFETY: see RUNNING.
    unsafe { (*std::ptr::addr_of!(RUNNING)).len() }
}

/// Has a function an agent owns started since `depth`, and is it running?
pub fn agent_since(depth: usize) -> bool {
    // SAFETY: see RUNNING.
    let r = unsafe { &*std::ptr::addr_of!(RUNNING) };
    r.iter().skip(depth).any(Option::is_some)
}

/// Is the innermost hooked call a function no agent owns (the extension's
/// SECURITY DEFINER functions are hooked calls)? Then writes to the
/// extension's own tables are that function's, not agent code's.
pub fn in_trusted_call() -> bool {
    // SAFETY: see RUNNING.
    matches!(unsafe { (*std::ptr::addr_of!(RUNNING)).last() }, Some(None))
}

/// A hooked call starts (`agent`: who owns the function, if an agent).
/// Not reset at transaction end: a procedure may COMMIT or ROLLBACK and
/// go on running; every started call ends or raises through the hook.
pub fn enter(agent: Option<pg_sys::Oid>) {
    // SAFETY: see RUNNING.
    unsafe { (*std::ptr::addr_of_mut!(RUNNING)).push(agent) };
}

/// The innermost hooked call ended (returned, or raised).
pub fn leave() {
    // SAFETY: see RUNNING.
    unsafe { (*std::ptr::addr_of_mut!(RUNNING)).pop() };
}

/// An agent's rule or view runs in the query being judged: it counts as
/// running agent code until dropped (a refusal unwinds through the drop).
pub struct Judging;

impl Judging {
    pub fn as_agent(agent: pg_sys::Oid) -> Judging {
        enter(Some(agent));
        Judging
    }
}

impl Drop for Judging {
    fn drop(&mut self) {
        leave();
    }
}
