//! object_access_hook, at OAT_FUNCTION_EXECUTE: PostgreSQL announces every
//! function call it starts, in the executor and in the fast-path protocol
//! (libpq's PQfn, which runs no statement). For an agent this is where
//! credentials that ended are noticed on that path too, and where the
//! built-in calls that destroy (`classify::calls`) are judged.

use super::gate;
use crate::classify::calls;
use crate::{agent_code, guard, identity, pg};
use pgrx::pg_sys;
use std::ffi::c_void;

// SAFETY: written once by `install` (from _PG_init), then only read.
static mut PREV: pg_sys::object_access_hook_type = None;

pub fn install() {
    // SAFETY: hook installation from _PG_init, keeping the previous hook.
    unsafe {
        PREV = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(hook);
    }
}

/// Unguarded: for a session known not to be an agent, running no agent's
/// code, one comparison and the cache test.
// SAFETY: installed as object_access_hook; PostgreSQL passes its arguments.
unsafe extern "C-unwind" fn hook(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: i32,
    arg: *mut c_void,
) {
    // SAFETY: see PREV; called exactly as PostgreSQL calls the hook.
    if let Some(prev) = unsafe { PREV } {
        // SAFETY: as above.
        unsafe { prev(access, class_id, object_id, sub_id, arg) };
    }
    if access == pg_sys::ObjectAccessType::OAT_DROP
        || access == pg_sys::ObjectAccessType::OAT_POST_ALTER
    {
        if access == pg_sys::ObjectAccessType::OAT_DROP {
            // Collected only while a DROP is tried (recycle bin).
            crate::recycle::objects::on_drop(class_id, object_id, sub_id);
        }
        // What the bin holds is changed by no agent's statement; the
        // extension's own work (keep, restore, purge) and a DROP being
        // tried pass.
        if !identity::known_not_agent()
            && !crate::privileged::active()
            && !crate::recycle::objects::collecting()
        {
            // SAFETY: an object is dropped or altered, inside a transaction.
            unsafe { held(class_id, object_id, sub_id) };
        }
        return;
    }
    if access == pg_sys::ObjectAccessType::OAT_FUNCTION_EXECUTE
        && !(identity::known_not_agent() && agent_code::running().is_none())
        // Inside a statement (a portal is active) the statement was already
        // checked: only the calls `calls` knows need a look. A fast-path
        // call runs in no portal: its session is checked too.
        // SAFETY: reads a backend variable.
        && (calls::may_matter(object_id) || unsafe { pg_sys::ActivePortal }.is_null())
    {
        // SAFETY: a function is about to run, inside a transaction.
        unsafe { checked(object_id) };
    }
}

#[pgrx::pg_guard]
// SAFETY: called from `hook`; #[pg_guard] catches panics.
unsafe extern "C-unwind" fn checked(func: pg_sys::Oid) {
    if !gate::agent_statement() {
        return;
    }
    if let Some(stmt) = calls::classify(func) {
        // SAFETY: debug_query_string is NULL or the statement's text
        // ("fastpath function call" on that path).
        let text = unsafe { pg::cstr(pg_sys::debug_query_string) };
        guard::judge(&stmt, &text, guard::Origin::Nested);
    }
}

#[pgrx::pg_guard]
// SAFETY: called from `hook`; #[pg_guard] catches panics.
unsafe extern "C-unwind" fn held(class: pg_sys::Oid, oid: pg_sys::Oid, sub: i32) {
    if gate::agent_statement() {
        crate::recycle::objects::refuse_if_held(class, oid, sub);
    }
}
