//! ProcessUtility: DDL, TRUNCATE, DROP DATABASE and every other utility
//! statement of an agent is classified and judged before it runs.

use super::gate::{self, Window};
use crate::classify::utility;
use crate::guard::{self, Outcome};
use crate::unguarded::standard_ProcessUtility;
use crate::{pg, settings};
use aas_policy::{treatment, Treatment};
use pgrx::pg_sys;
use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;

// SAFETY: written once by `install` (from _PG_init), then only read.
static mut PREV: pg_sys::ProcessUtility_hook_type = None;

pub fn install() {
    // SAFETY: hook installation from _PG_init, keeping the previous hook.
    unsafe {
        PREV = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(hook);
    }
}

// SAFETY: the type of ProcessUtility_hook: callers pass PostgreSQL's own arguments.
fn next() -> unsafe extern "C-unwind" fn(
    *mut pg_sys::PlannedStmt,
    *const std::ffi::c_char,
    bool,
    pg_sys::ProcessUtilityContext::Type,
    pg_sys::ParamListInfo,
    *mut pg_sys::QueryEnvironment,
    *mut pg_sys::DestReceiver,
    *mut pg_sys::QueryCompletion,
) {
    // SAFETY: see PREV.
    unsafe { PREV }.unwrap_or(standard_ProcessUtility)
}

