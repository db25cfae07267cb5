//! Prepared transactions of a role whose credentials are revoked: they
//! outlive its sessions (and may hold locks), so revocation rolls them back.
//!
//! `ROLLBACK PREPARED` runs only as a top-level command, and only in the
//! database the transaction was prepared in. So for each such database a
//! short background worker connects there and rolls back the role's
//! prepared transactions, each in a transaction of its own, as the command
//! would; the revoking session waits for it.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use std::ffi::{c_char, CStr, CString};

/// twophase.h, which pgrx does not bind.
mod twophase {
    use std::ffi::c_char;
    // SAFETY: the declaration of twophase.h; called inside a transaction.
    extern "C-unwind" {
        pub fn FinishPreparedTransaction(gid: *const c_char, is_commit: bool);
    }
}

/// Rolls back this database's prepared transaction `gid` (its bytes), as
/// ROLLBACK PREPARED does. Must run inside a transaction, as the command
/// does; errors as the command would.
pub fn roll_back(gid: &CStr) {
    let p: *const c_char = gid.as_ptr();
    // SAFETY: inside a transaction (this function's contract), as ROLLBACK
    // PREPARED calls it; `p` outlives the call.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| twophase::FinishPreparedTransaction(p, false)) }
}

/// The prepared transactions of this database, as a FROM item `p` with
/// `xid` (int8), `owner` and `gid` as its bytes (bytea).
///
/// A gid is text in the encoding of the database it was prepared in, and
/// `pg_prepared_xacts` lists every database's: another database's gid may
/// not be valid here (a LATIN1 database's "é" is not UTF-8), and
/// `convert_to` refuses such bytes. So only this database's gids are ever
/// read (the fence `OFFSET 0` keeps the filter below the conversion), and
/// they are compared as bytes.
pub const HERE: &str = "(SELECT transaction::text::int8 AS xid, owner, \
     pg_catalog.convert_to(gid, pg_catalog.current_setting('server_encoding')) AS gid \
     FROM pg_catalog.pg_prepared_xacts \
     WHERE database OPERATOR(pg_catalog.=) pg_catalog.current_database() OFFSET 0) AS p";

/// The database oid of every prepared transaction `role` owns (one entry
/// per transaction; the gids, in their databases' encodings, are not read).
fn owned_by(role: &str) -> Vec<pg_sys::Oid> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT d.oid FROM pg_catalog.pg_prepared_xacts p \
               JOIN pg_catalog.pg_database d ON d.datname = p.database WHERE p.owner = $1",
            None,
            &[role.into()],
        )?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(d) = r.get::<pg_sys::Oid>(1)? {
                out.push(d);
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: reading prepared transactions: {e}"))
}

/// The gids (bytes) of the prepared transactions `role` owns in this
/// database.
fn owned_here_by(role: &str) -> Vec<Vec<u8>> {
    Spi::connect(|c| {
        let rows = c.select(
            &format!("SELECT p.gid FROM {HERE} WHERE p.owner = $1"),
            None,
            &[role.into()],
        )?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(g) = r.get::<Vec<u8>>(1)? {
                out.push(g);
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: reading prepared transactions: {e}"))
}

/// Rolls back every prepared transaction of `role`, in every database.
/// Returns (rolled back, left): a database no worker could be started for
/// keeps its transactions, and the caller reports them.
pub fn roll_back_all_of(role: &str) -> (i32, i32) {
    let before = owned_by(role);
    if before.is_empty() {
        return (0, 0);
    }
    let mut databases = before.clone();
    databases.sort_unstable_by_key(|d| d.to_u32());
    databases.dedup();
    for db in databases {
        if let Some(worker) = start(db, role) {
            // Ends when the worker has exited (or the postmaster died).
            let _ = worker.wait_for_shutdown();
        }
    }
    let left = owned_by(role).len() as i32;
    (before.len() as i32 - left, left)
}

/// Starts the worker that rolls back `role`'s prepared transactions in
/// database `db` (waiting for a slot if need be: `workers::start`).
fn start(db: pg_sys::Oid, role: &str) -> Option<pgrx::bgworkers::DynamicBackgroundWorker> {
    crate::workers::start(|| {
        BackgroundWorkerBuilder::new(&format!(
            "ai_agent_safety: roll back prepared transactions of {role}"
        ))
        .set_type("ai_agent_safety rollback")
        .set_library("ai_agent_safety")
        .set_function("aas_rollback_prepared_main")
        .set_argument(Some(pg_sys::Datum::from(db)))
        .set_extra(role)
        .enable_spi_access()
    })
}

/// The worker: connected to one database (even one that does not accept
/// connections), it rolls back the prepared transactions there whose owner
/// is the role named in its extra data.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aas_rollback_prepared_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let role = BackgroundWorker::get_extra().to_string();
    // As the bootstrap superuser, which may finish any prepared transaction.
    crate::pg::worker::connect(arg.value() as u32, pg_sys::BGWORKER_BYPASS_ALLOWCONN);
    let gids = BackgroundWorker::transaction(|| owned_here_by(&role));
    for gid in gids {
        let Ok(c) = CString::new(gid) else { continue };
        BackgroundWorker::transaction(|| roll_back(&c));
    }
}
