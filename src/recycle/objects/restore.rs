//! Restoring, purging and expiring a kept DROP.

use super::{alter_word, free, grant_word, original, run, schema_exists};
use crate::{pg, privileged};
use aas_policy::recycle::objects as policy;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use serde_json::Value;

/// `restore_dropped` of a kept DROP: the objects back under their names
/// (the first named one, or the schema, as `new_name` if given), with
/// their owners, grants and cut links made again. One transaction.
pub fn restore(id: i64, kind: &str, object: &str, entry: &Value, new_name: Option<&str>) -> String {
    let id32 = id as u32;
    let cuts = entry["cuts"].as_array().cloned().unwrap_or_default();
    if new_name.is_some() && !cuts.is_empty() {
        let links: Vec<String> = cuts
            .iter()
            .filter_map(|c| c["what"].as_str().map(str::to_string))
            .collect();
        super::super::raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            policy::new_name_with_links(id32, object, &links),
        );
    }
    let rels = entry["relations"].as_array().cloned().unwrap_or_default();
    let oid_of = |r: &Value| pg_sys::Oid::from(r["oid"].as_u64().unwrap_or(0) as u32);
    let said = privileged::run(|| {
        for r in &rels {
            // SAFETY: a catalog lookup.
            if unsafe { pg_sys::get_rel_name(oid_of(r)) }.is_null() {
                pgrx::error!(
                    "recycle bin entry {id} cannot be restored: {} is no longer in the recycle bin",
                    original(r)
                );
            }
        }
        let mut back = Vec::new();
        let mut new_name = new_name;
        if let Some(s) = entry["schema"].as_object() {
            let name = new_name.take().unwrap_or(s["name"].as_str().unwrap_or(""));
            if schema_exists(name) {
                super::super::raise(
                    PgSqlErrorCode::ERRCODE_DUPLICATE_SCHEMA,
                    policy::name_taken(id32, "schema", &pg::quote_ident(name)),
                );
            }
            let q = pg::quote_ident(name);
            run(&format!(
                "ALTER SCHEMA {} RENAME TO {q}",
                pg::quote_ident(s["kept"].as_str().unwrap_or(""))
            ));
            let owner = s["owner"].as_str().unwrap_or("");
            if super::super::database::role_exists(owner) {
                run(&format!(
                    "ALTER SCHEMA {q} OWNER TO {}",
                    pg::quote_ident(owner)
                ));
            }
            for a in s["acl"].as_array().into_iter().flatten() {
                let (Some(p), Some(g)) = (a["privilege"].as_str(), a["grantee"].as_str()) else {
                    continue;
                };
                let option = if a["grantable"].as_bool() == Some(true) {
                    " WITH GRANT OPTION"
                } else {
                    ""
                };
                run(&format!("GRANT {p} ON SCHEMA {q} TO {g}{option}"));
            }
            back.push(format!("schema {q}"));
        }
        // The moved relations' names: the first named one may take
        // new_name; an index or sequence whose name was taken since gets a
        // suffix.
        let mut plan = Vec::new();
        for r in rels.iter().filter(|r| r["moves"].as_bool() == Some(true)) {
            let schema = r["schema"].as_str().unwrap_or("").to_string();
            let orig = r["name"].as_str().unwrap_or("").to_string();
            if !schema_exists(&schema) {
                super::super::raise(
                    PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
                    policy::schema_gone(id32, &original(r), &schema),
                );
            }
            let top = r["top"].as_bool() == Some(true);
            let name = if top {
                let wanted = if r["named"].as_bool() == Some(true) {
                    new_name.take().map(str::to_string).unwrap_or(orig)
                } else {
                    orig
                };
                if !free(&schema, &wanted) {
                    super::super::raise(
                        PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
                        policy::name_taken(
                            id32,
                            &alter_word(r["relkind"].as_str().unwrap_or("r")).to_lowercase(),
                            &format!("{}.{}", pg::quote_ident(&schema), pg::quote_ident(&wanted)),
                        ),
                    );
                }
                wanted
            } else if free(&schema, &orig) {
                orig
            } else {
                policy::suffixed_name(&orig, id32)
            };
            plan.push((r, schema, name));
        }
        for (r, _, name) in &plan {
            run(&format!(
                "ALTER {} {} RENAME TO {}",
                alter_word(r["relkind"].as_str().unwrap_or("r")),
                pg::relation_display(oid_of(r)),
                pg::quote_ident(name)
            ));
        }
        for (r, schema, _) in plan
            .iter()
            .filter(|(r, _, _)| r["top"].as_bool() == Some(true))
        {
            run(&format!(
                "ALTER {} {} SET SCHEMA {}",
                alter_word(r["relkind"].as_str().unwrap_or("r")),
                pg::relation_display(oid_of(r)),
                pg::quote_ident(schema)
            ));
        }
        for (r, s, name) in &plan {
            if r["top"].as_bool() == Some(true) {
                back.push(format!("{}.{}", pg::quote_ident(s), pg::quote_ident(name)));
            }
        }
        // Their grants again (a relation with default privileges gets its
        // owner's, the same thing); a grantee dropped since is skipped.
        for r in rels.iter().filter(|r| r["relkind"].as_str() != Some("i")) {
            let word = grant_word(r["relkind"].as_str().unwrap_or("r"));
            let rel = pg::relation_display(oid_of(r));
            let owner = pg::quote_ident(r["owner"].as_str().unwrap_or(""));
            let mut grants: Vec<(String, String, bool, Option<String>)> = Vec::new();
            match r["acl"].as_array() {
                None => grants.push(("ALL".into(), owner.clone(), false, None)),
                Some(acl) => {
                    for a in acl {
                        grants.push((
                            a["privilege"].as_str().unwrap_or("").into(),
                            a["grantee"].as_str().unwrap_or("").into(),
                            a["grantable"].as_bool() == Some(true),
                            None,
                        ));
                    }
                }
            }
            for a in r["column_acl"].as_array().into_iter().flatten() {
                grants.push((
                    a["privilege"].as_str().unwrap_or("").into(),
                    a["grantee"].as_str().unwrap_or("").into(),
                    a["grantable"].as_bool() == Some(true),
                    a["column"].as_str().map(pg::quote_ident),
                ));
            }
            for (privilege, grantee, grantable, column) in grants {
                let exists = grantee == "PUBLIC"
                    || Spi::get_one_with_args::<bool>(
                        "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE pg_catalog.quote_ident(rolname) = $1)",
                        &[grantee.as_str().into()],
                    )
                    .ok()
                    .flatten()
                    .unwrap_or(false);
                if !exists {
                    continue;
                }
                run(&format!(
                    "GRANT {privilege}{} ON {word} {rel} TO {grantee}{}",
                    column.map(|c| format!(" ({c})")).unwrap_or_default(),
                    if grantable { " WITH GRANT OPTION" } else { "" }
                ));
            }
        }
        // The links, made again; a constraint NOT VALID for now (checking
        // rows here would run its table's code as the bootstrap superuser).
        // A link whose table that stayed is gone since cannot be: said.
        let mut gone = Vec::new();
        for c in &cuts {
            let target = c["target"].as_u64().map(|t| pg_sys::Oid::from(t as u32));
            // SAFETY: a catalog lookup.
            if target.is_some_and(|t| unsafe { pg_sys::get_rel_name(t) }.is_null()) {
                gone.push(c["what"].as_str().unwrap_or("?").to_string());
                continue;
            }
            if let Some(redo) = c["redo"].as_str() {
                run(redo);
            }
        }
        let mut said = back.join(", ");
        if !gone.is_empty() {
            said.push_str(&format!(
                "; not remade, their tables are gone: {}",
                gone.join(", ")
            ));
        }
        said
    });
    // Validated as its table's owner, restricted, outside the extension's
    // own rights: a row that breaks it refuses the whole restore, in
    // PostgreSQL's words (which row, which constraint).
    let mut unvalidated = Vec::new();
    for c in &cuts {
        if let (Some(validate), Some(owner)) = (c["validate"].as_str(), c["validate_as"].as_u64()) {
            // The table's owner now. A CHECK of a superuser's table would
            // run its expression with a superuser's rights: it stays NOT
            // VALID, said (a foreign key's check runs no table code).
            let target = c["target"].as_u64().map(|t| pg_sys::Oid::from(t as u32));
            let owner = target
                .and_then(|t| {
                    privileged::run(|| {
                        Spi::get_one_with_args::<pg_sys::Oid>(
                            "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1",
                            &[t.into()],
                        )
                        .ok()
                        .flatten()
                    })
                })
                .unwrap_or(pg_sys::Oid::from(owner as u32));
            // SAFETY: a catalog lookup by oid.
            if c["contype"].as_str() != Some("f") && unsafe { pg_sys::superuser_arg(owner) } {
                unvalidated.push(c["what"].as_str().unwrap_or("?").to_string());
                continue;
            }
            super::super::rows::as_owner(owner, || {
                Spi::run(validate).unwrap_or_else(|e| pgrx::error!("ai_agent_safety: {e}"))
            });
        }
    }
    let said = if unvalidated.is_empty() {
        said
    } else {
        format!(
            "{said}; left NOT VALID (their tables are a superuser's: a DBA validates them): {}",
            unvalidated.join(", ")
        )
    };
    super::super::entries::forget(id);
    format!(
        "{} restored {kind} {object} (recycle bin entry {id}) as {said}",
        pg::session_user_name()
    )
}

