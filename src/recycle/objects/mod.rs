//! An agent's DROP TABLE, VIEW, MATERIALIZED VIEW, SEQUENCE or SCHEMA,
//! kept (`aas_policy::recycle::objects` decides what becomes of each
//! object). PostgreSQL's own DROP runs first in a subtransaction that is
//! always rolled back: its permission checks, its RESTRICT refusal and its
//! CASCADE notices are PostgreSQL's, and the object access hook collects
//! every object it would remove. Then, in the agent's transaction:
//! - links between what is kept and what stays (a foreign key either way,
//!   a default, trigger, policy or index of a table that stays,
//!   inheritance, a sequence's owning column) are remembered as the SQL
//!   that makes them again, and removed, as the DROP would remove them;
//! - relations are renamed and moved into schema `ai_agent_safety_recycle`
//!   (their indexes, constraints, triggers, policies, owned sequences and
//!   grants go with them), owned by the bootstrap superuser; a dropped
//!   schema is renamed instead, with everything in it, owned by the
//!   bootstrap superuser and closed to everyone.
//!
//! Nothing is copied: the cost is one catalog update per object, whatever
//! the size. The entry is a row of `ai_agent_safety.recycled_rows`.

mod keep;
mod restore;
mod trial;

pub use restore::{drop_for_good, restore};
pub use trial::{collecting, on_drop};
use trial::{facts, try_drop, Trial};

use super::file;
use crate::{audit, pg};
use aas_policy::recycle::objects::{self as policy, Class, Dropped, Fate};
use aas_policy::{EventKind, Source, Verdict};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{json, Value};

/// The schema kept relations are moved into.
use super::entries::SCHEMA;

/// The word PostgreSQL uses for a DROP's object type, for the kinds kept.
fn drop_word(t: pg_sys::ObjectType::Type) -> Option<&'static str> {
    use pg_sys::ObjectType::*;
    policy::kept_kind(match t {
        OBJECT_TABLE => "table",
        OBJECT_VIEW => "view",
        OBJECT_MATVIEW => "materialized view",
        OBJECT_SEQUENCE => "sequence",
        OBJECT_SCHEMA => "schema",
        _ => return None,
    })
}

fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e} ({sql})"));
}

/// The SQL word for a relation kind, for ALTER.
fn alter_word(relkind: &str) -> &'static str {
    match relkind {
        "v" => "VIEW",
        "m" => "MATERIALIZED VIEW",
        "S" => "SEQUENCE",
        "f" => "FOREIGN TABLE",
        "i" | "I" => "INDEX",
        _ => "TABLE",
    }
}

/// The word GRANT and REVOKE use for a relation kind.
fn grant_word(relkind: &str) -> &'static str {
    if relkind == "S" {
        "SEQUENCE"
    } else {
        "TABLE"
    }
}

/// An agent's DROP of another kind (TYPE, DOMAIN, FUNCTION, ... CASCADE)
/// or DROP OWNED BY, allowed, when the recycle bin is on: tried first, and
/// refused when it would remove rows (a table, materialized view or
/// sequence, or a column of one), which only the DROPs the bin keeps may
/// do. Otherwise PostgreSQL's DROP runs.
///
/// # Safety
/// `node` is the statement's valid utility node, inside a transaction.
pub unsafe fn refuse_other_drop_of_rows(node: *mut pg_sys::Node) {
    // SAFETY: per this function's contract.
    let trial = unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_DropOwnedStmt => {
                Trial::DropOwned(node as *mut pg_sys::DropOwnedStmt)
            }
            pg_sys::NodeTag::T_DropStmt => {
                let s = node as *mut pg_sys::DropStmt;
                // Kept (above), or cannot run in a subtransaction.
                if drop_word((*s).removeType).is_some() || (*s).concurrent {
                    return;
                }
                Trial::Drop(s)
            }
            _ => return,
        }
    };
    // SAFETY: per this function's contract.
    let found = unsafe { try_drop(trial, true) };
    let dropped = facts(&found);
    let mut rows = held(&dropped);
    rows.extend(
        dropped
            .into_iter()
            .filter(|d| match d.class {
                Class::Relation(k) => matches!(k, 'r' | 'p' | 'm' | 'S') && !d.temporary,
                Class::Column => !d.temporary,
                _ => false,
            })
            .map(|d| d.what),
    );
    if !rows.is_empty() {
        let kind = match trial {
            Trial::DropOwned(_) | Trial::Sql(_) => "owned by",
            // SAFETY: a valid DropStmt.
            Trial::Drop(s) => {
                crate::classify::utility::object_type_word(unsafe { (*s).removeType })
            }
        };
        pg::refuse(policy::unkeepable_denial(
            &pg::session_user_name(),
            &kind.to_lowercase(),
            &rows,
        ));
    }
}

