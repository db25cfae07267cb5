//! Planned queries -> operations.
//!
//! Every row-changing query, wherever it runs (top level, writable CTE, MERGE,
//! SQL or PL/pgSQL function, trigger, rule action, prepared statement), reaches
//! the executor as a PlannedStmt whose ModifyTable nodes say what it changes.
//! A ModifyTable node is always the top node of its query's plan: the main plan
//! or one of `subplans` (writable CTEs), so no deep tree walk is needed.
//! A plan whose writes another extension's node carries out (Citus) is judged
//! from its permissions instead (`aas_policy::unplanned_writes`).

use super::relation_ref;
use crate::pg::{list_ints, list_ptrs, node_tag};
use aas_policy::unplanned_writes::{self, Entry};
use aas_policy::{OpClass, OpSet, Operation, SideDoor, Statement};
use pg_sys::CmdType::{CMD_DELETE, CMD_INSERT, CMD_MERGE, CMD_SELECT, CMD_UPDATE};
use pgrx::pg_sys;

/// True when the query can change nothing: a SELECT with no writable WITH
/// clause that asks no permission to delete or update (Citus plans a
/// writable WITH clause it sends whole to one shard as a SELECT here, whose
/// range table still asks for the DELETE). Checked before anything else:
/// a read costs a look at its range table's permissions.
///
/// # Safety
/// `stmt` is a valid planned statement.
#[inline]
pub unsafe fn is_read_only(stmt: &pg_sys::PlannedStmt) -> bool {
    stmt.commandType == CMD_SELECT
        && !stmt.hasModifyingCTE
        && permission_writes(stmt, &[]).is_empty()
}

/// The ModifyTable nodes of a planned query: the top of the main plan and of
/// each subplan (writable CTEs).
///
/// # Safety
/// `stmt` is a valid planned statement.
unsafe fn modify_tables(stmt: &pg_sys::PlannedStmt) -> Vec<&pg_sys::ModifyTable> {
    std::iter::once(stmt.planTree as *mut std::ffi::c_void)
        .chain(list_ptrs(stmt.subplans))
        .filter(|p| !p.is_null() && node_tag(*p) == pg_sys::NodeTag::T_ModifyTable)
        .map(|p| &*(p as *const pg_sys::ModifyTable))
        .collect()
}

/// The deletes and updates a planned query asks permission for where no
/// ModifyTable node names the table: another extension's node writes them
/// (Citus: a distributed DELETE, UPDATE or MERGE has no ModifyTable node,
/// and a writable WITH clause it sends whole to a shard can sit under a
/// SELECT, or under an INSERT into a local table). A plan of PostgreSQL's
/// own (ModifyTable nodes, no Citus scan) says what it writes in its nodes:
/// a rule action's plan also carries the permissions of the statement the
/// rule replaced.
///
/// # Safety
/// `stmt` is a valid planned statement.
unsafe fn unplanned_writes(stmt: &pg_sys::PlannedStmt) -> Vec<(OpClass, pg_sys::Oid)> {
    let nodes = modify_tables(stmt);
    if !nodes.is_empty() && !distributed(stmt) {
        return Vec::new();
    }
    // The tables the nodes name (partitions' roots too) are theirs.
    let named: Vec<u32> = nodes
        .iter()
        .flat_map(|mt| {
            list_ints(mt.resultRelations)
                .into_iter()
                .map(|r| r as u32)
                .chain((mt.rootRelation > 0).then_some(mt.rootRelation))
                .chain((mt.nominalRelation > 0).then_some(mt.nominalRelation))
        })
        .collect();
    permission_writes(stmt, &named)
}

