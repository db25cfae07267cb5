//! PostgreSQL functions called without pgrx's per-call guard, for the hooks'
//! path of sessions that are not agents.
//!
//! Every `pg_sys` function goes through a `sigsetjmp` so that a PostgreSQL
//! ERROR cannot unwind through Rust frames that need cleaning up: about a
//! hundred instructions a call. For a session that is not an agent the hooks
//! do nothing but look at a cache and hand the statement on, so they call
//! these instead, from frames that own nothing to clean up (an ERROR raised
//! below them jumps over such a frame safely):
//! - `GetSessionUserId` and `GetUserId` only read a variable and never raise;
//! - the `standard_*` executor, planner and utility functions may raise, and
//!   are only called from such frames, exactly as PostgreSQL calls its hooks;
//! - `SetLatch`, `HandleCatchupInterrupt` and
//!   `IsTransactionOrTransactionBlock`, from a signal handler, and `MemoryContextStrdup`, from the
//!   log hook while an error is being reported (pgrx's guard is no place
//!   for either).

use pgrx::pg_sys::{
    DestReceiver, Latch, MemoryContext, Oid, ParamListInfo, PlannedStmt, ProcessUtilityContext,
    Query, QueryCompletion, QueryDesc, QueryEnvironment, ScanDirection, SubTransactionId,
};
use std::ffi::{c_char, c_int};

extern "C-unwind" {
    pub fn GetSessionUserId() -> Oid;
    pub fn GetUserId() -> Oid;
    pub fn GetCurrentSubTransactionId() -> SubTransactionId;
    #[cfg(not(feature = "pg18"))]
    pub fn standard_ExecutorRun(
        query_desc: *mut QueryDesc,
        direction: ScanDirection::Type,
        count: u64,
        execute_once: bool,
    );
    /// Where the server's API differs: PostgreSQL 18 dropped `execute_once`.
    #[cfg(feature = "pg18")]
    pub fn standard_ExecutorRun(
        query_desc: *mut QueryDesc,
        direction: ScanDirection::Type,
        count: u64,
    );
    pub fn standard_ExecutorFinish(query_desc: *mut QueryDesc);
    pub fn standard_ExecutorStart(query_desc: *mut QueryDesc, eflags: c_int);
    pub fn standard_ExecutorEnd(query_desc: *mut QueryDesc);
    pub fn standard_planner(
        parse: *mut Query,
        query_string: *const c_char,
        cursor_options: c_int,
        params: ParamListInfo,
    ) -> *mut PlannedStmt;
    /// Async-signal-safe: what PostgreSQL's own signal handlers call.
    pub fn SetLatch(latch: *mut Latch);
    /// Async-signal-safe: sets `catchupInterruptPending` and the latch.
    pub fn HandleCatchupInterrupt();
    /// Reads the transaction state; never raises.
    pub fn IsTransactionOrTransactionBlock() -> bool;
    pub fn MemoryContextStrdup(context: MemoryContext, string: *const c_char) -> *mut c_char;
    #[allow(clippy::too_many_arguments)]
    pub fn standard_ProcessUtility(
        pstmt: *mut PlannedStmt,
        query_string: *const c_char,
        read_only_tree: bool,
        context: ProcessUtilityContext::Type,
        params: ParamListInfo,
        query_env: *mut QueryEnvironment,
        dest: *mut DestReceiver,
        qc: *mut QueryCompletion,
    );
}
