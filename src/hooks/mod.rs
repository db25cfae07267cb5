//! Thin glue: the PostgreSQL hooks. They translate, ask the guard, and act.
//!
//! Each hook first asks "is this session an agent?" from a per-role cache. For
//! every other session that is the only work done: a few branches, no SPI, no
//! catalog scan, and no pgrx guard (see `crate::unguarded`): the hook's outer
//! function owns nothing to clean up and hands the statement straight on; only
//! agents' statements enter the guarded functions. Previous hooks are always
//! chained.
//!
//! - `utility`: ProcessUtility (DDL, TRUNCATE, DROP DATABASE ...);
//! - `executor`: ExecutorStart / ExecutorEnd (planned queries);
//! - `fmgr`: needs_fmgr_hook / fmgr_hook (calls of functions agents own);
//! - `access`: object_access_hook at function execution (built-in calls
//!   that destroy; credentials on the fast-path protocol);
//! - `planner`: cursors over writing statements opened in agents' code;
//! - `auth`: ClientAuthentication and the login checks that must wait for
//!   per-database settings;
//! - `gate`: the approval window and the agent test every hook shares.
//!
//! One transaction callback and one subtransaction callback serve the
//! modules that keep state for a transaction (`gate`, `row_cap`, `dry_run`,
//! `review`).

use pgrx::pg_sys;

pub mod access;
pub mod auth;
pub mod executor;
pub mod fmgr;
pub mod gate;
pub mod planner;
pub mod utility;

/// Installs every hook and callback. Called once from `_PG_init`.
pub fn install() {
    utility::install();
    executor::install();
    fmgr::install();
    access::install();
    planner::install();
    auth::install();
    // SAFETY: registers the callbacks once, from _PG_init.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// One transaction callback for the modules that keep state for a
/// transaction (every transaction of every session passes here: one call
/// instead of one per module). Each returns at once when it holds nothing.
// SAFETY: registered with RegisterXactCallback; each callee is safe to call at every event (only a review's PRE_COMMIT and PRE_PREPARE may raise, through its guarded path).
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, arg: *mut std::ffi::c_void) {
    // SAFETY: called as PostgreSQL calls a transaction callback.
    unsafe {
        crate::review::on_xact(event, arg);
        crate::dry_run::on_xact(event, arg);
        crate::row_cap::on_xact(event, arg);
        crate::recycle::on_xact(event, arg);
        gate::xact_callback(event, arg);
    }
}

/// The same for subtransactions.
// SAFETY: registered with RegisterSubXactCallback; each callee only trims or restores state.
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    arg: *mut std::ffi::c_void,
) {
    // SAFETY: called as PostgreSQL calls a subtransaction callback.
    unsafe {
        crate::review::on_subxact(event, my, parent, arg);
        crate::dry_run::on_subxact(event, my, parent, arg);
        crate::row_cap::on_subxact(event, my, parent, arg);
        crate::recycle::on_subxact(event, my, parent, arg);
        gate::subxact_callback(event, my, parent, arg);
    }
}