/// Drops a kept DROP's objects for good (purge or expiry); refused (the
/// entry stays) when that would remove anything the bin does not hold.
pub fn drop_for_good(entry: &Value) -> Result<(), String> {
    // Everything in the bin's places; of relations, only the entry's own:
    // those it kept, and those in its kept schema.
    let places = super::super::entries::kept_schemas();
    let own: Vec<u32> = entry["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["oid"].as_u64().map(|o| o as u32))
        .collect();
    let own_places: Vec<u32> = entry["schema"]["kept"]
        .as_str()
        .and_then(|kept| std::ffi::CString::new(kept).ok())
        // SAFETY: a catalog lookup by name (missing_ok).
        .map(|c| unsafe { pg_sys::get_namespace_oid(c.as_ptr(), true) }.to_u32())
        .into_iter()
        .collect();
    let sql = privileged::run(|| {
        if let Some(kept) = entry["schema"]["kept"].as_str() {
            return schema_exists(kept)
                .then(|| format!("DROP SCHEMA {} CASCADE", pg::quote_ident(kept)));
        }
        let bin = super::super::entries::bin_schema();
        let mut stmts = Vec::new();
        for r in entry["relations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["top"].as_bool() == Some(true))
        {
            let oid = pg_sys::Oid::from(r["oid"].as_u64().unwrap_or(0) as u32);
            // SAFETY: catalog lookups: still there, still in the bin, still
            // under the name it was kept as.
            let still = unsafe {
                !pg_sys::get_rel_name(oid).is_null()
                    && Some(pg_sys::get_rel_namespace(oid)) == bin
                    && pg::cstr(pg_sys::get_rel_name(oid)) == r["kept"].as_str().unwrap_or("")
            };
            if still {
                stmts.push(format!(
                    "DROP {} IF EXISTS {} CASCADE",
                    alter_word(r["relkind"].as_str().unwrap_or("r")),
                    pg::relation_display(oid)
                ));
            }
        }
        (!stmts.is_empty()).then(|| stmts.join("; "))
    });
    match sql {
        Some(sql) => super::trial::drop_checked(&sql, &places, &own, &own_places),
        None => Ok(()),
    }
}
