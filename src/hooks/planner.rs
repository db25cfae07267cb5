//! planner_hook: a cursor over a writing statement that an agent's code
//! opens in another role's session.
//!
//! Such a cursor runs its statement later, when it is first read: perhaps
//! after the agent's function returned (`cursor_to_xml(open_q('DELETE
//! ...'))`), when no agent code is running any more. So it is judged as the
//! agent's when it is planned, inside the agent's code. In an agent's own
//! session the executor judges it whenever it runs.

use super::executor;
use crate::classify::plan;
use crate::unguarded::standard_planner;
use crate::{agent_code, guard, identity, pg, settings};
use aas_policy::{treatment, Treatment};
use pgrx::pg_sys;
use std::ffi::{c_char, c_int};

// SAFETY: written once by `install` (from _PG_init), then only read.
static mut PREV: pg_sys::planner_hook_type = None;

pub fn install() {
    // SAFETY: hook installation from _PG_init, keeping the previous hook.
    unsafe {
        PREV = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(hook);
    }
}

/// The options with which PL/pgSQL (OPEN) and DECLARE plan a cursor.
const CURSOR: c_int = (pg_sys::CURSOR_OPT_FAST_PLAN
    | pg_sys::CURSOR_OPT_SCROLL
    | pg_sys::CURSOR_OPT_NO_SCROLL
    | pg_sys::CURSOR_OPT_HOLD) as c_int;

/// Unguarded: plans, then for a cursor planned inside an agent's code asks
/// the guarded path. Everything else pays two increments, one load and one
/// comparison.
// SAFETY: installed as planner_hook; PostgreSQL passes a valid Query.
unsafe extern "C-unwind" fn hook(
    parse: *mut pg_sys::Query,
    query_string: *const c_char,
    cursor_options: c_int,
    params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // Planning counts as running (gate): what it evaluates (an immutable
    // function folded into a constant) runs inside the planned query.
    super::gate::executor_entered();
    // SAFETY: see PREV; called exactly as PostgreSQL calls the hook.
    let ps = unsafe {
        match PREV {
            Some(prev) => prev(parse, query_string, cursor_options, params),
            None => standard_planner(parse, query_string, cursor_options, params),
        }
    };
    super::gate::executor_left();
    if cursor_options & CURSOR != 0 && agent_code::running().is_some() {
        // SAFETY: ps is the plan just made, query_string its text.
        unsafe { judge_cursor(ps, query_string) };
    }
    ps
}

#[pgrx::pg_guard]
// SAFETY: called from `hook` with the plan just made; #[pg_guard] catches panics.
unsafe extern "C-unwind" fn judge_cursor(
    ps: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
) {
    // SAFETY: ps is a valid PlannedStmt.
    let ps = unsafe { &*ps };
    // SAFETY: ps is valid.
    if identity::session_user_is_agent() || unsafe { plan::is_read_only(ps) } {
        return;
    }
    // SAFETY: ps is valid.
    let shape = unsafe { executor::shape(ps) };
    if treatment(&settings::Live, shape) == Treatment::Pass {
        return;
    }
    // SAFETY: ps is valid; query_string is its text.
    let (stmt, text) = unsafe { (plan::classify(ps), pg::statement_text(query_string, ps)) };
    guard::judge(&stmt, &text, guard::Origin::Nested);
}
