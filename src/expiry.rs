//! An idle agent session does not outlive its credentials: a timeout set at
//! the session user's VALID UNTIL ends the session when it comes, waiting
//! for the client or running a query, like `pg_terminate_backend`, and the
//! client reads why.
//!
//! Armed at login (the authentication hook) and from the statement path
//! (`guard::end_invalid_session`), moved when VALID UNTIL moved; only agent
//! sessions ever register the timeout, the log hook that words the message
//! or the transaction callback that checks again.
//!
//! When the timeout comes while the session waits for its client outside a
//! transaction, the catalog may say otherwise (a DBA extended VALID UNTIL,
//! and an idle session has not read that yet). So the handler only asks for
//! a check: it raises PostgreSQL's own catch-up interrupt, which an idle
//! backend serves with a short transaction that reads the pending catalog
//! changes; at its commit `on_xact` reads the role again and ends the
//! session, or moves the timeout to the new VALID UNTIL. Inside a
//! transaction (a statement running, or idle in a transaction block) it ends
//! the session at once, as before.

use pgrx::pg_sys;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::pg::timeout;

/// Set by the timeout handler (a signal handler): only an atomic store.
static EXPIRED: AtomicBool = AtomicBool::new(false);

/// Set by the timeout handler for an idle session: check the catalog at the
/// next commit (the catch-up transaction the handler asks for).
static RECHECK: AtomicBool = AtomicBool::new(false);

/// The session user the timeout was armed for: after RESET SESSION
/// AUTHORIZATION the session is someone else's, and is left alone.
static ARMED_FOR: AtomicU32 = AtomicU32::new(0);

struct Armed {
    id: i32,
    at: Option<i64>,
    message: CString,
    prev_emit: pg_sys::emit_log_hook_type,
}

// SAFETY: a backend is single-threaded; only the statement path writes it,
// the log hook reads it.
static mut ARMED: Option<Armed> = None;

/// Runs in a signal handler: an atomic store and what PostgreSQL's own
/// `die()` does (flags and the latch), nothing that allocates.
// SAFETY: registered with RegisterTimeout; async-signal-safe.
unsafe extern "C-unwind" fn on_expiry() {
    // SAFETY: reads a backend variable; async-signal-safe.
    let user = unsafe { crate::unguarded::GetSessionUserId() }.to_u32();
    // Before the login sets the session user it can only be the armed role.
    if user != 0 && user != ARMED_FOR.load(Ordering::SeqCst) {
        return;
    }
    // SAFETY: reads the transaction state, a backend variable.
    if unsafe { crate::unguarded::IsTransactionOrTransactionBlock() } {
        end_now();
    } else {
        RECHECK.store(true, Ordering::SeqCst);
        // SAFETY: what the SIGUSR1 handler calls for PROCSIG_CATCHUP_INTERRUPT:
        // a volatile flag and the latch.
        unsafe { crate::unguarded::HandleCatchupInterrupt() };
    }
}

/// Ends the session at the next interrupt check, as `pg_terminate_backend`
/// would; async-signal-safe.
fn end_now() {
    EXPIRED.store(true, Ordering::SeqCst);
    // SAFETY: volatile flags and SetLatch, as PostgreSQL's signal handlers use them.
    unsafe {
        pg_sys::ProcDiePending = 1;
        pg_sys::InterruptPending = 1;
        crate::unguarded::SetLatch(pg_sys::MyLatch);
    }
}

/// At the commit of the transaction an idle session ran for the catch-up
/// interrupt (or of any later one): reads the role as it is now, moves the
/// timeout if VALID UNTIL moved, and ends the session if it must end.
#[pgrx::pg_guard]
// SAFETY: registered with RegisterXactCallback; at PRE_COMMIT the transaction
// is still valid, so the syscache can be read.
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event == pg_sys::XactEvent::XACT_EVENT_ABORT {
        rearm_after_error();
        return;
    }
    if event != pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT || !RECHECK.swap(false, Ordering::SeqCst) {
        return;
    }
    let facts = crate::credentials::session_facts();
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    if facts.is_agent {
        arm_for_session(facts, now);
    }
    if let Err((_, d)) = aas_policy::check_session(facts, now) {
        // SAFETY: see ARMED.
        if let Some(a) = unsafe { (*std::ptr::addr_of_mut!(ARMED)).as_mut() } {
            a.message = CString::new(d.message).unwrap_or_default();
        }
        end_now();
    }
}

