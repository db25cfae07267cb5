//! What every statement hook shares: is this an agent's statement to look
//! at, and the approval window.
//!
//! A token approves one operation on one object, and what PostgreSQL itself
//! does for it: the foreign-key actions of an approved DELETE or UPDATE
//! (ON DELETE CASCADE, SET NULL ...), and the dependent objects a DROP ...
//! CASCADE removes (inside the DROP, with no statement of their own). While
//! an approved query runs the window is open and holds its scope: the tables
//! it writes. A query in the window passes unjudged only when it is such a
//! foreign-key action: PostgreSQL runs it with SECURITY_NOFORCE_RLS, it
//! is one query that names no table with rules (a rule's query is its
//! owner's code), it writes one table, and that table has a foreign key to
//! a table in scope (it then joins the scope, for cascades of cascades).
//! Everything else the statement sets off (functions in its expressions,
//! triggers, rules, column defaults, and whatever those run, inside a
//! foreign-key action too) is judged and audited on its own, so an approved
//! DELETE cannot carry a second, unapproved one.

use crate::pg::in_foreign_key_action;
use crate::{agent_code, identity, privileged};
use pgrx::pg_sys;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Closed,
    Utility,
    Query(*mut pg_sys::QueryDesc),
}

// SAFETY: a backend is single-threaded; the scope is set when a query's
// window opens and emptied when it closes.
static mut SCOPE: Vec<pg_sys::Oid> = Vec::new();

/// How many hooked function calls were running when the window opened: a
/// function an agent owns that started since (a trigger on a referencing
/// table, inside a foreign-key action) is code of its own, not the action.
// SAFETY: as SCOPE.
static mut DEPTH: usize = 0;

/// How many queries are being planned, or are in ExecutorStart,
/// ExecutorRun or ExecutorFinish right now (in this backend). PostgreSQL
/// runs an approved query's foreign-key actions from its ExecutorFinish
/// (its AFTER-trigger loop), with no other query running: a query started
/// while another is planned or runs (a BEFORE trigger's, a CHECK's or
/// DEFAULT's function, an immutable function folded while the action is
/// planned, a cursor fetched inside an action) is not one, whatever
/// security context it inherited.
// SAFETY: a backend is single-threaded; kept by the executor hooks, and
// restored when a (sub)transaction aborts mid-query.
static mut RUNNING: u32 = 0;

/// RUNNING when each open subtransaction started, to restore on its abort.
// SAFETY: as RUNNING.
static mut RUNNING_AT_SUB: Vec<(pg_sys::SubTransactionId, u32)> = Vec::new();

/// RUNNING while the approved query is in its ExecutorFinish (itself
/// counted): only then, with nothing else running, can an action start.
// SAFETY: as RUNNING; set by `finishing`, cleared when the window closes.
static mut FINISH_LEVEL: Option<u32> = None;

/// A query enters planning, ExecutorStart, ExecutorRun or ExecutorFinish.
/// (Every query of every session: one increment each.)
#[inline]
pub fn executor_entered() {
    // SAFETY: see RUNNING.
    unsafe { RUNNING = RUNNING.wrapping_add(1) };
}

/// A query left planning or an executor phase normally.
#[inline]
pub fn executor_left() {
    // SAFETY: see RUNNING.
    unsafe { RUNNING = RUNNING.saturating_sub(1) };
}

/// The query entering ExecutorFinish (already counted): when it is the
/// approved one, its foreign-key actions may start from now.
pub fn finishing(qd: *mut pg_sys::QueryDesc) {
    if window() == Window::Query(qd) {
        // SAFETY: see FINISH_LEVEL.
        unsafe { FINISH_LEVEL = Some(RUNNING) };
    }
}

/// Opens the window of an approved query whose written tables are `scope`.
pub fn open_query_window(qd: *mut pg_sys::QueryDesc, scope: Vec<pg_sys::Oid>) {
    set_window(Window::Query(qd));
    // SAFETY: see SCOPE and DEPTH.
    unsafe {
        *std::ptr::addr_of_mut!(SCOPE) = scope;
        DEPTH = agent_code::depth();
    }
}

/// Is this query a foreign-key action of the approved query: run by
/// PostgreSQL's referential-integrity code, writing tables (one, or the
/// partitions of one) that each have a foreign key to a table in scope?
/// Then it passes, and its tables join the scope.
///
/// # Safety
/// `ps` is a valid PlannedStmt, inside a transaction.
pub unsafe fn foreign_key_action_in_scope(ps: &pg_sys::PlannedStmt) -> bool {
    // SAFETY: see DEPTH, FINISH_LEVEL and RUNNING.
    let (depth, started_by_finish) = unsafe { (DEPTH, FINISH_LEVEL == Some(RUNNING)) };
    if !matches!(window(), Window::Query(_))
        || !in_foreign_key_action()
        || !started_by_finish
        || agent_code::agent_since(depth)
    {
        return false;
    }
    // PostgreSQL's own action is one query that sets the command tag,
    // naming no table with rules: a rule's query (DO ALSO or INSTEAD, on
    // the referencing table) carries the entries of the table it is on,
    // and is the rule owner's code, judged on its own.
    // SAFETY: per this function's contract.
    let mut relations = unsafe { crate::range_table::relations(ps) };
    // SAFETY: relcache entries are opened and closed in has_rules.
    let rules = relations.any(|r| unsafe { crate::pg::has_rules(r.relid()) });
    if !ps.canSetTag || rules {
        return false;
    }
    // SAFETY: per this function's contract.
    let written = unsafe { crate::classify::plan::written_relations(ps) };
    if written.is_empty() {
        return false;
    }
    // SAFETY: see SCOPE.
    let scope = unsafe { &mut *std::ptr::addr_of_mut!(SCOPE) };
    // Each table it writes (one, or the partitions of a partitioned one)
    // references a table in scope.
    // SAFETY: relcache entries are opened and closed in foreign_key_targets.
    let in_scope = written.iter().all(|t| {
        unsafe { crate::pg::foreign_key_targets(*t) }
            .iter()
            .any(|r| scope.contains(r))
    });
    if !in_scope {
        return false;
    }
    for t in written {
        if !scope.contains(&t) {
            scope.push(t);
        }
    }
    true
}

