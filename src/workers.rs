//! Starting a short-lived background worker that a backend waits for (a
//! revocation's rollback, a recycle bin purge) when the worker slots may
//! all be taken, by audit writers of busy databases say.

use pgrx::bgworkers::{BackgroundWorkerBuilder, DynamicBackgroundWorker};
use pgrx::pg_sys;

/// Starts the worker `build` describes, notifying this backend when it
/// ends. When no slot is free, idle audit writers are asked to retire and
/// the start is tried again every 100 ms, for up to 10 s (a writer retires
/// after at most 5 s idle); `None` when no slot came free.
pub fn start(build: impl Fn() -> BackgroundWorkerBuilder) -> Option<DynamicBackgroundWorker> {
    for _ in 0..100 {
        let started = build()
            .set_restart_time(None)
            // SAFETY: reads this backend's pid.
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .load_dynamic();
        if let Ok(worker) = started {
            return Some(worker);
        }
        crate::audit::spool::want_worker_slot();
        // SAFETY: waits on this backend's own latch, as any backend may;
        // interrupts (a cancel) are served after each wait.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                100,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pg_sys::check_for_interrupts!();
    }
    None
}
