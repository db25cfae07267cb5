//! ExecutorStart / ExecutorEnd: every planned query of an agent (DELETE,
//! UPDATE, MERGE, writable CTEs, wherever they run) is judged before it
//! runs; ExecutorEnd closes the approval window a query opened.

use super::gate::{self, Window};
use crate::classify::plan;
use crate::guard::{self, Outcome};
use crate::unguarded::{standard_ExecutorEnd, standard_ExecutorStart};
use crate::{agent_code, agent_plan, dry_run, pg, row_cap, settings};
use aas_policy::{treatment, Shape, Statement, Treatment};
use pgrx::pg_sys;
use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;

// SAFETY: written once by `install` (from _PG_init), then only read.
static mut PREV_START: pg_sys::ExecutorStart_hook_type = None;
// SAFETY: as PREV_START.
static mut PREV_END: pg_sys::ExecutorEnd_hook_type = None;
// SAFETY: as PREV_START.
static mut PREV_RUN: pg_sys::ExecutorRun_hook_type = None;
// SAFETY: as PREV_START.
static mut PREV_FINISH: pg_sys::ExecutorFinish_hook_type = None;

pub fn install() {
    // SAFETY: hook installation from _PG_init, keeping the previous hooks.
    unsafe {
        PREV_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(start_hook);
        PREV_END = pg_sys::ExecutorEnd_hook;
        pg_sys::ExecutorEnd_hook = Some(end_hook);
        PREV_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(run_hook);
        PREV_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(finish_hook);
    }
}

// SAFETY: the type of ExecutorStart_hook: callers pass PostgreSQL's own arguments.
fn next_start() -> unsafe extern "C-unwind" fn(*mut pg_sys::QueryDesc, i32) {
    // SAFETY: see PREV_START.
    unsafe { PREV_START }.unwrap_or(standard_ExecutorStart)
}

/// Unguarded: for a session known not to be an agent it owns nothing and
/// only hands the query on.
// SAFETY: installed as ExecutorStart_hook; PostgreSQL passes a valid QueryDesc. It owns nothing to clean up.
unsafe extern "C-unwind" fn start_hook(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    // A query ended without ExecutorEnd (an error) may have left its mark
    // at this address.
    agent_code::unmark(query_desc);
    if crate::identity::known_not_agent()
        && agent_code::running().is_none()
        && !dry_run::active()
        // SAFETY: ExecutorStart receives a valid QueryDesc with its plan.
        && unsafe { agent_plan::known_free_of_agents(&*(*query_desc).plannedstmt) }
    {
        // Counted as running: what ExecutorStart evaluates (initial
        // partition pruning) runs inside this query, not beside it.
        gate::executor_entered();
        // SAFETY: called exactly as PostgreSQL calls the hook.
        unsafe { next_start()(query_desc, eflags) };
        gate::executor_left();
        return;
    }
    // SAFETY: the same arguments, into the guarded path.
    unsafe { start_checked(query_desc, eflags) }
}

/// What the executor knows of a planned query before classifying it: from
/// its ModifyTable nodes alone, no catalog access.
///
/// # Safety
/// `ps` is a valid PlannedStmt.
pub(super) unsafe fn shape(ps: &pg_sys::PlannedStmt) -> Shape {
    // SAFETY: per this function's contract.
    if unsafe { plan::is_read_only(ps) } {
        Shape::READ
    } else {
        Shape {
            writes: true,
            // SAFETY: per this function's contract.
            classes: unsafe { plan::classes(ps) },
            other_database: false,
            // SAFETY: per this function's contract; inside a transaction.
            touches_guard: unsafe { plan::writes_guard_state(ps) },
        }
    }
}

