//! The recycle bin (`aas_policy::recycle` decides): an agent's DROP
//! DATABASE keeps the database instead of dropping it. The database is
//! renamed to its recycle name and closed to connections, in the DROP's own
//! transaction, so its name is free at once and nothing is copied (a
//! rename, whatever its size). `restore_dropped` renames it back and opens
//! it; `purge_dropped` and the expiry drop it for good, each from a
//! background worker in a transaction of its own (DROP DATABASE cannot run
//! inside a function's transaction).

mod database;
pub mod domains;
mod entries;
pub mod file;
pub mod objects;
pub mod old_rows;
mod purge;
pub mod rows;

use database::{
    bootstrap_superuser, database_oid, database_owner, database_row, locked,
    rename_and_set_connections, role_exists, target_retention_s,
};
pub use purge::{next_expiry, purge, tend};

use crate::{audit, identity, pg, privileged, settings};
use aas_policy::recycle as policy;
use aas_policy::{EventKind, Source, Verdict};
use file::Entry;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::ffi::CStr;

/// An entry file to remove when the (sub)transaction that kept or
/// restored it ends: a keep's goes if it aborts, a restore's when the
/// transaction commits.
struct Pending {
    id: u32,
    on_commit: bool,
    subxact: pg_sys::SubTransactionId,
}

// SAFETY: a backend is single-threaded; cleared at the end of every transaction.
static mut PENDING: Vec<Pending> = Vec::new();

// SAFETY: see PENDING; the one place it is borrowed from.
fn pending() -> &'static mut Vec<Pending> {
    // SAFETY: see PENDING.
    unsafe { &mut *std::ptr::addr_of_mut!(PENDING) }
}

fn remember(id: u32, on_commit: bool) {
    pending().push(Pending {
        id,
        on_commit,
        // SAFETY: reads the transaction state.
        subxact: unsafe { pg_sys::GetCurrentSubTransactionId() },
    });
}

// SAFETY: called from the subtransaction callback (hooks); removes files and trims a static.
pub(crate) unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    if event == SUBXACT_EVENT_ABORT_SUB {
        old_rows::aborted(Some(my));
        rows::forget_own_query();
    }
    if pending().is_empty() {
        return;
    }
    match event {
        // What the subtransaction did is undone: a keep's file goes now, a
        // restore's stays (the entry is held again).
        SUBXACT_EVENT_ABORT_SUB => pending().retain(|p| {
            if p.subxact != my {
                return true;
            }
            if !p.on_commit {
                file::remove(p.id);
            }
            false
        }),
        SUBXACT_EVENT_COMMIT_SUB => {
            for p in pending().iter_mut().filter(|p| p.subxact == my) {
                p.subxact = parent;
            }
        }
        _ => {}
    }
}

// SAFETY: called from the transaction callback (hooks); removes files and clears a static.
pub(crate) unsafe extern "C-unwind" fn on_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(event, XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT) {
        old_rows::aborted(None);
        rows::forget_own_query();
    }
    if pending().is_empty() {
        return;
    }
    let committed = match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => true,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => false,
        XACT_EVENT_PRE_PREPARE => {
            // The file would outlive the transaction's fate.
            // SAFETY: at PRE_PREPARE raising aborts the transaction.
            unsafe { refuse_prepare() }
        }
        _ => return,
    };
    for p in std::mem::take(pending()) {
        if p.on_commit == committed {
            file::remove(p.id);
        }
    }
}

/// A transaction that restored an entry is being prepared: refused, on the
/// guarded path (the transaction callback itself is not guarded).
#[pgrx::pg_guard]
// SAFETY: called from `on_xact` at PRE_PREPARE, where raising aborts the transaction; #[pg_guard] turns the panic into the ERROR.
unsafe extern "C-unwind" fn refuse_prepare() -> ! {
    pgrx::error!("a transaction that restored a recycle bin entry cannot be prepared");
}

/// Is this entry still held by its closed, renamed database?
pub(super) fn held(e: &Entry) -> bool {
    database_row(pg_sys::Oid::from(e.oid))
        .is_some_and(|(name, allow, _)| policy::is_held(&name, &e.recycled, allow))
}