/// Words the FATAL that the expiry causes ("terminating connection due to
/// administrator command") as what it is.
// SAFETY: installed as emit_log_hook in an agent's backend; edata is valid.
unsafe extern "C-unwind" fn on_emit(edata: *mut pg_sys::ErrorData) {
    // SAFETY: see ARMED.
    let armed = unsafe { (*std::ptr::addr_of!(ARMED)).as_ref() };
    if let Some(a) = armed {
        // SAFETY: edata is PostgreSQL's error being emitted; the new message
        // is copied into ErrorContext, where its strings live.
        unsafe {
            if EXPIRED.load(Ordering::SeqCst)
                && (*edata).elevel == pg_sys::FATAL as i32
                && (*edata).sqlerrcode == pgrx::PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN as i32
            {
                (*edata).message =
                    crate::unguarded::MemoryContextStrdup(pg_sys::ErrorContext, a.message.as_ptr());
            }
            if let Some(prev) = a.prev_emit {
                prev(edata);
            }
        }
    }
}

/// At the end of a backend the expiry ended: the audit event, like the one
/// the statement path records, from the context filled when it was armed.
#[pgrx::pg_guard]
// SAFETY: registered with before_shmem_exit; shared memory is still attached.
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    if !EXPIRED.load(Ordering::SeqCst) {
        return;
    }
    // SAFETY: see ARMED.
    if let Some(a) = unsafe { (*std::ptr::addr_of!(ARMED)).as_ref() } {
        crate::audit::record_with_last_context(crate::audit::Event {
            reason: a.message.to_string_lossy().into_owned(),
            ..crate::audit::Event::new(
                aas_policy::Source::Credentials,
                aas_policy::EventKind::SessionExpired,
                aas_policy::Verdict::Refuse,
            )
        });
    }
}

/// PostgreSQL's error recovery disables every timeout before it aborts the
/// transaction: an agent whose last statement failed would otherwise sit
/// past its VALID UNTIL. So the abort of a transaction or subtransaction
/// sets it again (a time already past fires at once).
fn rearm_after_error() {
    // SAFETY: see ARMED; the id was registered when it was filled.
    if let Some(a) = unsafe { (*std::ptr::addr_of!(ARMED)).as_ref() } {
        if let Some(t) = a.at {
            // SAFETY: as above.
            unsafe { timeout::enable_timeout_at(a.id, t) };
        }
    }
}

/// The subtransaction variant of the abort (an error inside a SAVEPOINT).
// SAFETY: registered with RegisterSubXactCallback; it only sets a timer.
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        rearm_after_error();
    }
}

/// Arms (or moves) the timeout at the session user's VALID UNTIL.
pub fn arm_for_session(facts: &aas_policy::LoginFacts, now: i64) {
    arm(
        facts.valid_until_us,
        // SAFETY: reads a backend variable.
        unsafe { crate::unguarded::GetSessionUserId() },
        &facts.role,
        facts.valid_until_text.as_deref().unwrap_or_default(),
        now,
    );
}

/// Arms (or moves, or disarms) the timeout at `valid_until` (microseconds
/// since the PostgreSQL epoch; `None`: no expiry) for the session of
/// `role_oid`. A time already past is not armed: the statement being
/// checked ends the session itself.
pub fn arm(
    valid_until: Option<i64>,
    role_oid: pg_sys::Oid,
    role: &str,
    until_text: &str,
    now: i64,
) {
    let valid_until = valid_until.filter(|t| *t > now);
    // SAFETY: see ARMED.
    let armed = unsafe { &mut *std::ptr::addr_of_mut!(ARMED) };
    // Unchanged, and still pending: an error's recovery disables every
    // timeout, so an armed one is checked, not assumed.
    // SAFETY: the id was registered when `armed` was filled.
    let pending = |a: &Armed| a.at.is_none() || unsafe { timeout::get_timeout_active(a.id) };
    if armed
        .as_ref()
        .is_some_and(|a| a.at == valid_until && pending(a))
        || (armed.is_none() && valid_until.is_none())
    {
        return;
    }
    ARMED_FOR.store(role_oid.to_u32(), Ordering::SeqCst);
    let message = CString::new(format!(
        "credentials of agent role \"{role}\" expired at {until_text}; ending the session"
    ))
    .unwrap_or_default();
    // At login no database is selected yet: the exit event then reads the
    // connection instead.
    // SAFETY: reads a backend variable.
    if unsafe { pg_sys::MyDatabaseId } != pg_sys::InvalidOid {
        crate::audit::prepare_context();
    }
    let a = armed.get_or_insert_with(|| {
        // SAFETY: registers one timeout, this backend's log hook and its
        // exit callback, once.
        unsafe {
            let id = timeout::RegisterTimeout(timeout::USER_TIMEOUT, on_expiry);
            let prev_emit = pg_sys::emit_log_hook;
            pg_sys::emit_log_hook = Some(on_emit);
            pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0));
            pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
            Armed {
                id,
                at: None,
                message: CString::default(),
                prev_emit,
            }
        }
    });
    a.message = message;
    a.at = valid_until;
    // SAFETY: the timeout was registered above.
    unsafe {
        match valid_until {
            Some(t) => timeout::enable_timeout_at(a.id, t),
            None => timeout::disable_timeout(a.id, false),
        }
    }
}