// SAFETY: a backend is single-threaded; the window is opened and closed by
// the hooks of its own statements and reset by the transaction callbacks.
static mut WINDOW: Window = Window::Closed;

pub fn window() -> Window {
    // SAFETY: see WINDOW.
    unsafe { WINDOW }
}

pub fn set_window(w: Window) {
    // SAFETY: see WINDOW.
    unsafe { WINDOW = w }
}

/// Closes the window (at the end of the approved statement, or when its
/// transaction or subtransaction aborts).
pub fn close_window() {
    set_window(Window::Closed);
    // SAFETY: see FINISH_LEVEL.
    unsafe { FINISH_LEVEL = None };
    // SAFETY: see SCOPE; clear() keeps the allocation and cannot fail.
    unsafe { (*std::ptr::addr_of_mut!(SCOPE)).clear() };
}

/// Should this statement be looked at? The hot path for everyone. Not the
/// extension's own queries; every statement of an agent session, nested or
/// not (the executor lets an approved query's foreign-key actions through
/// before asking), and every statement an agent's code runs in another
/// role's session (`agent_code::running`).
/// For an agent session's statement it first runs the checks every agent
/// statement starts with: the login environment check, if it is still
/// owed, and credential expiry (either ends the session). Another role's
/// session is never ended for an agent's code, nor its statement's
/// foreign-key actions taken for an agent's because they run as the
/// referencing table's owner.
#[inline]
pub fn agent_statement() -> bool {
    if privileged::active() {
        return false;
    }
    if identity::session_is_agent() {
        if in_foreign_key_action() && !identity::session_user_is_agent() {
            // PostgreSQL's own foreign-key action for another role's
            // statement, run as the referencing table's owner (an agent):
            // the statement's, not the agent's. Triggers an agent owns on
            // that table are its code (agent_code).
            return agent_code::function_running();
        }
        super::auth::check_environment_at_login();
        crate::guard::end_invalid_session();
        return true;
    }
    // Another role's session: an agent's function is running, or a query
    // that runs its view, rule or table code is at work; PostgreSQL's own
    // foreign-key action of such a query is the query's, not the agent's.
    if in_foreign_key_action() {
        agent_code::function_running()
    } else {
        agent_code::running().is_some()
    }
}

/// Unguarded: it only resets two flags (called at every transaction event of
/// every session).
// SAFETY: called from the transaction callback (hooks); it only writes two flags and cannot raise.
pub(crate) unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT | XACT_EVENT_PREPARE
    ) {
        close_window();
        privileged::reset();
        agent_code::forget_executing(None);
        // SAFETY: see RUNNING; clear() keeps the allocation.
        unsafe {
            RUNNING = 0;
            (*std::ptr::addr_of_mut!(RUNNING_AT_SUB)).clear();
        }
    }
}

/// Unguarded, like `xact_callback`.
// SAFETY: called from the subtransaction callback (hooks); it only writes two flags and cannot raise.
pub(crate) unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    // SAFETY: see RUNNING; the vector is only pushed and popped here.
    let saved = unsafe { &mut *std::ptr::addr_of_mut!(RUNNING_AT_SUB) };
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_START_SUB => {
            // SAFETY: see RUNNING.
            saved.push((my, unsafe { RUNNING }))
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB
            if saved.last().is_some_and(|(s, _)| *s == my) =>
        {
            saved.pop();
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            close_window();
            privileged::reset_sub();
            agent_code::forget_executing(Some(my));
            // The queries that ran when it aborted are gone with it.
            while let Some((s, running)) = saved.pop() {
                if s == my {
                    // SAFETY: see RUNNING.
                    unsafe { RUNNING = running };
                    break;
                }
            }
        }
        _ => {}
    }
}

/// Does the statement judged as an agent's run as another role: the
/// agent's `SET ROLE`, a `SECURITY DEFINER` function of another owner, or
/// the agent's code in another role's session?
pub fn acting_as_another_role() -> bool {
    // SAFETY: reads two backend variables.
    let switched = unsafe { pg_sys::GetUserId() != pg_sys::GetSessionUserId() };
    switched || !crate::identity::session_user_is_agent()
}
