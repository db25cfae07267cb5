//! Counting the rows a statement changes, in every table it reaches: its
//! own, its foreign-key actions' and its triggers'. Both the preview (a
//! dry run) and a token's row cap count this way.
//!
//! The counts are PostgreSQL's own per-table transaction counters (what
//! `pg_stat_get_xact_tuples_inserted`, `_updated` and `_deleted` read): a
//! row inserted, updated or deleted counts once, a row moved to another
//! partition counts as deleted and inserted. They keep counting in a
//! subtransaction that rolls back, so a dry run is counted after its
//! rollback too. A tally takes each table's counter when the table is first
//! seen written, before the query that writes it starts, and counts from
//! there; the executor hooks show it every query that runs.

use pgrx::pg_sys;

extern "C-unwind" {
    // catalog/pg_inherits.h (not in pgrx's bindings); the same in 15 to 18.
    // utils/fmgrprotos.h, as PostgreSQL's C functions (pgrx binds them
    // wrapped, and a function pointer must be the C one).
    fn pg_stat_get_xact_tuples_inserted(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
    fn pg_stat_get_xact_tuples_updated(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
    fn pg_stat_get_xact_tuples_deleted(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
    fn find_all_inheritors(
        parent: pg_sys::Oid,
        lockmode: pg_sys::LOCKMODE,
        numparents: *mut *mut pg_sys::List,
    ) -> *mut pg_sys::List;
}

/// How a table came to be written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    /// By the counted statement itself.
    Statement,
    /// By a foreign-key action PostgreSQL ran for it (a DELETE: ON DELETE
    /// CASCADE; an UPDATE: ON ... SET NULL, SET DEFAULT or ON UPDATE CASCADE).
    ForeignKey(pg_sys::CmdType::Type),
    /// By a trigger, rule or function it set off.
    Trigger,
}

impl Via {
    pub fn text(self, statement_is_delete: bool) -> &'static str {
        match self {
            Via::Statement => "statement",
            Via::ForeignKey(pg_sys::CmdType::CMD_DELETE) => "ON DELETE CASCADE",
            Via::ForeignKey(_) if statement_is_delete => "ON DELETE SET NULL or SET DEFAULT",
            Via::ForeignKey(_) => "ON UPDATE CASCADE, SET NULL or SET DEFAULT",
            Via::Trigger => "trigger or rule",
        }
    }
}

/// The rows changed in each table since the tally first saw it.
#[derive(Default)]
pub struct Tally {
    /// (table, its counter when first seen, how it came to be written)
    tables: Vec<(pg_sys::Oid, i64, Via)>,
}

/// The table's transaction counter: rows inserted, updated and deleted in
/// this transaction so far (subtransactions, live or rolled back, included).
fn changes(relid: pg_sys::Oid) -> i64 {
    // SAFETY: (the type) a built-in's C entry point, called below through
    // DirectFunctionCall1Coll.
    let read = |f: unsafe extern "C-unwind" fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum| {
        // SAFETY: a built-in function of one oid argument, which reads this
        // backend's pending statistics and never raises.
        let d = unsafe {
            pg_sys::DirectFunctionCall1Coll(Some(f), pg_sys::InvalidOid, pg_sys::Datum::from(relid))
        };
        d.value() as i64
    };
    read(pg_stat_get_xact_tuples_inserted)
        + read(pg_stat_get_xact_tuples_updated)
        + read(pg_stat_get_xact_tuples_deleted)
}

/// Can rows be counted at all? `track_counts` off stops the counters.
pub fn available() -> bool {
    // SAFETY: reads a setting's variable.
    unsafe { pg_sys::pgstat_track_counts }
}

impl Tally {
    /// Takes in the tables a planned query writes (with every partition of
    /// a partitioned one: rows are routed to partitions the plan does not
    /// name). Call before the query starts.
    ///
    /// # Safety
    /// `ps` is a valid PlannedStmt, inside a transaction.
    pub unsafe fn track(&mut self, ps: &pg_sys::PlannedStmt, via: Via) {
        // SAFETY: per this function's contract.
        let (written, roots) = unsafe {
            (
                crate::classify::plan::written_relations(ps),
                crate::classify::plan::written_roots(ps),
            )
        };
        for relid in written.into_iter().chain(roots) {
            self.add(relid, via);
            // SAFETY: a catalog lookup; NoLock, as only counters are read.
            if unsafe { pg_sys::get_rel_relkind(relid) } == pg_sys::RELKIND_PARTITIONED_TABLE as i8
            {
                // SAFETY: as above; the list is of oids.
                let all = unsafe {
                    find_all_inheritors(relid, pg_sys::NoLock as i32, std::ptr::null_mut())
                };
                // SAFETY: an oid list (or NIL).
                for part in unsafe { crate::pg::oid_list(all) } {
                    self.add(part, via);
                }
            }
        }
    }

    fn add(&mut self, relid: pg_sys::Oid, via: Via) {
        if !self.tables.iter().any(|(t, _, _)| *t == relid) {
            self.tables.push((relid, changes(relid), via));
        }
    }

    /// Rows changed in each table seen, in the order seen: the change of its
    /// counter, which is negative when the counter went down (a table
    /// created inside a subtransaction that rolled back loses its counts).
    pub fn per_table(&self) -> Vec<(pg_sys::Oid, i64, Via)> {
        self.tables
            .iter()
            .map(|(t, base, via)| (*t, changes(*t) - base, *via))
            .collect()
    }
}