/// What the permissions of a plan's relations (other than the range-table
/// indexes `named`) say is deleted or updated: DELETE, or UPDATE not taken
/// for a row lock (SELECT ... FOR UPDATE); views are written through their
/// tables.
///
/// # Safety
/// `stmt` is a valid planned statement.
unsafe fn permission_writes(
    stmt: &pg_sys::PlannedStmt,
    named: &[u32],
) -> Vec<(OpClass, pg_sys::Oid)> {
    let asks = pg_sys::ACL_DELETE as pg_sys::AclMode | pg_sys::ACL_UPDATE as pg_sys::AclMode;
    let mut entries = crate::range_table::relations(stmt)
        .filter(|r| r.required & asks != 0 && !named.contains(&r.rti))
        .peekable();
    if entries.peek().is_none() {
        return Vec::new();
    }
    let marked: Vec<u32> = list_ptrs(stmt.rowMarks)
        .into_iter()
        .map(|m| (*(m as *const pg_sys::PlanRowMark)).rti)
        .collect();
    let entries: Vec<Entry> = entries
        .map(|r| Entry {
            relid: r.relid().to_u32(),
            delete: r.required & pg_sys::ACL_DELETE as pg_sys::AclMode != 0,
            update: r.required & pg_sys::ACL_UPDATE as pg_sys::AclMode != 0,
            is_view: r.is_view(),
            // A row lock (FOR UPDATE / SHARE) asks for UPDATE permission
            // and takes RowShareLock, where a write takes RowExclusiveLock:
            // Citus's router plan keeps the entries but not the row marks.
            row_marked: marked.contains(&r.rti) || r.rte.rellockmode == pg_sys::RowShareLock as i32,
        })
        .collect();
    unplanned_writes::inferred(&entries)
        .into_iter()
        .map(|(c, relid)| (c, pg_sys::Oid::from(relid)))
        .collect()
}

/// Does another node of a distributed cluster carry out part of this plan:
/// a custom scan of Citus's ("Citus Adaptive", "Citus MERGE INTO ...")
/// anywhere in it? Citus runs those parts on the workers as the current
/// role.
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn distributed(stmt: &pg_sys::PlannedStmt) -> bool {
    std::iter::once(stmt.planTree as *mut std::ffi::c_void)
        .chain(list_ptrs(stmt.subplans))
        .any(|p| has_citus_scan(p as *const pg_sys::Plan))
}

/// # Safety
/// `p` is NULL or a valid plan node.
unsafe fn has_citus_scan(p: *const pg_sys::Plan) -> bool {
    use pg_sys::NodeTag::*;
    if p.is_null() {
        return false;
    }
    let any = |list: *mut pg_sys::List| {
        list_ptrs(list)
            .into_iter()
            .any(|c| has_citus_scan(c as *const pg_sys::Plan))
    };
    let below = match node_tag(p as *const std::ffi::c_void) {
        T_CustomScan => {
            let cs = &*(p as *const pg_sys::CustomScan);
            if !cs.methods.is_null()
                && crate::pg::cstr((*cs.methods).CustomName).starts_with("Citus")
            {
                return true;
            }
            any(cs.custom_plans)
        }
        T_Append => any((*(p as *const pg_sys::Append)).appendplans),
        T_MergeAppend => any((*(p as *const pg_sys::MergeAppend)).mergeplans),
        T_BitmapAnd => any((*(p as *const pg_sys::BitmapAnd)).bitmapplans),
        T_BitmapOr => any((*(p as *const pg_sys::BitmapOr)).bitmapplans),
        T_SubqueryScan => has_citus_scan((*(p as *const pg_sys::SubqueryScan)).subplan),
        _ => false,
    };
    below || has_citus_scan((*p).lefttree) || has_citus_scan((*p).righttree)
}

/// Did rules make this query, or make it what it is: a rule's extra action
/// (it sets no command tag), or a query over a view or a table with rules
/// (an INSTEAD rule's or an updatable view's rewrite keeps the relation it
/// replaced in the range table)? Such a query is not the one its text says.
///
/// # Safety
/// `stmt` is a valid planned statement, inside a transaction.
pub unsafe fn rewritten(stmt: &pg_sys::PlannedStmt) -> bool {
    !stmt.canSetTag
        || crate::range_table::relations(stmt)
            .any(|r| r.is_view() || crate::pg::has_rules(r.relid()))
}

/// The operation classes a planned query performs, from its ModifyTable nodes
/// and its permissions alone (no catalog access). Lets the hook skip
/// classification when nothing the query does is protected.
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn classes(stmt: &pg_sys::PlannedStmt) -> OpSet {
    let mut set = OpSet::empty();
    for mt in modify_tables(stmt) {
        match mt.operation {
            CMD_DELETE => set.insert(OpClass::Delete),
            CMD_UPDATE => set.insert(OpClass::Update),
            CMD_INSERT if mt.onConflictAction == pg_sys::OnConflictAction::ONCONFLICT_UPDATE => {
                set.insert(OpClass::Update)
            }
            CMD_MERGE => {
                set.insert(OpClass::Delete);
                set.insert(OpClass::Update);
            }
            _ => {}
        }
    }
    for (class, _) in unplanned_writes(stmt) {
        set.insert(class);
    }
    set
}