#[pgrx::pg_guard]
// SAFETY: called from `start_hook` with PostgreSQL's arguments; #[pg_guard] catches panics.
unsafe extern "C-unwind" fn start_checked(query_desc: *mut pg_sys::QueryDesc, eflags: i32) {
    let mut approved = None;
    let explain_only = eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0;
    // SAFETY: ExecutorStart receives a valid QueryDesc with its plan.
    let ps = unsafe { &*(*query_desc).plannedstmt };
    // An approved query's foreign-key action, let through unjudged.
    // SAFETY: ExecutorStart receives a valid QueryDesc with its plan.
    let fk_action = unsafe { gate::foreign_key_action_in_scope(ps) };
    // Rows a capped statement, a dry run or a review's statement sets off
    // are counted with its own: their tables are taken in before this
    // query writes them.
    if !explain_only && !crate::privileged::active() {
        if row_cap::active() {
            // SAFETY: query_desc is valid with its plan, inside a transaction.
            unsafe { row_cap::observe(query_desc, fk_action) };
        }
        if dry_run::active() {
            // SAFETY: query_desc is valid with its plan, inside a transaction.
            unsafe { dry_run::observe(query_desc, fk_action) };
        }
        if crate::review::counting() {
            // SAFETY: query_desc is valid with its plan, inside a transaction.
            unsafe { crate::review::observe(query_desc, fk_action) };
        }
    }
    // A recycle bin restore's own query, run as the table's owner, is the
    // restore's (what it sets off is judged as ever).
    // SAFETY: the query being started, with its plan.
    let agent =
        gate::agent_statement() && !unsafe { crate::recycle::rows::is_own_query(query_desc) };
    // Another role's query whose write an agent's rule or view decides is
    // that agent's while it is judged; one that runs an agent's view, rule
    // or table code runs it as the agent's while it runs.
    let (rule_or_view, code) = if agent || explain_only {
        (None, None)
    } else {
        // SAFETY: ps is valid, inside a transaction.
        unsafe { (agent_plan::judged_as(ps), agent_plan::code_of(ps)) }
    };
    if !fk_action && (agent || rule_or_view.is_some()) {
        let _judging = rule_or_view.map(agent_code::Judging::as_agent);
        // SAFETY: ps is valid.
        let mut shape = unsafe { shape(ps) };
        let read = shape == Shape::READ;
        // Parts of it run on other nodes as the current role: decided
        // while that role is not the agent's own.
        // SAFETY: ps is valid.
        let reaches = gate::acting_as_another_role() && unsafe { plan::distributed(ps) };
        shape.touches_guard |= reaches;
        if !explain_only && treatment(&settings::Live, shape) != Treatment::Pass {
            let mut stmt = if read {
                Statement::read()
            } else {
                // SAFETY: ps is valid.
                unsafe { plan::classify(ps) }
            };
            stmt.reaches_other_nodes = reaches;
            // SAFETY: sourceText is the query's text.
            let text = unsafe { pg::statement_text((*query_desc).sourceText, ps) };
            // A review's statement opens the window too (its foreign-key
            // actions are its own), with nothing to cap.
            let terms = match guard::judge(&stmt, &text, origin(query_desc, ps)) {
                Outcome::Approved { token, limits } => Some(Some((token, limits))),
                Outcome::Reviewed | Outcome::FromClusterNode => Some(None),
                Outcome::Allow => None,
            };
            if let Some(terms) = terms {
                // The window's scope: the tables the query writes (leaf
                // partitions too) and the ones it names.
                // SAFETY: ps is valid.
                let mut scope = unsafe { plan::written_relations(ps) };
                for op in &stmt.ops {
                    let oid = pg_sys::Oid::from(op.object.objid);
                    if op.object.classid == pg_sys::RelationRelationId.to_u32()
                        && !scope.contains(&oid)
                    {
                        scope.push(oid);
                    }
                }
                approved = Some((scope, terms, stmt, text));
            }
        }
    }
    if let Some(a) = code {
        agent_code::mark(query_desc, a);
    }
    // A review records each writing statement of the agent with the rows
    // it changes.
    if agent && !explain_only && crate::review::active() && !crate::review::counting() {
        // SAFETY: ps is valid.
        if unsafe { shape(ps) }.writes {
            // SAFETY: sourceText is the query's text; the query is starting.
            unsafe {
                let text = pg::statement_text((*query_desc).sourceText, ps);
                crate::review::start(query_desc, text);
            }
        }
    }
    // Expressions are set up while the executor starts: the agent's code
    // counts as running then too.
    let busy = agent_code::busy(query_desc);
    let next = next_start();
    gate::executor_entered();
    // SAFETY: called exactly as PostgreSQL calls the hook, inside the guard.
    unsafe { pg_guard_ffi_boundary(|| next(query_desc, eflags)) };
    gate::executor_left();
    if busy {
        agent_code::idle(query_desc);
    }
    // An agent's query that deletes rows keeps them (when the bin is on),
    // and so does another role's whose write an agent's rule or view
    // decides.
    if (agent || rule_or_view.is_some())
        && !explain_only
        && !crate::privileged::active()
        && !dry_run::active()
    {
        let token = match &approved {
            Some((_, Some((token, _)), _, _)) => Some(*token),
            _ => None,
        };
        // SAFETY: the agent's query just started, inside a transaction.
        unsafe { crate::recycle::old_rows::started(query_desc, token) };
    }
    if let Some((scope, terms, stmt, text)) = approved {
        gate::open_query_window(query_desc, scope);
        // SAFETY: the query just started, with its plan.
        unsafe {
            if let Some((token, limits)) = terms.filter(|(_, l)| l.any()) {
                if !dry_run::is_dry_run_query(query_desc) {
                    row_cap::open(query_desc, token, limits, &stmt, &text);
                }
            }
        }
    }
    // The dry run's own statement (approved with its stand-in token, or a
    // non-agent's, which nothing judges) is counted from here.
    // SAFETY: the query just started, with its plan.
    if dry_run::active() && unsafe { dry_run::is_dry_run_query(query_desc) } {
        unsafe { dry_run::started(query_desc) };
    }
}

