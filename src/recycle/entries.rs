//! The entries of this database's recycle bin (`ai_agent_safety.recycled_rows`):
//! a kept TRUNCATE's copies or a kept DROP's objects, recorded in the
//! keeping statement's transaction, read by restore and purge, forgotten
//! when they end; and the schema that holds what is kept.

use crate::{audit, pg, privileged};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::Value;

/// The schema that holds kept rows and relations.
pub(super) const SCHEMA: &str = aas_policy::api::RECYCLE_SCHEMA;

/// The recycle schema's oid, when it exists.
pub(super) fn bin_schema() -> Option<pg_sys::Oid> {
    // SAFETY: a catalog lookup by name (missing_ok).
    let oid = unsafe { pg_sys::get_namespace_oid(c"ai_agent_safety_recycle".as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The recycle schema, made on first use, the bootstrap superuser's (one
/// someone else made first would hold kept things where they reach them).
pub(super) fn ensure_schema(what: &str) {
    if bin_schema().is_none() {
        Spi::run(&format!(
            "CREATE SCHEMA {SCHEMA} AUTHORIZATION {}",
            pg::quote_ident(&super::database::bootstrap_superuser())
        ))
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
    }
    let owner = Spi::get_one::<pg_sys::Oid>(&format!(
        "SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = '{SCHEMA}'"
    ))
    .ok()
    .flatten();
    if owner != Some(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID)) {
        pgrx::error!(
            "ai_agent_safety: schema {SCHEMA} belongs to {}, not to the bootstrap superuser, so the {what} cannot be kept safely there; nothing was {} (a DBA drops or reassigns that schema)",
            owner.map(pg::role_name).unwrap_or_default(),
            if what == "rows" { "truncated" } else { "dropped" }
        );
    }
}

/// A new entry of this database's recycle bin.
pub(super) struct NewEntry<'a> {
    pub id: u32,
    pub kind: &'a str,
    pub object: &'a str,
    /// A TRUNCATE's copies, or a DROP's objects and cut links.
    pub tables: Value,
    pub token: Option<uuid::Uuid>,
    pub statement: &'a str,
    pub retention: i64,
    pub rows: Option<i64>,
    pub bytes: i64,
}

/// Records a new entry, in the keeping statement's transaction: its task
/// is the approved token's, else the statement's.
pub(super) fn record_entry(e: &NewEntry) {
    let task = e
        .token
        .and_then(super::token_task)
        .or_else(|| crate::presented::task_of(e.statement));
    privileged::run(|| {
        Spi::run_with_args(
            "INSERT INTO ai_agent_safety.recycled_rows
               (id, kind, object, tables, dropped_by, task_id, token, statement, at, expires_at, rows, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::uuid, $8, pg_catalog.now(),
                     pg_catalog.now() + pg_catalog.make_interval(secs => $9), $10, $11)",
            &[
                (e.id as i64).into(),
                e.kind.into(),
                e.object.into(),
                pgrx::JsonB(e.tables.clone()).into(),
                pg::session_user_name().as_str().into(),
                task.into(),
                e.token.map(|t| t.to_string()).into(),
                audit::cut_statement(e.statement).into_owned().into(),
                (e.retention as f64).into(),
                e.rows.into(),
                e.bytes.into(),
            ],
        )
        .unwrap_or_else(|err| pgrx::error!("ai_agent_safety: recording the recycle bin entry failed: {err}"))
    });
}

/// Does this database have the table of kept TRUNCATEs? A database whose
/// extension predates the recycle bin has none, and a query naming it
/// would not even parse there. Inside a transaction.
pub(super) fn has_entries_table() -> bool {
    // SAFETY: a catalog lookup by name; missing_ok.
    unsafe {
        pg_sys::get_relname_relid(
            c"recycled_rows".as_ptr(),
            pg_sys::get_namespace_oid(c"ai_agent_safety".as_ptr(), true),
        ) != pg_sys::InvalidOid
    }
}

/// An entry of this database (a kept TRUNCATE, or a kept DROP of
/// relations or a schema).
pub struct Kept {
    pub kind: String,
    pub object: String,
    /// A TRUNCATE's copies (an array), or a DROP's objects and cut links.
    pub tables: Value,
    pub dropped_by: String,
    pub task: Option<String>,
}

impl Kept {
    /// A TRUNCATE's copied tables.
    pub fn copies(&self) -> Vec<Value> {
        self.tables.as_array().cloned().unwrap_or_default()
    }

    /// A kept TRUNCATE's or DELETE's rows (copies), not objects.
    pub fn holds_rows(&self) -> bool {
        aas_policy::recycle::holds_rows(&self.kind)
    }
}

/// An entry of this database, by id.
pub fn entry(id: i64) -> Option<Kept> {
    privileged::run(|| {
        Spi::connect(|c| {
            if !has_entries_table() {
                return Ok(None);
            }
            let r = c.select(
                "SELECT object, tables, dropped_by, task_id, kind FROM ai_agent_safety.recycled_rows WHERE id = $1",
                None,
                &[id.into()],
            )?;
            let mut out = None;
            for row in r {
                let tables: Option<pgrx::JsonB> = row.get(2)?;
                out = Some(Kept {
                    object: row.get::<String>(1)?.unwrap_or_default(),
                    tables: tables.map(|t| t.0).unwrap_or(Value::Null),
                    dropped_by: row.get::<String>(3)?.unwrap_or_default(),
                    task: row.get::<String>(4)?,
                    kind: row.get::<String>(5)?.unwrap_or_default(),
                });
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
        .ok()
        .flatten()
    })
}

pub(super) fn forget(id: i64) {
    privileged::run(|| {
        Spi::run_with_args(
            "DELETE FROM ai_agent_safety.recycled_rows WHERE id = $1",
            &[id.into()],
        )
        .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"))
    });
}

/// The schemas that hold what this database's bin keeps: the recycle
/// schema and every kept schema (renamed). Nothing in them may be removed
/// but by a purge or the expiry.
pub(super) fn kept_schemas() -> Vec<u32> {
    privileged::run(|| {
        let mut out: Vec<u32> = bin_schema().map(|b| b.to_u32()).into_iter().collect();
        if has_entries_table() {
            let kept = Spi::connect(|c| {
                let mut v = Vec::new();
                for r in c.select(
                    "SELECT (tables OPERATOR(pg_catalog.->) 'schema' OPERATOR(pg_catalog.->>) 'oid')::oid
                       FROM ai_agent_safety.recycled_rows WHERE kind = 'schema'",
                    None,
                    &[],
                )? {
                    if let Some(o) = r.get::<pg_sys::Oid>(1)? {
                        v.push(o.to_u32());
                    }
                }
                Ok::<_, pgrx::spi::Error>(v)
            })
            .unwrap_or_default();
            out.extend(kept);
        }
        out
    })
}
