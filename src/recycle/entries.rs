//! The entries of this database's recycle bin (`ai_agent_safety.recycled_rows`):
//! a kept TRUNCATE's copies or a kept DROP's objects, recorded in the
//! keeping statement's transaction, read by restore and purge, forgotten
//! when they end; and the schema that holds what is kept.

use crate::{audit, pg, privileged};
use aas_policy::recycle as policy;
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::Value;

/// The schema that holds kept rows and relations.
pub(super) const SCHEMA: &str = aas_policy::api::RECYCLE_SCHEMA;

/// The recycle schema's oid, when it exists and is safe to keep things in
/// (see [`bin_trouble`]): one that is not is no bin, and nothing in it is
/// taken for kept.
pub(super) fn bin_schema() -> Option<pg_sys::Oid> {
    let oid = schema_oid()?;
    bin_trouble(oid).is_none().then_some(oid)
}

pub(super) fn schema_oid() -> Option<pg_sys::Oid> {
    // SAFETY: a catalog lookup by name (missing_ok).
    let oid = unsafe { pg_sys::get_namespace_oid(c"ai_agent_safety_recycle".as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Why the schema cannot hold what an agent destroys, if it cannot: it
/// is not the bootstrap superuser's, or its privileges are not an owner's
/// alone (a DBA's default privileges, a grant). Read from the syscache.
fn bin_trouble(oid: pg_sys::Oid) -> Option<policy::UnsafeBin> {
    let bootstrap = pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID);
    // SAFETY: syscache lookup and release; the tuple and its ACL are read
    // while pinned (the ACL detoasted into the current memory context).
    let (owner, owner_only) = unsafe {
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            pg_sys::Datum::from(oid),
        );
        if tup.is_null() {
            return None;
        }
        let owner = (*(pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_namespace)).nspowner;
        let mut isnull = false;
        let d = pg_sys::SysCacheGetAttr(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            tup,
            pg_sys::Anum_pg_namespace_nspacl as i16,
            &mut isnull,
        );
        let owner_only = isnull
            || pg_sys::aclequal(
                pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *const pg_sys::Acl,
                pg_sys::acldefault(pg_sys::ObjectType::OBJECT_SCHEMA, owner),
            );
        pg_sys::ReleaseSysCache(tup);
        (owner, owner_only)
    };
    if owner != bootstrap {
        return Some(policy::UnsafeBin::Owner(pg::role_name(owner)));
    }
    if owner_only {
        return None;
    }
    Some(policy::UnsafeBin::Grants(granted(Granted::Schema, oid)))
}

/// What holds the privileges [`granted`] reads.
#[derive(Clone, Copy)]
enum Granted {
    Schema,
    Table,
}

/// The roles other than its owner a schema's or table's privileges grant
/// anything to, quoted for SQL (`PUBLIC` for everyone), in order.
fn granted(on: Granted, oid: pg_sys::Oid) -> Vec<String> {
    let (catalog, acl, owner) = match on {
        Granted::Schema => ("pg_namespace", "nspacl", "nspowner"),
        Granted::Table => ("pg_class", "relacl", "relowner"),
    };
    Spi::get_one_with_args::<Vec<String>>(
        &format!(
            "SELECT pg_catalog.array_agg(g ORDER BY g) FROM (
               SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END AS g
                 FROM pg_catalog.{catalog} o, pg_catalog.aclexplode(o.{acl}) a
                 LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
                WHERE o.oid = $1 AND a.grantee <> o.{owner}) s"
        ),
        &[oid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// A kept table (a store of old rows or a TRUNCATE's copy) by its
/// qualified name, when it is one the extension can trust: in the bin's
/// schema while the bootstrap superuser owns it, that superuser's own, a
/// plain table with no trigger, rule or row security. (Grants do not
/// matter here: a restore's table owner holds USAGE on the schema and
/// SELECT on the entry's store while the restore runs.) The restore, purge
/// and expiry act on it as a superuser; a table of that name that is
/// anything else (the schema was dropped and made again by another role)
/// is never touched.
pub(in crate::recycle) fn kept_table(qualified: &str) -> Option<pg_sys::Oid> {
    // The schema's owner, not its grants: a restore running now grants
    // the table's owner USAGE until it ends.
    let bin = schema_oid()?;
    privileged::run(|| {
        Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT c.oid FROM pg_catalog.pg_class c, pg_catalog.pg_namespace n
              WHERE c.oid = pg_catalog.to_regclass($1) AND c.relnamespace = $2 AND c.relowner = 10
                AND n.oid = c.relnamespace AND n.nspowner = 10
                AND c.relkind = 'r' AND NOT c.relhastriggers AND NOT c.relhasrules AND NOT c.relrowsecurity",
            &[qualified.into(), bin.into()],
        )
        .ok()
        .flatten()
    })
}

/// Takes from a table just made in the bin every privilege someone other
/// than its owner got by a DBA's default privileges (ALTER DEFAULT
/// PRIVILEGES FOR ROLE <bootstrap superuser> ... ON TABLES).
pub(in crate::recycle) fn revoke_others(qualified: &str) {
    privileged::run(|| {
        let Some(oid) = Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[qualified.into()],
        )
        .ok()
        .flatten() else {
            return;
        };
        for g in granted(Granted::Table, oid) {
            Spi::run(&format!("REVOKE ALL ON TABLE {qualified} FROM {g}"))
                .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
        }
    })
}

/// The recycle schema, made when it is missing (CREATE EXTENSION makes it;
/// a DBA may have dropped it since), the bootstrap superuser's with no
/// privilege for anyone else. One someone else owns, or that grants
/// anything, would hold kept things where others reach them: the
/// statement `kind` (`truncate`, `delete`, `update`, `drop`) is refused.
pub(super) fn ensure_schema(kind: &str) -> pg_sys::Oid {
    let oid = match schema_oid() {
        Some(oid) => oid,
        None => {
            Spi::run(&format!(
                "CREATE SCHEMA {SCHEMA} AUTHORIZATION {}",
                pg::quote_ident(&super::database::bootstrap_superuser())
            ))
            .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
            let oid = schema_oid()
                .unwrap_or_else(|| pgrx::error!("ai_agent_safety: schema {SCHEMA} is missing"));
            // A DBA's default privileges for new schemas do not apply here.
            for g in granted(Granted::Schema, oid) {
                Spi::run(&format!("REVOKE ALL ON SCHEMA {SCHEMA} FROM {g}"))
                    .unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"));
            }
            oid
        }
    };
    if let Some(trouble) = bin_trouble(oid) {
        pg::refuse(policy::unsafe_bin_denial(kind, &trouble));
    }
    oid
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