/// Unguarded for everyone: while a query that runs an agent's code runs,
/// that code counts as running (a cursor waiting between fetches does not).
// SAFETY: installed as ExecutorRun_hook; it touches two vectors and hands on.
#[cfg(not(feature = "pg18"))]
unsafe extern "C-unwind" fn run_hook(
    query_desc: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    let busy = agent_code::busy(query_desc);
    gate::executor_entered();
    // SAFETY: see PREV_START; called exactly as PostgreSQL calls the hook.
    unsafe {
        PREV_RUN.unwrap_or(crate::unguarded::standard_ExecutorRun)(
            query_desc,
            direction,
            count,
            execute_once,
        )
    };
    gate::executor_left();
    if busy {
        agent_code::idle(query_desc);
    }
}

/// As above. Where the server's API differs: PostgreSQL 18 dropped
/// ExecutorRun's `execute_once` argument.
// SAFETY: installed as ExecutorRun_hook; it touches two vectors and hands on.
#[cfg(feature = "pg18")]
unsafe extern "C-unwind" fn run_hook(
    query_desc: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
) {
    let busy = agent_code::busy(query_desc);
    gate::executor_entered();
    // SAFETY: see PREV_START; called exactly as PostgreSQL calls the hook.
    unsafe {
        PREV_RUN.unwrap_or(crate::unguarded::standard_ExecutorRun)(query_desc, direction, count)
    };
    gate::executor_left();
    if busy {
        agent_code::idle(query_desc);
    }
}

/// Unguarded for everyone, like `run_hook`: AFTER triggers fire here.
// SAFETY: installed as ExecutorFinish_hook; it touches two vectors and hands on.
unsafe extern "C-unwind" fn finish_hook(query_desc: *mut pg_sys::QueryDesc) {
    let busy = agent_code::busy(query_desc);
    gate::executor_entered();
    gate::finishing(query_desc);
    // SAFETY: see PREV_START; called exactly as PostgreSQL calls the hook.
    unsafe { PREV_FINISH.unwrap_or(crate::unguarded::standard_ExecutorFinish)(query_desc) };
    gate::executor_left();
    if busy {
        agent_code::idle(query_desc);
    }
    // Its foreign-key actions and AFTER triggers have run: a capped
    // query's count is final.
    if row_cap::active() || dry_run::active() || crate::review::counting() {
        // SAFETY: the query that just finished.
        unsafe { cap_checked(query_desc) };
    }
    // Everything it deleted, cascades too, is in: the rows kept become an
    // entry (or the statement is refused past the bin's budget).
    if crate::recycle::old_rows::owns(query_desc) {
        kept_checked();
    }
}

