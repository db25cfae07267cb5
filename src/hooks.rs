//! Thin glue: the PostgreSQL hooks. They translate, ask the guard, and act.
//!
//! Each hook first asks "is this session an agent?" from a per-role cache. For
//! every other session that is the only work done: a few branches, no SPI, no
//! catalog scan, and no pgrx guard (see `unguarded.rs`): the hook's outer
//! function owns nothing to clean up and hands the statement straight on; only
//! agents' statements enter the guarded functions. Previous hooks are always
//! chained.

use crate::classify::{plan, utility, StatementOps};
use crate::guard::{self, Verdict};
use crate::{credentials, identity, privileged, settings};
use pgrx::pg_sys;
use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;

static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;

/// The approval window: while an approved statement runs, what it sets off
/// (FK cascades, triggers, rules, DROP ... CASCADE) is covered by its token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Window {
    Closed,
    Utility,
    Query(*mut pg_sys::QueryDesc),
}
static mut WINDOW: Window = Window::Closed;

#[inline]
fn window_open() -> bool {
    unsafe { WINDOW != Window::Closed }
}

pub fn install() {
    unsafe {
        PREV_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(utility_hook);
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start_hook);
        PREV_EXECUTOR_END = pg_sys::ExecutorEnd_hook;
        pg_sys::ExecutorEnd_hook = Some(executor_end_hook);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

/// Should this session's statement be looked at? The hot path for everyone.
#[inline]
fn agent_statement() -> bool {
    !privileged::active() && !window_open() && identity::session_is_agent()
}

/// The text of this statement within a possibly multi-statement query string.
unsafe fn statement_text(
    query: *const std::ffi::c_char,
    pstmt: *const pg_sys::PlannedStmt,
) -> String {
    if query.is_null() {
        return String::new();
    }
    let all = std::ffi::CStr::from_ptr(query).to_string_lossy();
    let (loc, len) = if pstmt.is_null() {
        (0, 0)
    } else {
        (
            (*pstmt).stmt_location.max(0) as usize,
            (*pstmt).stmt_len.max(0) as usize,
        )
    };
    let bytes = all.as_bytes();
    let start = loc.min(bytes.len());
    let end = if len == 0 {
        bytes.len()
    } else {
        (start + len).min(bytes.len())
    };
    String::from_utf8_lossy(&bytes[start..end])
        .trim()
        .to_string()
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn utility_hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    if identity::known_not_agent() {
        let next = PREV_UTILITY.unwrap_or(crate::unguarded::standard_ProcessUtility);
        return next(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        );
    }
    utility_checked(
        pstmt,
        query_string,
        read_only_tree,
        context,
        params,
        query_env,
        dest,
        qc,
    )
}

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn utility_checked(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let mut approved = false;
    if agent_statement() {
        credentials::check_open_session();
        let node = (*pstmt).utilityStmt;
        let tag = (*node).type_;
        if settings::anything_to_enforce() || tag == pg_sys::NodeTag::T_DropdbStmt {
            let ops: StatementOps = utility::classify(node);
            if let Verdict::Approved = guard::check(&ops, &statement_text(query_string, pstmt)) {
                approved = true;
            }
        }
    }
    let saved = WINDOW;
    if approved {
        WINDOW = Window::Utility;
    }
    // Here, unlike on the unguarded path, the next hook runs inside the FFI
    // guard: this frame's Rust state must be cleaned up if it raises.
    let next = PREV_UTILITY.unwrap_or(crate::unguarded::standard_ProcessUtility);
    pg_guard_ffi_boundary(|| {
        next(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        )
    });
    if approved {
        WINDOW = saved;
    }
}

/// A write by an agent needs a closer look only if it could be refused or must
/// be recorded: a protected class in a database that requires approval, a
/// declared task environment that differs from this database's, or an audit
/// level that records writes.
unsafe fn needs_classification(ps: &pg_sys::PlannedStmt) -> bool {
    if settings::task_environment_mismatch()
        || settings::audit_level() >= crate::audit::LEVEL_WRITES
    {
        return true;
    }
    settings::require_approval()
        && (plan::classes(ps).bits() & settings::protected_operations().bits()) != 0
}

unsafe extern "C-unwind" fn executor_start_hook(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    if identity::known_not_agent() {
        let next = PREV_EXECUTOR_START.unwrap_or(crate::unguarded::standard_ExecutorStart);
        return next(query_desc, eflags);
    }
    executor_start_checked(query_desc, eflags)
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn executor_start_checked(
    query_desc: *mut pg_sys::QueryDesc,
    eflags: i32,
) {
    let mut approved = false;
    if agent_statement() {
        credentials::check_open_session();
        let ps = &*(*query_desc).plannedstmt;
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 == 0 && settings::anything_to_enforce() {
            if !plan::is_read_only(ps) && needs_classification(ps) {
                let ops = plan::classify(ps);
                if let Verdict::Approved =
                    guard::check(&ops, &statement_text((*query_desc).sourceText, ps))
                {
                    approved = true;
                }
            } else if settings::audit_level() >= crate::audit::LEVEL_ALL {
                let read = StatementOps {
                    verb: "SELECT",
                    ..Default::default()
                };
                guard::check(&read, &statement_text((*query_desc).sourceText, ps));
            }
        }
    }
    let next = PREV_EXECUTOR_START.unwrap_or(crate::unguarded::standard_ExecutorStart);
    pg_guard_ffi_boundary(|| next(query_desc, eflags));
    if approved {
        WINDOW = Window::Query(query_desc);
    }
}

/// Unguarded for everyone: it only closes the approval window and hands on.
unsafe extern "C-unwind" fn executor_end_hook(query_desc: *mut pg_sys::QueryDesc) {
    if WINDOW == Window::Query(query_desc) {
        WINDOW = Window::Closed;
    }
    let next = PREV_EXECUTOR_END.unwrap_or(crate::unguarded::standard_ExecutorEnd);
    next(query_desc)
}

/// Unguarded: it only resets two flags (called at every transaction event of
/// every session).
unsafe extern "C-unwind" fn xact_callback(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_COMMIT | XACT_EVENT_PREPARE
    ) {
        WINDOW = Window::Closed;
        privileged::reset();
    }
}

/// Unguarded, like `xact_callback`.
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        WINDOW = Window::Closed;
        privileged::reset();
    }
}
