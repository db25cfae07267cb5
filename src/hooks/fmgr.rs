//! needs_fmgr_hook / fmgr_hook: calls of functions an agent owns, whoever
//! calls them (see `crate::agent_code`).
//!
//! PostgreSQL asks `needs_fmgr_hook` about every function it looks up, in
//! every session, except builtins. The answer comes from a cache: yes only
//! for a function an agent owns. Such a function is then called through
//! `fmgr_security_definer`, which calls `fmgr_hook` when the call starts and
//! when it ends or raises; the hook keeps `agent_code`'s stack of running
//! agent code. A yes also keeps the planner from inlining the function,
//! which would otherwise run its body with no call to see.

use crate::agent_code;
use pgrx::pg_sys;
use pgrx::pg_sys::FmgrHookEventType::{FHET_ABORT, FHET_END, FHET_START};

// SAFETY: written once by `install` (from _PG_init), then only read.
static mut PREV_NEEDS: pg_sys::needs_fmgr_hook_type = None;
// SAFETY: as PREV_NEEDS.
static mut PREV_HOOK: pg_sys::fmgr_hook_type = None;

pub fn install() {
    // SAFETY: hook installation from _PG_init, keeping the previous hooks.
    unsafe {
        PREV_NEEDS = pg_sys::needs_fmgr_hook;
        pg_sys::needs_fmgr_hook = Some(needs);
        PREV_HOOK = pg_sys::fmgr_hook;
        pg_sys::fmgr_hook = Some(hook);
    }
}

/// Objects below this oid were made by initdb: never an agent's. Answering
/// no for them without a lookup also keeps the answer the same for JIT's
/// own lookup (fmgr_symbol), which has no builtin shortcut.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Unguarded: a cache lookup; only a miss enters the guarded path.
// SAFETY: installed as needs_fmgr_hook; PostgreSQL passes a function oid.
unsafe extern "C-unwind" fn needs(fn_oid: pg_sys::Oid) -> bool {
    // SAFETY: see PREV_NEEDS; called as PostgreSQL calls the hook.
    if let Some(prev) = unsafe { PREV_NEEDS } {
        // SAFETY: as above.
        if unsafe { prev(fn_oid) } {
            return true;
        }
    }
    if fn_oid.to_u32() < FIRST_NORMAL_OBJECT_ID {
        return false;
    }
    match agent_code::cached_function_agent(fn_oid) {
        Some(agent) => agent.is_some(),
        // SAFETY: called from the hook, inside fmgr_info's catalog access.
        None => unsafe { needs_checked(fn_oid) },
    }
}

#[pgrx::pg_guard]
// SAFETY: called from `needs`; #[pg_guard] catches panics.
unsafe extern "C-unwind" fn needs_checked(fn_oid: pg_sys::Oid) -> bool {
    // SAFETY: reads a backend variable.
    if !unsafe { pg_sys::IsTransactionState() } {
        return false;
    }
    agent_code::function_agent(fn_oid).is_some()
}

/// Keeps the stack balanced: one entry per started call (the agent, or
/// none for a function that is hooked for another reason), popped when
/// the call ends or raises.
// SAFETY: installed as fmgr_hook; PostgreSQL passes the call's FmgrInfo.
unsafe extern "C-unwind" fn hook(
    event: pg_sys::FmgrHookEventType::Type,
    flinfo: *mut pg_sys::FmgrInfo,
    arg: *mut pg_sys::Datum,
) {
    match event {
        FHET_START => {
            // SAFETY: flinfo is the call's valid FmgrInfo.
            let fn_oid = unsafe { (*flinfo).fn_oid };
            let agent = match agent_code::cached_function_agent(fn_oid) {
                Some(a) => a,
                // SAFETY: the call starts inside a transaction.
                None => Some(pg_sys::Oid::from(unsafe { start_checked(fn_oid) }))
                    .filter(|a| *a != pg_sys::InvalidOid),
            };
            // An agent's function about to run inside the extension's own
            // work (planning a table whose statistics or index expressions
            // call it, a cast, a domain check, an index built): there it
            // would run with the extension's rights, or as the table's
            // owner with the guard standing aside, unjudged. Refused before
            // anything runs, and before the previous hook sees it.
            if let Some(agent) = agent.filter(|_| crate::privileged::active()) {
                // SAFETY: raises a PostgreSQL error from a guarded function.
                unsafe { refuse_in_own_work(fn_oid, agent) };
            }
            // The previous hook first: if it raises, nothing was pushed.
            // SAFETY: see PREV_HOOK; called as PostgreSQL calls the hook.
            if let Some(prev) = unsafe { PREV_HOOK } {
                // SAFETY: as above.
                unsafe { prev(event, flinfo, arg) };
            }
            agent_code::enter(agent);
        }
        FHET_END | FHET_ABORT => {
            agent_code::leave();
            // SAFETY: see PREV_HOOK; called as PostgreSQL calls the hook.
            if let Some(prev) = unsafe { PREV_HOOK } {
                // SAFETY: as above.
                unsafe { prev(event, flinfo, arg) };
            }
        }
        _ => {}
    }
}

#[pgrx::pg_guard]
// SAFETY: called from `hook` at the start of a call; #[pg_guard] catches panics.
unsafe extern "C-unwind" fn start_checked(fn_oid: pg_sys::Oid) -> u32 {
    agent_code::function_agent(fn_oid).map_or(0, |a| a.to_u32())
}

#[pgrx::pg_guard]
// SAFETY: called from `hook` at the start of a call; #[pg_guard] turns the
// error into PostgreSQL's.
unsafe extern "C-unwind" fn refuse_in_own_work(fn_oid: pg_sys::Oid, agent: pg_sys::Oid) {
    // SAFETY: a catalog lookup of a function that exists (it is starting).
    let function = unsafe { crate::pg::cstr(pg_sys::format_procedure_qualified(fn_oid)) };
    crate::pg::refuse(aas_policy::side_door::own_work_call_denial(
        &function,
        &crate::pg::role_name(agent),
        fn_oid.to_u32(),
    ));
}
