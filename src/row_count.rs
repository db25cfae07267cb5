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
//!
//! A foreign table has no counters: its rows count as the query that
//! writes it reports them (es_processed), which only a query whose one
//! write is its own target does. A foreign table written any other way (a
//! WITH clause's write) leaves the tally uncountable. So does a table
//! another extension's node writes on other servers (Citus's distributed
//! table, whose rows are the workers' shards'). Its report counts its own
//! rows only: what a foreign key referencing it cascades to (ON DELETE
//! CASCADE ..., run on the workers) is counted nowhere, so such a write
//! leaves the tally uncountable too.

use aas_policy::row_cap::Changes;
use pgrx::pg_sys;
use serde_json::{json, Value};

extern "C-unwind" {
    // utils/fmgrprotos.h, as PostgreSQL's C functions (pgrx binds them
    // wrapped, and a function pointer must be the C one).
    fn pg_stat_get_xact_tuples_inserted(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
    fn pg_stat_get_xact_tuples_updated(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
    fn pg_stat_get_xact_tuples_deleted(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
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
    /// How the preview names it, for a statement whose command is
    /// `statement` (a foreign key's UPDATE comes from a DELETE's SET NULL
    /// or SET DEFAULT, or from an UPDATE's actions; a MERGE may do both).
    pub fn text(self, statement: pg_sys::CmdType::Type) -> &'static str {
        use pg_sys::CmdType::{CMD_DELETE, CMD_MERGE};
        match self {
            Via::Statement => "statement",
            Via::ForeignKey(CMD_DELETE) => "ON DELETE CASCADE",
            Via::ForeignKey(_) if statement == CMD_DELETE => "ON DELETE SET NULL or SET DEFAULT",
            Via::ForeignKey(_) if statement == CMD_MERGE => {
                "ON DELETE SET NULL or SET DEFAULT, or ON UPDATE CASCADE, SET NULL or SET DEFAULT"
            }
            Via::ForeignKey(_) => "ON UPDATE CASCADE, SET NULL or SET DEFAULT",
            Via::Trigger => "trigger or rule",
        }
    }
}

/// How a query starting while rows are counted came to run: a foreign-key
/// action of PostgreSQL's that the approval window let through (`fk`; its
/// command `op`), or else a trigger, rule or function.
pub fn via(op: pg_sys::CmdType::Type, fk: bool) -> Via {
    if fk {
        Via::ForeignKey(op)
    } else {
        Via::Trigger
    }
}

/// One table's entry in a preview or a review's statement: the table, its
/// oid, the rows it changed in all and of each kind (a kind with none left
/// out), and how it was reached.
pub fn entry(relid: pg_sys::Oid, n: Changes, via: Via, statement: pg_sys::CmdType::Type) -> Value {
    let mut e = json!({
        "table": crate::pg::relation_display(relid),
        "relid": relid.to_u32(),
        "rows": n.total(),
        "via": via.text(statement),
    });
    for (kind, k) in n.kinds() {
        if k != 0 {
            e[kind] = json!(k);
        }
    }
    e
}

/// The rows a query that just finished reported changing (es_processed).
///
/// # Safety
/// `qd` is the QueryDesc of a query that just finished (its EState live).
pub unsafe fn reported(qd: *mut pg_sys::QueryDesc) -> i64 {
    // SAFETY: per this function's contract.
    unsafe {
        let es = (*qd).estate;
        if es.is_null() {
            0
        } else {
            (*es).es_processed as i64
        }
    }
}

/// The rows changed in each table since the tally first saw it.
#[derive(Default)]
pub struct Tally {
    /// (table, its counters when first seen, rows counted by hand (a
    /// foreign table's), how it came to be written)
    tables: Vec<(pg_sys::Oid, Changes, Changes, Via)>,
    /// Running queries that write a foreign table and report its rows:
    /// (the query, the table), counted when the query finishes.
    reporting: Vec<(*mut pg_sys::QueryDesc, pg_sys::Oid)>,
    /// A foreign table written where its rows go unreported.
    uncountable: Option<pg_sys::Oid>,
    /// A table whose foreign key carries a distributed table's deletes or
    /// updates to its own rows, on the servers that hold them: no report
    /// counts those.
    cascades: Option<pg_sys::Oid>,
}

/// The table's transaction counters: rows inserted, updated and deleted in
/// this transaction so far (subtransactions, live or rolled back, included).
fn changes(relid: pg_sys::Oid) -> Changes {
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
    Changes {
        inserted: read(pg_stat_get_xact_tuples_inserted),
        updated: read(pg_stat_get_xact_tuples_updated),
        deleted: read(pg_stat_get_xact_tuples_deleted),
    }
}

fn minus(a: Changes, b: Changes) -> Changes {
    Changes {
        inserted: a.inserted - b.inserted,
        updated: a.updated - b.updated,
        deleted: a.deleted - b.deleted,
    }
}

/// Can rows be counted at all? `track_counts` off stops the counters.
pub fn available() -> bool {
    // SAFETY: reads a setting's variable.
    unsafe { pg_sys::pgstat_track_counts }
}

impl Tally {
    /// Takes in the tables the planned query `qd` writes (with every
    /// partition of a partitioned one: rows are routed to partitions the
    /// plan does not name). Call before the query starts.
    ///
    /// # Safety
    /// `qd` is a valid QueryDesc with its plan, inside a transaction.
    pub unsafe fn track(&mut self, qd: *mut pg_sys::QueryDesc, via: Via) {
        // SAFETY: per this function's contract.
        let ps = unsafe { &*(*qd).plannedstmt };
        // A rule's query runs with the statement (and its text) but is not
        // it: it does not set the command tag.
        let via = if via == Via::Statement && !ps.canSetTag {
            Via::Trigger
        } else {
            via
        };
        // SAFETY: per this function's contract.
        let (written, roots, reports, elsewhere, elsewhere_reported) = unsafe {
            (
                crate::classify::plan::written_relations(ps),
                crate::classify::plan::written_roots(ps),
                crate::classify::plan::reports_its_writes(ps),
                crate::classify::plan::unplanned_written(ps),
                crate::classify::plan::reports_unplanned(ps),
            )
        };
        // Rows another extension's node writes on other servers (Citus's
        // shards) change no counter here: the query's report counts them.
        let (delete, update) = match ps.commandType {
            pg_sys::CmdType::CMD_DELETE => (true, false),
            pg_sys::CmdType::CMD_UPDATE => (false, true),
            pg_sys::CmdType::CMD_MERGE => (true, true),
            _ => (false, false),
        };
        for relid in elsewhere {
            self.add(relid, via);
            if self.cascades.is_none() && (delete || update) {
                // Its partitions' foreign keys too: a key may reference one.
                // SAFETY: per this function's contract; a catalog lookup
                // (NoLock: the query holds its locks), an oid list.
                let family = unsafe { crate::pg::family(relid) };
                // SAFETY: per this function's contract.
                let referencing =
                    unsafe { crate::pg::cascading_referencers(&family, delete, update) };
                self.cascades = referencing.first().copied();
            }
            if elsewhere_reported {
                self.reporting.push((qd, relid));
            } else {
                self.uncountable.get_or_insert(relid);
            }
        }
        for relid in written.into_iter().chain(roots) {
            self.add(relid, via);
            // SAFETY: a catalog lookup; NoLock, as only counters are read.
            if unsafe { pg_sys::get_rel_relkind(relid) } == pg_sys::RELKIND_FOREIGN_TABLE as i8 {
                if reports {
                    self.reporting.push((qd, relid));
                } else {
                    self.uncountable.get_or_insert(relid);
                }
            }
            // SAFETY: a catalog lookup; NoLock, as only counters are read.
            if unsafe { pg_sys::get_rel_relkind(relid) } == pg_sys::RELKIND_PARTITIONED_TABLE as i8
            {
                // SAFETY: as above; the list is of oids.
                for part in unsafe { crate::pg::family(relid) } {
                    self.add(part, via);
                }
            }
        }
    }

    fn add(&mut self, relid: pg_sys::Oid, via: Via) {
        if !self.tables.iter().any(|(t, ..)| *t == relid) {
            self.tables
                .push((relid, changes(relid), Changes::default(), via));
        }
    }

    /// The query `qd` finished having reported `processed` rows: a foreign
    /// table it writes counts them, as its kind of change. (A query that
    /// errors out never finishes: its rows roll back with it.)
    ///
    /// # Safety
    /// `qd` is the QueryDesc of a query that just finished.
    pub unsafe fn finished(&mut self, qd: *mut pg_sys::QueryDesc, processed: i64) {
        if self.reporting.is_empty() {
            return;
        }
        // SAFETY: per this function's contract.
        let op = unsafe { (*qd).operation };
        let mut i = 0;
        while i < self.reporting.len() {
            if self.reporting[i].0 != qd {
                i += 1;
                continue;
            }
            let (_, relid) = self.reporting.swap_remove(i);
            if let Some((.., by_hand, _)) = self.tables.iter_mut().find(|(t, ..)| *t == relid) {
                match op {
                    pg_sys::CmdType::CMD_DELETE => by_hand.deleted += processed,
                    pg_sys::CmdType::CMD_INSERT => by_hand.inserted += processed,
                    _ => by_hand.updated += processed,
                }
            }
        }
    }

    /// A foreign table written where its rows cannot be counted, if any.
    pub fn uncountable(&self) -> Option<pg_sys::Oid> {
        self.uncountable
    }

    /// A table a foreign key changes on other servers, with no count, when
    /// a distributed table it references is written (Citus runs the
    /// key's CASCADE, SET NULL or SET DEFAULT on the workers), if any.
    pub fn cascades_elsewhere(&self) -> Option<pg_sys::Oid> {
        self.cascades
    }

    /// Rows changed in each table seen, in the order seen: the change of its
    /// counters (negative when a counter went down: a table created inside
    /// a subtransaction that rolled back loses its counts), and what was
    /// counted by hand.
    pub fn per_table(&self) -> Vec<(pg_sys::Oid, Changes, Via)> {
        self.tables
            .iter()
            .map(|(t, base, by_hand, via)| {
                let c = minus(changes(*t), *base);
                (
                    *t,
                    Changes {
                        inserted: c.inserted + by_hand.inserted,
                        updated: c.updated + by_hand.updated,
                        deleted: c.deleted + by_hand.deleted,
                    },
                    *via,
                )
            })
            .collect()
    }
}