/// Does a write to these relations touch what the guard decides from: a
/// system catalog, or one of the extension's tables outside its own
/// functions?
///
/// # Safety
/// Inside a transaction (catalog lookups).
unsafe fn guard_state(rels: &[pg_sys::Oid]) -> bool {
    // An agent's own session holds no privilege to write them: PostgreSQL
    // refuses. Its code in a superuser's session would hold them.
    if crate::identity::session_user_is_agent() {
        return false;
    }
    rels.iter().any(|r| {
        pg_sys::get_rel_namespace(*r).to_u32() == pg_sys::PG_CATALOG_NAMESPACE
            || (super::is_own_relation(*r) && !crate::agent_code::in_trusted_call())
    })
}

/// Does a planned query write what the guard decides from? For the shape,
/// before classifying.
///
/// # Safety
/// `stmt` is a valid planned statement, inside a transaction.
pub unsafe fn writes_guard_state(stmt: &pg_sys::PlannedStmt) -> bool {
    modify_tables(stmt).into_iter().any(|mt| {
        let rels: Vec<pg_sys::Oid> = list_ints(mt.resultRelations)
            .into_iter()
            .map(|rti| {
                (*(list_ptrs(stmt.rtable)[(rti - 1) as usize] as *const pg_sys::RangeTblEntry))
                    .relid
            })
            .collect();
        guard_state(&rels)
    })
}

