//! Running the extension's own catalog work as the bootstrap superuser, with a
//! safe search_path, and without re-entering our own hooks.
//!
//! The agent's search_path must never steer a query that runs with elevated
//! rights, so search_path is pinned to `pg_catalog, pg_temp` for the duration.
//! The user, security context and GUC nest level are restored on return, and by
//! PostgreSQL's own (sub)transaction abort on error.

use pgrx::pg_sys;

// SAFETY: a backend is single-threaded; set and cleared around the
// extension's own queries and on (sub)transaction abort.
static mut ACTIVE: bool = false;
// SAFETY: as ACTIVE. The transaction nesting level the outermost `run`
// began at: a subtransaction that began inside it (an agent's function
// catching its own error) does not end it when it aborts.
static mut ACTIVE_LEVEL: i32 = 0;

/// True while the extension runs its own queries: hooks pass straight through.
#[inline]
pub fn active() -> bool {
    // SAFETY: see ACTIVE.
    unsafe { ACTIVE }
}

struct Reset(bool, i32);
impl Drop for Reset {
    fn drop(&mut self) {
        // SAFETY: see ACTIVE.
        unsafe {
            ACTIVE = self.0;
            ACTIVE_LEVEL = self.1;
        }
    }
}

/// Called on transaction abort: an error may have skipped the Drop.
pub fn reset() {
    // SAFETY: see ACTIVE.
    unsafe { ACTIVE = false }
}

/// Called on subtransaction abort (the aborting one still current): ends
/// the extension's own work only when that work ran inside it. One that
/// began inside the work (code the work met, catching its own error) leaves
/// the work, and everything that refuses code meeting it, as it was.
pub fn reset_sub() {
    // SAFETY: see ACTIVE; reads the transaction state.
    unsafe {
        if ACTIVE && pg_sys::GetCurrentTransactionNestLevel() <= ACTIVE_LEVEL {
            ACTIVE = false;
        }
    }
}

pub fn run<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: switches user and search_path the way SECURITY DEFINER
    // functions do, and restores both on return (and PostgreSQL's abort
    // processing restores them on error).
    unsafe {
        let mut uid = pg_sys::InvalidOid;
        let mut sec = 0;
        pg_sys::GetUserIdAndSecContext(&mut uid, &mut sec);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        let nest = pg_sys::NewGUCNestLevel();
        crate::pg::set_setting(
            c"search_path",
            c"pg_catalog, pg_temp",
            pg_sys::GucAction::GUC_ACTION_SAVE,
        );
        let _reset = Reset(ACTIVE, ACTIVE_LEVEL);
        if !ACTIVE {
            ACTIVE_LEVEL = pg_sys::GetCurrentTransactionNestLevel();
        }
        ACTIVE = true;
        let r = f();
        pg_sys::AtEOXact_GUC(true, nest);
        pg_sys::SetUserIdAndSecContext(uid, sec);
        r
    }
}