/// The hook. Unguarded: for a session known not to be an agent it owns
/// nothing and only hands the statement on.
#[allow(clippy::too_many_arguments)]
// SAFETY: installed as ProcessUtility_hook; PostgreSQL passes valid arguments. It owns nothing to clean up.
unsafe extern "C-unwind" fn hook(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: pstmt is PostgreSQL's valid utility PlannedStmt.
    if crate::identity::known_not_agent()
        && crate::agent_code::running().is_none()
        && !unsafe { may_change_groups(pstmt) }
    {
        // SAFETY: called exactly as PostgreSQL calls the hook.
        return unsafe {
            next()(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            )
        };
    }
    // SAFETY: the same arguments, into the guarded path.
    unsafe {
        checked(
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
}

/// Could this statement rename or drop a role (and so perhaps one of the
/// extension's groups), finish a prepared review, or run a table's own
/// code outside the executor
/// (COPY ... FROM runs its defaults, checks and triggers; ALTER TABLE may
/// validate its checks)? Asked of every session's utility statements: a
/// few loads and comparisons, nothing that can raise.
///
/// # Safety
/// `pstmt` is a valid utility PlannedStmt.
unsafe fn may_change_groups(pstmt: *const pg_sys::PlannedStmt) -> bool {
    // SAFETY: per this function's contract.
    let tag = unsafe { (*(*pstmt).utilityStmt).type_ };
    tag == pg_sys::NodeTag::T_DropRoleStmt
        || tag == pg_sys::NodeTag::T_RenameStmt
        || tag == pg_sys::NodeTag::T_CopyStmt
        || tag == pg_sys::NodeTag::T_AlterTableStmt
        // COMMIT or ROLLBACK PREPARED of a review is judged for everyone.
        // SAFETY: per this function's contract.
        || unsafe { crate::review::finish::is_finish((*pstmt).utilityStmt) }
}

/// The agent whose table code a COPY ... FROM or ALTER TABLE of another
/// role runs, if the table is an agent's.
///
/// # Safety
/// `node` is a valid utility statement, inside a transaction.
unsafe fn table_code_agent(node: *mut pg_sys::Node) -> Option<pg_sys::Oid> {
    // SAFETY: per this function's contract.
    let rv = unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_CopyStmt if (*(node as *const pg_sys::CopyStmt)).is_from => {
                (*(node as *const pg_sys::CopyStmt)).relation
            }
            pg_sys::NodeTag::T_AlterTableStmt => {
                (*(node as *const pg_sys::AlterTableStmt)).relation
            }
            _ => return None,
        }
    };
    // SAFETY: a valid RangeVar or NULL, inside a transaction.
    unsafe { crate::pg::existing_relation(rv) }.and_then(crate::agent_plan::agent_owner)
}

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
// SAFETY: called from `hook` with PostgreSQL's arguments; #[pg_guard] catches panics.
unsafe extern "C-unwind" fn checked(
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
    let mut recycled = false;
    let mut token = None;
    let mut rename = None;
    // What runs: the statement, or a copy of it (an agent's TRUNCATE).
    let mut run_pstmt = pstmt;
    let mut run_read_only = read_only_tree;
    // SAFETY: pstmt is valid; its utilityStmt a valid utility statement,
    // inside a transaction.
    let finishing = unsafe {
        let node = (*pstmt).utilityStmt;
        if crate::review::finish::is_finish(node) {
            crate::review::finish::before(node)
        } else {
            None
        }
    };
    // SAFETY: pstmt is valid; its utilityStmt a valid utility statement.
    if unsafe { may_change_groups(pstmt) } {
        // SAFETY: as above.
        guard::protect_groups(&unsafe { utility::classify((*pstmt).utilityStmt) });
    }
    // Another role's COPY ... FROM into an agent's table, or ALTER TABLE of
    // one, runs the agent's table code while it runs.
    let table_code = if crate::identity::session_user_is_agent() {
        None
    } else {
        // SAFETY: a valid utility statement, inside a transaction.
        unsafe { table_code_agent((*pstmt).utilityStmt) }
    };
    let key = pstmt as *mut pg_sys::QueryDesc;
    if let Some(a) = table_code {
        crate::agent_code::mark(key, a);
    }
    // In a failed transaction block only statements that end it (and so
    // roll it back) run: nothing to judge.
    // SAFETY: reads transaction state.
    let failed = unsafe { pg_sys::IsAbortedTransactionBlockState() };
    if !failed && gate::agent_statement() {
        // SAFETY: a valid utility statement, inside a transaction.
        rename = unsafe { crate::renames::before((*pstmt).utilityStmt) };
        // SAFETY: a utility PlannedStmt always has its utilityStmt.
        let node = unsafe { (*pstmt).utilityStmt };
        // SAFETY: node is a valid utility statement.
        let mut shape = unsafe { utility::shape(node) };
        // A CALL Citus delegates to another node runs there as the current
        // role: decided while that role is not the agent's own.
        // SAFETY: node is a valid utility statement, inside a transaction.
        let reaches = gate::acting_as_another_role() && unsafe { delegated_call(node) };
        shape.touches_guard |= reaches;
        if crate::review::active() {
            // SAFETY: node is a valid utility statement; query_string is
            // this statement's text.
            unsafe {
                let text = pg::statement_text(query_string, pstmt);
                // A statement's own sub-commands (CREATE TABLE's foreign
                // keys) are not statements of their own.
                let own = context != pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND;
                crate::review::utility(node, &text, shape.writes && own);
            }
        }
        if treatment(&settings::Live, shape) != Treatment::Pass {
            // SAFETY: node is a valid utility statement; query_string is this
            // statement's query text.
            let (mut stmt, text) = unsafe {
                (
                    utility::classify(node),
                    pg::statement_text(query_string, pstmt),
                )
            };
            stmt.reaches_other_nodes = reaches;
            if reaches {
                stmt.verb = "CALL";
            }
            let origin = if context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL {
                guard::Origin::Client
            } else {
                guard::Origin::Nested
            };
            if let Outcome::Approved { token: t, .. } = guard::judge(&stmt, &text, origin) {
                token = Some(t);
            }
            approved = token.is_some();
        }
        // An agent's TRUNCATE, allowed: the rows it removes are kept first
        // (when the recycle bin is on).
        // SAFETY: node is a valid utility statement, inside a transaction.
        if unsafe { (*node).type_ } == pg_sys::NodeTag::T_TruncateStmt {
            let retention = settings::recycle_retention_s();
            if aas_policy::recycle::keeps(true, retention) {
                // The TRUNCATE that runs names the very tables whose rows
                // were kept (before_truncate qualifies their names): a
                // copy of the statement, so that a cached one keeps its own.
                // SAFETY: copies a valid PlannedStmt; its copy's
                // utilityStmt is a TruncateStmt, inside a transaction;
                // query_string is this statement's text.
                unsafe {
                    let copy = pg_sys::copyObjectImpl(pstmt as *const std::ffi::c_void)
                        as *mut pg_sys::PlannedStmt;
                    crate::recycle::rows::before_truncate(
                        (*copy).utilityStmt,
                        &pg::statement_text(query_string, pstmt),
                        token,
                        retention,
                    );
                    run_pstmt = copy;
                    run_read_only = false;
                }
            }
        }
        // An agent's DROP DATABASE, allowed (approved, or in a database
        // that does not protect it), is kept in the recycle bin instead of
        // done, when the bin is on.
        // SAFETY: node is a valid utility statement, inside a transaction;
        // query_string is this statement's text.
        recycled = unsafe {
            (*node).type_ == pg_sys::NodeTag::T_DropdbStmt
                && crate::recycle::instead_of_drop(
                    node,
                    context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL,
                    &pg::statement_text(query_string, pstmt),
                    token,
                )
        };
        // So is its DROP TABLE, VIEW, MATERIALIZED VIEW, SEQUENCE or SCHEMA;
        // its other DROPs (and DROP OWNED BY) may not remove rows.
        // SAFETY: node is a valid utility statement.
        let tag = unsafe { (*node).type_ };
        if !recycled
            && matches!(
                tag,
                pg_sys::NodeTag::T_DropStmt | pg_sys::NodeTag::T_DropOwnedStmt
            )
        {
            let retention = settings::recycle_retention_s();
            if aas_policy::recycle::keeps(true, retention) {
                // SAFETY: a DropStmt or DropOwnedStmt, inside a
                // transaction; query_string is this statement's text.
                unsafe {
                    recycled = crate::recycle::objects::instead_of_drop(
                        node,
                        &pg::statement_text(query_string, pstmt),
                        token,
                        retention,
                    );
                    if !recycled {
                        crate::recycle::objects::refuse_other_drop_of_rows(node);
                    }
                }
            }
        }
        // Its new or validated domain constraint would read kept rows.
        if tag == pg_sys::NodeTag::T_AlterDomainStmt {
            // SAFETY: an AlterDomainStmt, inside a transaction.
            unsafe { crate::recycle::domains::refuse_check_of_kept(node) };
        }
    }
    let saved = gate::window();
    if approved {
        gate::set_window(Window::Utility);
    }
    if let Some(f) = &finishing {
        f.enter();
    }
    let busy = crate::agent_code::busy(key);
    // Here, unlike on the unguarded path, the next hook runs inside the FFI
    // guard: this frame's Rust state must be cleaned up if it raises.
    let next = next();
    if !recycled {
        // SAFETY: called exactly as PostgreSQL calls the hook, inside the guard.
        unsafe {
            pg_guard_ffi_boundary(|| {
                next(
                    run_pstmt,
                    query_string,
                    run_read_only,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                )
            })
        };
    }
    if approved {
        gate::set_window(saved);
    }
    if let Some(f) = finishing {
        f.done();
    }
    if busy {
        crate::agent_code::idle(key);
    }
    crate::agent_code::unmark(key);
    if let Some(r) = rename {
        crate::renames::after(r);
    }
}

/// Is this a CALL of a procedure Citus distributed (which it may delegate
/// to the node holding its distribution argument's shard)?
///
/// # Safety
/// `node` is a valid utility statement, inside a transaction.
unsafe fn delegated_call(node: *mut pg_sys::Node) -> bool {
    // SAFETY: per this function's contract; a CallStmt's funcexpr is set by
    // parse analysis.
    unsafe {
        if (*node).type_ != pg_sys::NodeTag::T_CallStmt {
            return false;
        }
        let call = &*(node as *const pg_sys::CallStmt);
        !call.funcexpr.is_null() && pg::citus::distributed_function((*call.funcexpr).funcid)
    }
}
