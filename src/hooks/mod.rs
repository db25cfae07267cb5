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
    gate::install();
    crate::row_cap::install();
    crate::dry_run::install();
    crate::review::install();
}
