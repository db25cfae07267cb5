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
use std::ffi::{c_char, CString};

/// twophase.h, which pgrx does not bind.
mod twophase {
    use std::ffi::c_char;
    // SAFETY: the declaration of twophase.h; called inside a transaction.
    extern "C-unwind" {
        pub fn FinishPreparedTransaction(gid: *const c_char, is_commit: bool);
    }
}

const OWNED_BY: &str = "SELECT p.gid, d.oid FROM pg_catalog.pg_prepared_xacts p \
     JOIN pg_catalog.pg_database d ON d.datname = p.database WHERE p.owner = $1";

/// (gid, database oid) of every prepared transaction `role` owns.
fn owned_by(role: &str) -> Vec<(String, pg_sys::Oid)> {
    Spi::connect(|c| {
        let rows = c.select(OWNED_BY, None, &[role.into()])?;
        let mut out = Vec::new();
        for r in rows {
            if let (Some(g), Some(d)) = (r.get::<String>(1)?, r.get::<pg_sys::Oid>(2)?) {
                out.push((g, d));
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
    let mut databases: Vec<pg_sys::Oid> = before.iter().map(|(_, d)| *d).collect();
    databases.sort_unstable_by_key(|d| d.to_u32());
    databases.dedup();
    for db in databases {
        let started = BackgroundWorkerBuilder::new(&format!(
            "ai_agent_safety: roll back prepared transactions of {role}"
        ))
        .set_type("ai_agent_safety rollback")
        .set_library("ai_agent_safety")
        .set_function("aas_rollback_prepared_main")
        .set_argument(Some(pg_sys::Datum::from(db)))
        .set_extra(role)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: reads this backend's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic();
        if let Ok(worker) = started {
            // Ends when the worker has exited (or the postmaster died).
            let _ = worker.wait_for_shutdown();
        }
    }
    let left = owned_by(role).len() as i32;
    (before.len() as i32 - left, left)
}

/// The worker: connected to one database (even one that does not accept
/// connections), it rolls back the prepared transactions there whose owner
/// is the role named in its extra data.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn aas_rollback_prepared_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let role = BackgroundWorker::get_extra().to_string();
    // SAFETY: called once, from this registered background worker; as the
    // bootstrap superuser, which may finish any prepared transaction.
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnectionByOid(
            pg_sys::Oid::from(arg.value() as u32),
            pg_sys::InvalidOid,
            pg_sys::BGWORKER_BYPASS_ALLOWCONN,
        )
    };
    // SAFETY: reads this backend's database.
    let here = unsafe { pg_sys::MyDatabaseId };
    let gids: Vec<String> = BackgroundWorker::transaction(|| {
        owned_by(&role)
            .into_iter()
            .filter(|(_, d)| *d == here)
            .map(|(g, _)| g)
            .collect()
    });
    for gid in gids {
        let Ok(c) = CString::new(gid) else { continue };
        let p: *const c_char = c.as_ptr();
        BackgroundWorker::transaction(|| {
            // SAFETY: inside a transaction, as ROLLBACK PREPARED calls it.
            unsafe {
                pg_sys::ffi::pg_guard_ffi_boundary(|| twophase::FinishPreparedTransaction(p, false))
            }
        });
    }
}