fn raise(code: PgSqlErrorCode, d: aas_policy::Denial) -> ! {
    use pgrx::pg_sys::panic::ErrorReport;
    ErrorReport::new(code, d.message, "ai_agent_safety")
        .set_detail(d.detail)
        .set_hint(d.hint)
        .report(pgrx::PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// The task of an approval token: the task the human approved.
pub(super) fn token_task(token: uuid::Uuid) -> Option<String> {
    privileged::run(|| {
        Spi::get_one_with_args::<String>(
            "SELECT task_id FROM ai_agent_safety.tokens WHERE id = $1::text::uuid",
            &[token.to_string().into()],
        )
        .ok()
        .flatten()
    })
}

/// Instead of an agent's DROP DATABASE (already judged and allowed), when
/// the recycle bin is on: keeps the database. Returns false when the DROP
/// should run as PostgreSQL's own (the bin is off, or no such database:
/// DROP says so itself, or skips it with IF EXISTS).
///
/// # Safety
/// `node` is the statement's valid utility node, inside a transaction.
pub unsafe fn instead_of_drop(
    node: *mut pg_sys::Node,
    top_level: bool,
    statement: &str,
    token: Option<uuid::Uuid>,
) -> bool {
    // SAFETY: per this function's contract.
    if unsafe { (*node).type_ } != pg_sys::NodeTag::T_DropdbStmt {
        return false;
    }
    let stmt = node as *mut pg_sys::DropdbStmt;
    // SAFETY: a DropdbStmt's name is a C string; its options a DefElem list.
    let (name, force) = unsafe {
        (
            pg::cstr((*stmt).dbname),
            pg::list_ptrs((*stmt).options).into_iter().any(|d| {
                CStr::from_ptr((*(d as *mut pg_sys::DefElem)).defname).to_bytes() == b"force"
            }),
        )
    };
    // As standard_ProcessUtility runs DROP DATABASE.
    // SAFETY: raises PostgreSQL's own error inside a transaction block.
    unsafe { pg_sys::PreventInTransactionBlock(top_level, c"DROP DATABASE".as_ptr()) };
    // The database, locked as dropdb locks it, so that no other database
    // can take its name (or it another name) from here on: PostgreSQL's own
    // DROP, when it runs, finds this very database.
    let Some(oid) = locked(&name) else {
        // Said here, never left to PostgreSQL's DROP: a database that took
        // the name meanwhile (a restore, say) would be dropped for good.
        // SAFETY: reads the statement's flag.
        if unsafe { (*stmt).missing_ok } {
            pgrx::notice!("database \"{name}\" does not exist, skipping");
            return true;
        }
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_CATALOG_NAME,
            format!("database \"{name}\" does not exist")
        );
    };
    // The larger of this session's retention and the dropped database's
    // own: an agent gains nothing by dropping from a database where the
    // bin is off.
    let retention = settings::recycle_retention_s().max(target_retention_s(oid).unwrap_or(0));
    if !policy::keeps(true, retention) {
        return false;
    }
    // What dropdb refuses, in its words, before anything changes.
    // SAFETY: reads a backend variable.
    if oid == unsafe { pg_sys::MyDatabaseId } {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            "cannot drop the currently open database"
        );
    }
    // SAFETY: catalog lookups; aclcheck_error raises PostgreSQL's own error.
    unsafe {
        #[cfg(feature = "pg15")]
        let owner = pg_sys::pg_database_ownercheck(oid, pg_sys::GetUserId());
        #[cfg(not(feature = "pg15"))]
        let owner = pg_sys::object_ownercheck(pg_sys::DatabaseRelationId, oid, pg_sys::GetUserId());
        if !owner {
            pg_sys::aclcheck_error(
                pg_sys::AclResult::ACLCHECK_NOT_OWNER,
                pg_sys::ObjectType::OBJECT_DATABASE,
                (*stmt).dbname,
            );
        }
    }
    if database_row(oid).is_some_and(|(_, _, template)| template) {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            "cannot drop a template database"
        );
    }
    // Logical replication, as dropdb checks it: an active slot or a
    // subscription in the database refuses the DROP.
    let (mut slots, mut active) = (0, 0);
    // SAFETY: reads the replication slots' shared state.
    unsafe { pg_sys::ReplicationSlotsCountDBSlots(oid, &mut slots, &mut active) };
    if active > 0 {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("database \"{name}\" is used by an active logical replication slot"),
            format!("There are {active} active slot(s).")
        );
    }
    let subscriptions = privileged::run(|| {
        Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM pg_catalog.pg_subscription WHERE subdbid = $1",
            &[oid.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(0)
    });
    if subscriptions > 0 {
        pgrx::ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("database \"{name}\" is being used by logical replication subscription"),
            format!("There are {subscriptions} subscription(s).")
        );
    }
    if force {
        // As DROP ... WITH (FORCE): with the caller's own right to end them.
        // SAFETY: inside a transaction; raises PostgreSQL's own errors.
        unsafe { pg_sys::TerminateOtherDBBackends(oid) };
    }
    // A free name (a database someone named like a recycled one is passed by).
    let (id, recycled) = loop {
        let id = file::next_id().unwrap_or_else(|e| {
            pgrx::error!(
                "ai_agent_safety: could not number a recycle bin entry ({e}); nothing was dropped"
            )
        });
        let name = policy::recycled_name(&name, id);
        if database_oid(&name) == pg_sys::InvalidOid {
            break (id, name);
        }
    };
    let owner = database_owner(oid);
    rename_and_set_connections(&name, &recycled, false, &bootstrap_superuser());
    if slots > 0 {
        // Its inactive logical slots go, as DROP DATABASE drops them: kept,
        // they would hold back WAL for the whole retention.
        // SAFETY: as dropdb calls it, once no one is connected (the rename
        // checked that).
        unsafe { pg_sys::ReplicationSlotsDropDBSlots(oid) };
    }
    let bytes = privileged::run(|| {
        Spi::get_one_with_args::<i64>("SELECT pg_catalog.pg_database_size($1)", &[oid.into()])
            .ok()
            .flatten()
    });
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let expires = policy::expires_at(now, retention);
    let entry = Entry {
        id,
        oid: oid.to_u32(),
        kind: "database".into(),
        owner,
        object: name.clone(),
        recycled: recycled.clone(),
        dropped_by: pg::session_user_name(),
        task_id: token
            .and_then(token_task)
            .or_else(|| crate::presented::task_of(statement)),
        token: token.map(|t| t.to_string()),
        statement: audit::cut_statement(statement).into_owned(),
        at: pg::timestamp_text(now),
        at_us: now,
        expires_at: pg::timestamp_text(expires),
        expires_at_us: expires,
        bytes,
        // SAFETY: reads a backend variable.
        from_database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
    };
    if let Err(e) = file::write(&entry) {
        pgrx::error!("ai_agent_safety: could not keep database \"{name}\" in the recycle bin ({e}); nothing was dropped");
    }
    remember(id, false);
    audit::record(audit::Event {
        operation: "DROP DATABASE".into(),
        object: name.clone(),
        token: token.map(|t| t.to_string()).unwrap_or_default(),
        reason: format!(
            "{} dropped database {name}: kept in the recycle bin as entry {id} ({recycled}, {} bytes) until {}",
            entry.dropped_by,
            bytes.unwrap_or(0),
            entry.expires_at
        ),
        statement: statement.to_string(),
        ..audit::Event::new(Source::Recycle, EventKind::Kept, Verdict::Info)
    });
    pgrx::notice!(
        "{}",
        policy::kept_notice("database", &name, id, &recycled, retention)
    );
    true
}