/// Records the rows a finished query deleted; may raise the budget's
/// refusal.
#[pgrx::pg_guard]
extern "C-unwind" fn kept_checked() {
    crate::recycle::old_rows::finished();
}

/// Holds a finished capped query to its cap; may raise the refusal.
#[pgrx::pg_guard]
// SAFETY: called from `finish_hook` with PostgreSQL's QueryDesc; #[pg_guard] turns the refusal into an ERROR.
unsafe extern "C-unwind" fn cap_checked(query_desc: *mut pg_sys::QueryDesc) {
    // SAFETY: the query just finished; its EState is live until ExecutorEnd.
    unsafe {
        dry_run::finished(query_desc);
        crate::review::finished(query_desc);
        row_cap::finished(query_desc);
    }
}

/// Unguarded for everyone: it only closes the approval window and hands on.
// SAFETY: installed as ExecutorEnd_hook; it compares a pointer, writes a flag and hands on.
unsafe extern "C-unwind" fn end_hook(query_desc: *mut pg_sys::QueryDesc) {
    if gate::window() == Window::Query(query_desc) {
        gate::close_window();
    }
    agent_code::unmark(query_desc);
    // A query ended without ExecutorFinish: what it kept is recorded all
    // the same.
    if crate::recycle::old_rows::owns(query_desc) {
        kept_checked();
    }
    // SAFETY: see PREV_START; called exactly as PostgreSQL calls the hook.
    unsafe { PREV_END.unwrap_or(standard_ExecutorEnd)(query_desc) }
}

/// Where the query comes from, for judging it: as [`sent_by_client`], but
/// on another node's connection only the statement that node sent, as it
/// sent it, is the one that node judged. Not a query that rules made or
/// rewrote (an agent's rule on a shard could turn Citus's DELETE there into
/// one elsewhere), and not one run through a portal of its own (a PL/pgSQL
/// `FOR r IN DELETE ... RETURNING` loop's cursor, or SQL `EXECUTE` of a
/// prepared statement from a function or trigger): such a portal carries
/// its query's own text, as the client's does.
fn origin(query_desc: *mut pg_sys::QueryDesc, ps: &pg_sys::PlannedStmt) -> guard::Origin {
    match sent_by_client(query_desc) {
        guard::Origin::Client
            if crate::port::from_cluster_node()
                // SAFETY: ps is the query's valid plan, inside a transaction.
                && (!protocol_portal() || unsafe { plan::rewritten(ps) }) =>
        {
            guard::Origin::Nested
        }
        o => o,
    }
}

/// Is the active portal the unnamed one, which only PostgreSQL's protocol
/// code makes (for a simple query, and for an unnamed Bind, as libpq and
/// Citus send)? A cursor's portal (SQL, PL/pgSQL or SPI) and SQL
/// `EXECUTE`'s are named: `CreateNewPortal` picks "<unnamed portal N>"
/// for one asked for with no name, and SQL may not name a cursor "".
fn protocol_portal() -> bool {
    // SAFETY: ActivePortal is NULL or the running portal, whose name is a
    // valid C string.
    unsafe {
        let portal = pg_sys::ActivePortal;
        !portal.is_null() && *(*portal).name == 0
    }
}

/// Did the client send this query (the active portal runs it), rather than
/// a function or a rule inside another statement?
fn sent_by_client(query_desc: *mut pg_sys::QueryDesc) -> guard::Origin {
    // SAFETY: query_desc is the query being started.
    if dry_run::active() && unsafe { dry_run::is_dry_run_query(query_desc) } {
        return guard::Origin::DryRun;
    }
    // SAFETY: ActivePortal is NULL or the running portal; query_desc is the
    // query being started.
    let same = unsafe {
        let portal = pg_sys::ActivePortal;
        !portal.is_null() && (*portal).sourceText == (*query_desc).sourceText
    };
    if same {
        guard::Origin::Client
    } else {
        guard::Origin::Nested
    }
}