/// What the bin holds already, among what a DROP would remove (a view
/// kept in the recycle schema on a table being dropped, say): only a purge
/// or the expiry removes it.
fn held(dropped: &[Dropped]) -> Vec<String> {
    let places = super::entries::kept_schemas();
    dropped
        .iter()
        .filter(|d| d.schema.is_some_and(|s| places.contains(&s)))
        .map(|d| format!("{} (held by the recycle bin)", d.what))
        .collect()
}

/// Instead of an agent's DROP TABLE, VIEW, MATERIALIZED VIEW, SEQUENCE or
/// SCHEMA (already judged and allowed), when the recycle bin is on: keeps
/// what it would remove. Returns false when PostgreSQL's DROP should run
/// (another object type, or only temporary tables).
///
/// # Safety
/// `node` is the statement's valid utility node, inside a transaction.
pub unsafe fn instead_of_drop(
    node: *mut pg_sys::Node,
    statement: &str,
    token: Option<uuid::Uuid>,
    retention: i64,
) -> bool {
    // SAFETY: per this function's contract.
    if unsafe { (*node).type_ } != pg_sys::NodeTag::T_DropStmt {
        return false;
    }
    let stmt = node as *mut pg_sys::DropStmt;
    // SAFETY: a DropStmt.
    let Some(kind) = drop_word(unsafe { (*stmt).removeType }) else {
        return false;
    };
    // SAFETY: per this function's contract.
    let found = unsafe { try_drop(Trial::Drop(stmt), false) };
    if found.is_empty() {
        // IF EXISTS of nothing: PostgreSQL's NOTICE was said.
        return true;
    }
    let dropped = facts(&found);
    let schema = (kind == "schema")
        .then(|| {
            dropped
                .iter()
                .find(|d| d.class == Class::Schema)
                .map(|d| d.oid)
        })
        .flatten();
    let fates = policy::plan(&dropped, schema);
    // Only temporary tables: they go with their session anyway, and cannot
    // leave its schema.
    // (Nothing else may go with them: a link cut from a table that stays
    // would be gone for good.)
    if dropped.iter().any(|d| d.temporary)
        && schema.is_none()
        && dropped.iter().zip(&fates).all(|(d, f)| {
            *f == Fate::Follows || (d.temporary && matches!(d.class, Class::Relation(_)))
        })
    {
        return false;
    }
    let mut refused = held(&dropped);
    refused.extend(
        dropped
            .iter()
            .zip(&fates)
            .filter(|(_, f)| **f == Fate::Refuse)
            .map(|(d, _)| d.what.clone()),
    );
    if !refused.is_empty() {
        pg::refuse(policy::unkeepable_denial(
            &pg::session_user_name(),
            kind,
            &refused,
        ));
    }
    let id = file::next_id().unwrap_or_else(|e| {
        pgrx::error!(
            "ai_agent_safety: could not number a recycle bin entry ({e}); nothing was dropped"
        )
    });
    let (mut entry, bytes) = keep::keep(id, kind, schema, &dropped, &fates, stmt);
    // The objects the statement named, as the agent named them.
    let object = named(stmt, &mut entry);
    let kept_as = entry["kept_as"].as_str().unwrap_or("").to_string();
    super::entries::record_entry(&super::entries::NewEntry {
        id,
        kind,
        object: &object,
        tables: entry,
        token,
        statement,
        retention,
        rows: None,
        bytes,
    });
    audit::record(audit::Event {
        operation: format!("DROP {}", kind.to_uppercase()),
        object: object.clone(),
        token: token.map(|t| t.to_string()).unwrap_or_default(),
        reason: format!(
            "{} dropped {kind} {object}: kept in the recycle bin as entry {id} ({kept_as}, {bytes} bytes)",
            pg::session_user_name()
        ),
        statement: statement.to_string(),
        ..audit::Event::new(Source::Recycle, EventKind::Kept, Verdict::Info)
    });
    pgrx::notice!(
        "{}",
        policy::kept_objects_notice(kind, &object, id, &kept_as, retention)
    );
    true
}