/// Who may read and decide the recycle bin: approvers and superusers, never
/// an agent (nor an agent's code run by someone else).
pub(super) fn check_caller(what: &str) {
    if identity::session_user_is_agent()
        || identity::session_is_agent()
        || crate::agent_code::running().is_some()
    {
        pg::refuse(policy::agent_denial(&pg::session_user_name(), what));
    }
}

/// May this session read the recycle bin? (Refuses an agent.)
pub fn entries_readable() -> bool {
    check_caller("reading the recycle bin");
    true
}

/// The entries held now, for `ai_agent_safety.recycle_bin`.
pub fn entries() -> Vec<Entry> {
    check_caller("reading the recycle bin");
    file::list().into_iter().filter(held).collect()
}

pub(super) fn held_entry(id: i64) -> Entry {
    u32::try_from(id)
        .ok()
        .and_then(file::read)
        .filter(held)
        .unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                policy::no_entry(id),
            )
        })
}

pub(super) fn record_rows(k: &entries::Kept, kind: EventKind, reason: String) {
    audit::record_for_task(
        audit::Event {
            operation: if k.holds_rows() {
                k.kind.to_uppercase()
            } else {
                format!("DROP {}", k.kind.to_uppercase())
            },
            object: k.object.clone(),
            reason,
            ..audit::Event::new(Source::Recycle, kind, Verdict::Info)
        },
        k.task.as_deref().unwrap_or(""),
    );
}

fn record(e: &Entry, kind: EventKind, reason: String) {
    audit::record_for_task(
        audit::Event {
            operation: "DROP DATABASE".into(),
            object: e.object.clone(),
            token: e.token.clone().unwrap_or_default(),
            reason,
            ..audit::Event::new(Source::Recycle, kind, Verdict::Info)
        },
        e.task_id.as_deref().unwrap_or(""),
    );
}

/// `restore_dropped(id, new_name)`: the database back under its name (or
/// `new_name`), open to connections again, with everything in it.
pub fn restore(id: i64, new_name: Option<&str>) -> String {
    check_caller("restore_dropped");
    if let Some(k) = entries::entry(id) {
        let said = if k.holds_rows() {
            rows::restore(id, &k.kind, &k.object, &k.copies(), &k.dropped_by)
        } else {
            objects::restore(id, &k.kind, &k.object, &k.tables, new_name)
        };
        record_rows(&k, EventKind::Restored, said.clone());
        return said;
    }
    let e = held_entry(id);
    let name = policy::restore_name(
        &e.object,
        new_name,
        |n| database_oid(n) != pg_sys::InvalidOid,
        e.id,
    )
    .unwrap_or_else(|d| {
        let code = if d.message.contains("is taken") {
            PgSqlErrorCode::ERRCODE_DUPLICATE_DATABASE
        } else {
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        };
        raise(code, d)
    });
    // Its owner again, if that role still exists.
    let owner = if role_exists(&e.owner) {
        e.owner.clone()
    } else {
        bootstrap_superuser()
    };
    rename_and_set_connections(&e.recycled, &name, true, &owner);
    remember(e.id, true);
    let said = format!(
        "{} restored database {} (recycle bin entry {}, dropped by {}) as {name}",
        pg::session_user_name(),
        e.object,
        e.id,
        e.dropped_by
    );
    record(&e, EventKind::Restored, said.clone());
    said
}
