//! Connecting this extension's background workers to a database as the
//! bootstrap superuser, with settings of their own.

use pgrx::pg_sys::GucAction::GUC_ACTION_SET;
use pgrx::prelude::*;
use std::ffi::CStr;

/// What a worker of this extension connects to a database with, as the
/// bootstrap superuser, whatever that database's own settings say. Its
/// owner may `ALTER DATABASE ... SET` any user setting, and a worker takes
/// them in when it connects: a search_path with the owner's schema first
/// would run the owner's operators in the worker's SQL as a superuser; a
/// read-only default, a timeout or a role would make every load fail
/// (after three, a spool file is set aside: its events dropped). The
/// session's user (`session_authorization`, which a database's settings
/// may name too) is set back to the bootstrap superuser first, by
/// [`connect`].
const WORKER_SETTINGS: &[(&CStr, &CStr)] = &[
    (c"search_path", c"pg_catalog, pg_temp"),
    (c"role", c"none"),
    (c"default_transaction_read_only", c"off"),
    (c"default_transaction_isolation", c"read committed"),
    (c"statement_timeout", c"0"),
    (c"lock_timeout", c"0"),
    (c"idle_in_transaction_session_timeout", c"0"),
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    (c"transaction_timeout", c"0"),
    (c"standard_conforming_strings", c"on"),
    (c"transform_null_equals", c"off"),
    (c"exit_on_error", c"off"),
    (c"default_tablespace", c""),
    (c"temp_tablespaces", c""),
    (c"default_table_access_method", c"heap"),
];

/// Connects this background worker to a database as the bootstrap
/// superuser, then sets [`WORKER_SETTINGS`] as a session's `SET` would:
/// above the database's and the role's settings and the configuration
/// file's (a reload included), while a function's own `SET` clause still
/// applies inside it.
pub fn connect(dboid: u32, flags: u32) {
    // SAFETY: called once, from a registered background worker, as
    // BackgroundWorker::connect_worker_to_spi_by_oid does.
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnectionByOid(
            pg_sys::Oid::from(dboid),
            pg_sys::InvalidOid,
            flags,
        )
    };
    pgrx::bgworkers::BackgroundWorker::transaction(|| {
        let bootstrap = pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID);
        // SAFETY: a catalog lookup of a role that always exists.
        let name = unsafe { CStr::from_ptr(pg_sys::GetUserNameFromId(bootstrap, false)) };
        // SAFETY: inside a transaction; known settings and valid values.
        unsafe {
            super::set_setting(c"session_authorization", name, GUC_ACTION_SET);
            for (name, value) in WORKER_SETTINGS {
                super::set_setting(name, value, GUC_ACTION_SET);
            }
        }
        // SAFETY: reads backend variables.
        let (session, current) = unsafe { (pg_sys::GetSessionUserId(), pg_sys::GetUserId()) };
        if session != bootstrap || current != bootstrap {
            // Never work as anyone else.
            pgrx::error!(
                "ai_agent_safety: a background worker is not the bootstrap superuser after connecting (session user oid {}, current user oid {}); it stops",
                session.to_u32(),
                current.to_u32()
            );
        }
    });
}