/// The relation names a DROP of relations wrote (their last parts).
fn written(stmt: *mut pg_sys::DropStmt) -> Vec<String> {
    // SAFETY: a DropStmt of relations: its objects are name lists.
    unsafe {
        if (*stmt).removeType == pg_sys::ObjectType::OBJECT_SCHEMA {
            return Vec::new();
        }
        pg::list_ptrs((*stmt).objects)
            .into_iter()
            .map(|o| {
                let l = o as *mut pg_sys::List;
                pg::list_ptrs(l)
                    .last()
                    .map(|s| pg::cstr((*(*s as *const pg_sys::String)).sval))
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// The statement's objects by their original names (the relations whose
/// original name is among those the statement wrote, or the schema); the
/// relations are marked `named` in the entry (new_name renames the first).
fn named(stmt: *mut pg_sys::DropStmt, entry: &mut Value) -> String {
    if let Some(s) = entry["schema"]["name"].as_str() {
        return pg::quote_ident(s);
    }
    let written = written(stmt);
    let mut out = Vec::new();
    for r in entry["relations"].as_array_mut().into_iter().flatten() {
        if r["top"].as_bool() == Some(true)
            && r["moves"].as_bool() == Some(true)
            && written
                .iter()
                .any(|w| Some(w.as_str()) == r["name"].as_str())
        {
            r["named"] = json!(true);
            out.push(original(r));
        }
    }
    out.join(", ")
}

fn original(r: &Value) -> String {
    format!(
        "{}.{}",
        pg::quote_ident(r["schema"].as_str().unwrap_or("")),
        pg::quote_ident(r["name"].as_str().unwrap_or(""))
    )
}

/// Is a relation name free in a schema (by names; a type's name, a
/// domain's say, would block a table's row type)?
fn free(schema: &str, name: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = $1 AND c.relname = $2)
            AND NOT EXISTS (SELECT FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                             WHERE n.nspname = $1 AND t.typname = $2)",
        &[schema.into(), name.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

fn schema_exists(name: &str) -> bool {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: a catalog lookup by name.
    unsafe { pg_sys::get_namespace_oid(c.as_ptr(), true) != pg_sys::InvalidOid }
}

/// The schema an object dropped or altered lives in, when it is one of the
/// bin's (by name; syscache lookups only): for relations and their
/// columns, schemas, functions, types and constraints.
pub fn kept_place_of(class: pg_sys::Oid, oid: pg_sys::Oid, sub: i32) -> Option<String> {
    // SAFETY: catalog lookups by oid inside a transaction; each class
    // below has a namespace get_object_namespace knows.
    let nsp = unsafe {
        if class == pg_sys::RelationRelationId {
            pg_sys::get_rel_namespace(oid)
        } else if class == pg_sys::NamespaceRelationId {
            oid
        } else if class == pg_sys::ProcedureRelationId
            || class == pg_sys::TypeRelationId
            // pg_constraint (ConstraintRelationId, not in pgrx's bindings).
            || class == pg_sys::Oid::from(2606)
        {
            let addr = pg_sys::ObjectAddress {
                classId: class,
                objectId: oid,
                objectSubId: sub,
            };
            pg_sys::get_object_namespace(&addr)
        } else {
            return None;
        }
    };
    if nsp == pg_sys::InvalidOid {
        return None;
    }
    // SAFETY: a catalog lookup; NULL when the schema is gone.
    let name = unsafe { pg_sys::get_namespace_name(nsp) };
    if name.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated name.
    let name = unsafe { pg::cstr(name) };
    policy::is_kept_schema(&name).then_some(name)
}

/// An agent's statement drops or changes an object the bin holds (not
/// through a DROP, which is tried and refused above; an ALTER ... CASCADE,
/// an ALTER TYPE of a kept typed table): refused.
pub fn refuse_if_held(class: pg_sys::Oid, oid: pg_sys::Oid, sub: i32) {
    if let Some(schema) = kept_place_of(class, oid, sub) {
        pg::refuse(policy::held_denial(&pg::session_user_name(), &schema));
    }
}