/// The operations a planned query performs.
///
/// # Safety
/// `stmt` is a valid planned statement, inside a transaction (catalog lookups).
pub unsafe fn classify(stmt: &pg_sys::PlannedStmt) -> Statement {
    let mut out = Statement {
        verb: "INSERT",
        ..Default::default()
    };
    for mt in modify_tables(stmt) {
        let rels: Vec<pg_sys::Oid> = list_ints(mt.resultRelations)
            .into_iter()
            .map(|rti| {
                let rte =
                    list_ptrs(stmt.rtable)[(rti - 1) as usize] as *const pg_sys::RangeTblEntry;
                (*rte).relid
            })
            .collect();
        // The extension's own tables are written only by its SECURITY DEFINER
        // functions (request, cancel); agents hold no privileges on them.
        // Anything else writing them, or the system catalogs, in a
        // statement judged as an agent's (its code in a superuser's
        // session) writes what the guard decides from.
        if guard_state(&rels) {
            out.side_door = Some(("a write", SideDoor::GuardState));
        }
        let rels: Vec<pg_sys::Oid> = rels
            .into_iter()
            .filter(|r| !super::is_own_relation(*r))
            .collect();
        if rels.is_empty() {
            continue;
        }
        let mut classes: Vec<(OpClass, &'static str)> = Vec::new();
        match mt.operation {
            CMD_DELETE => classes.push((OpClass::Delete, "DELETE")),
            CMD_UPDATE => {
                out.writes = true;
                classes.push((OpClass::Update, "UPDATE"))
            }
            CMD_INSERT => {
                out.writes = true;
                if mt.onConflictAction == pg_sys::OnConflictAction::ONCONFLICT_UPDATE {
                    classes.push((OpClass::Update, "INSERT ... ON CONFLICT DO UPDATE"));
                }
            }
            CMD_MERGE => {
                out.writes = true;
                for actions in list_ptrs(mt.mergeActionLists) {
                    for a in list_ptrs(actions as *mut pg_sys::List) {
                        let a = &*(a as *const pg_sys::MergeAction);
                        let c = match a.commandType {
                            CMD_DELETE => Some((OpClass::Delete, "MERGE ... THEN DELETE")),
                            CMD_UPDATE => Some((OpClass::Update, "MERGE ... THEN UPDATE")),
                            _ => None,
                        };
                        if let Some(c) = c {
                            if !classes.contains(&c) {
                                classes.push(c);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        for rel in rels {
            for (class, verb) in &classes {
                out.ops.push(Operation {
                    class: *class,
                    verb: (*verb).to_string(),
                    object: relation_ref(rel),
                    target_database: None,
                    is_write: true,
                });
            }
        }
    }
    // Fail closed on any plan shape: what the permissions say is deleted or
    // updated where no ModifyTable node names it.
    for (class, rel) in unplanned_writes(stmt) {
        if super::is_own_relation(rel) {
            continue;
        }
        out.writes = true;
        out.ops.push(Operation {
            class,
            verb: if class == OpClass::Delete {
                "DELETE"
            } else {
                "UPDATE"
            }
            .into(),
            object: relation_ref(rel),
            target_database: None,
            is_write: true,
        });
    }
    out
}

/// Does the query report the rows it writes (es_processed)? Only when its
/// one write is its own target: an INSERT, UPDATE, DELETE or MERGE that
/// sets the command tag, with no writable WITH clause beside it.
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn reports_its_writes(stmt: &pg_sys::PlannedStmt) -> bool {
    stmt.commandType != CMD_SELECT
        && stmt.canSetTag
        && match modify_tables(stmt).len() {
            1 => true,
            // Another extension's node writes (Citus: the rows of every
            // shard), and reports them: one table, its own target.
            0 => unplanned_written(stmt).len() == 1,
            _ => false,
        }
}

/// Does the query report the rows another extension's node writes: its
/// one write, its own target (Citus's distributed DELETE, UPDATE or MERGE,
/// reporting every shard's rows), with no ModifyTable node beside it?
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn reports_unplanned(stmt: &pg_sys::PlannedStmt) -> bool {
    stmt.commandType != CMD_SELECT
        && stmt.canSetTag
        && modify_tables(stmt).is_empty()
        && unplanned_written(stmt).len() == 1
}

/// The tables a planned query writes through another extension's node (no
/// ModifyTable node: Citus's distributed DELETE, UPDATE or MERGE), from the
/// permissions it asks for. Their rows are not this server's: only the
/// query's report (es_processed) counts them.
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn unplanned_written(stmt: &pg_sys::PlannedStmt) -> Vec<pg_sys::Oid> {
    let mut out: Vec<pg_sys::Oid> = Vec::new();
    for (_, relid) in unplanned_writes(stmt) {
        if !out.contains(&relid) {
            out.push(relid);
        }
    }
    out
}

/// The partitioned tables a planned query writes through (its ModifyTable
/// root relations): rows may be routed to partitions the plan does not name.
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn written_roots(stmt: &pg_sys::PlannedStmt) -> Vec<pg_sys::Oid> {
    let rtable = list_ptrs(stmt.rtable);
    modify_tables(stmt)
        .iter()
        .filter(|mt| mt.rootRelation > 0)
        .map(|mt| (*(rtable[(mt.rootRelation - 1) as usize] as *const pg_sys::RangeTblEntry)).relid)
        .collect()
}

/// The range-table indexes of the tables a planned query deletes rows
/// from (`OpClass::Delete`: DELETE nodes, MERGE nodes with a DELETE
/// action) or updates rows of (`OpClass::Update`: UPDATE nodes, INSERT
/// ... ON CONFLICT DO UPDATE, MERGE nodes with an UPDATE action).
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn result_rtis(stmt: &pg_sys::PlannedStmt, class: OpClass) -> Vec<i32> {
    let (verb, upsert) = match class {
        OpClass::Delete => (CMD_DELETE, false),
        OpClass::Update => (CMD_UPDATE, true),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for mt in modify_tables(stmt) {
        let does = match mt.operation {
            op if op == verb => true,
            CMD_INSERT => {
                upsert && mt.onConflictAction == pg_sys::OnConflictAction::ONCONFLICT_UPDATE
            }
            CMD_MERGE => list_ptrs(mt.mergeActionLists).into_iter().any(|actions| {
                list_ptrs(actions as *mut pg_sys::List)
                    .into_iter()
                    .any(|a| (*(a as *const pg_sys::MergeAction)).commandType == verb)
            }),
            _ => false,
        };
        if does {
            out.extend(list_ints(mt.resultRelations));
        }
    }
    out
}

/// The range-table indexes of the tables a planned query upserts into
/// (INSERT ... ON CONFLICT DO UPDATE).
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn upsert_rtis(stmt: &pg_sys::PlannedStmt) -> Vec<i32> {
    modify_tables(stmt)
        .into_iter()
        .filter(|mt| {
            mt.operation == CMD_INSERT
                && mt.onConflictAction == pg_sys::OnConflictAction::ONCONFLICT_UPDATE
        })
        .flat_map(|mt| list_ints(mt.resultRelations))
        .collect()
}

/// The tables a planned query writes (its ModifyTable result relations).
///
/// # Safety
/// `stmt` is a valid planned statement.
pub unsafe fn written_relations(stmt: &pg_sys::PlannedStmt) -> Vec<pg_sys::Oid> {
    let rtable = list_ptrs(stmt.rtable);
    let mut out = Vec::new();
    for mt in modify_tables(stmt) {
        for rti in list_ints(mt.resultRelations) {
            let rte = rtable[(rti - 1) as usize] as *const pg_sys::RangeTblEntry;
            let relid = (*rte).relid;
            if !out.contains(&relid) {
                out.push(relid);
            }
        }
    }
    out
}
