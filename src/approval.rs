//! Approval tokens, hook side: read the presented token and consume it.
//!
//! The SQL API (request, grant, deny, cancel, status, views) is in
//! sql/approval.sql. Here the guard looks a token up (a SELECT: no transaction id)
//! and, when the decision allows it, consumes it with an UPDATE in the agent's
//! own transaction: a statement that fails or rolls back leaves the token usable,
//! and concurrent sessions presenting one token serialize on its row lock, so
//! exactly one of them gets it.

use crate::{dbfacts, pg, privileged};
use aas_policy::row_cap::{Changes, Limits};
use aas_policy::{ObjectRef, OpClass, TokenFacts, TokenPresented, TokenState, TokenUse};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use uuid::Uuid;

/// Reads the presented token's row.
pub fn lookup(raw: &str) -> TokenPresented {
    let Some(id) = aas_policy::parse_token_id(raw) else {
        return TokenPresented::Malformed(raw.to_string());
    };
    if !pg::extension_created() {
        return TokenPresented::Unavailable(format!(
            "the ai_agent_safety extension is not created in database \"{}\"",
            dbfacts::current_database_name()
        ));
    }
    if let Err(why) = pg::sql_objects_served() {
        return TokenPresented::NotServed(why);
    }
    let row = privileged::run(|| {
        Spi::connect(|c| {
            let t = c.select(
                "SELECT state, requested_by::text, decided_by::text, operation, \
                        target_classid, target_objid, target_text, expires_at, \
                        pg_catalog.to_char(expires_at, 'YYYY-MM-DD HH24:MI:SS.US TZ'), \
                        pg_catalog.to_char(used_at, 'YYYY-MM-DD HH24:MI:SS.US TZ'), used_by_pid, verb, \
                        statement, statement_form \
                 FROM ai_agent_safety.tokens WHERE id = $1::uuid",
                Some(1),
                &[id.to_string().into()],
            )?;
            if t.is_empty() {
                return Ok::<_, pgrx::spi::Error>(None);
            }
            let r = t.first();
            let state: String = r.get(1)?.unwrap_or_default();
            let requested_by: String = r.get(2)?.unwrap_or_default();
            let decided_by: Option<String> = r.get(3)?;
            let operation: String = r.get(4)?.unwrap_or_default();
            let classid: Option<pg_sys::Oid> = r.get(5)?;
            let objid: Option<pg_sys::Oid> = r.get(6)?;
            let target_text: Option<String> = r.get(7)?;
            let expires: Option<TimestampWithTimeZone> = r.get(8)?;
            let expires_text: Option<String> = r.get(9)?;
            let used_at: Option<String> = r.get(10)?;
            let used_pid: Option<i32> = r.get(11)?;
            let verb: Option<String> = r.get(12)?;
            let statement: Option<String> = r.get(13)?;
            let statement_form: Option<String> = r.get(14)?;
            let bound = statement.zip(statement_form);
            Ok(Some((
                state,
                requested_by,
                decided_by,
                operation,
                classid,
                objid,
                target_text,
                expires,
                expires_text,
                used_at,
                used_pid,
                verb,
                bound,
            )))
        })
    });
    match row {
        Err(e) => TokenPresented::Unavailable(format!("reading the tokens table failed: {e}")),
        Ok(None) => TokenPresented::NotFound(id),
        Ok(Some((
            state,
            requested_by,
            decided_by,
            operation,
            classid,
            objid,
            target_text,
            expires,
            expires_text,
            used_at,
            used_pid,
            verb,
            bound,
        ))) => {
            let (Some(state), Some(operation)) =
                (TokenState::parse(&state), OpClass::parse(&operation))
            else {
                return TokenPresented::Unavailable(format!(
                    "token {id} has an unreadable state or operation"
                ));
            };
            let target = match (classid, objid) {
                (Some(c), Some(o)) => Some(ObjectRef {
                    classid: c.to_u32(),
                    objid: o.to_u32(),
                    display: target_text.unwrap_or_default(),
                }),
                _ => None,
            };
            TokenPresented::Found(TokenFacts {
                id,
                state,
                requested_by,
                decided_by,
                operation,
                target,
                verb,
                expires_at_us: expires.map(|t| t.into_inner()),
                expires_at_text: expires_text.unwrap_or_default(),
                used: used_at.map(|at| TokenUse {
                    at,
                    pid: used_pid.unwrap_or(0),
                }),
                bound: bound.map(|(approved, approved_form)| aas_policy::BoundStatement {
                    approved,
                    approved_form,
                    presented: String::new(),
                    presented_form: None,
                }),
            })
        }
    }
}

/// Marks the token used by this statement, in the current transaction;
/// `Ok(Some(limits))` with what the token lets it change (its max_rows, and
/// per table what its preview counted). `Ok(None)` when another session
/// got it first (or it changed meanwhile); `Err` when the update failed.
/// The limits are read through the row's JSON form: SQL objects of 0.1.0,
/// which this library still serves, have neither column.
pub fn consume(id: Uuid, statement: &str) -> Result<Option<Limits>, pgrx::spi::Error> {
    let stmt: String = statement.chars().take(4000).collect();
    privileged::run(|| {
        Spi::connect_mut(|c| {
            let t = c.update(
                "UPDATE ai_agent_safety.tokens \
                    SET used_at = pg_catalog.clock_timestamp(), used_by_pid = pg_catalog.pg_backend_pid(), \
                        used_statement = $2 \
                  WHERE id = $1::uuid AND state = 'granted' AND used_at IS NULL \
                    AND expires_at > pg_catalog.clock_timestamp() \
                  RETURNING (pg_catalog.to_jsonb(tokens.*) OPERATOR(pg_catalog.->>) 'max_rows')::pg_catalog.int8, \
                            pg_catalog.to_jsonb(tokens.*) OPERATOR(pg_catalog.->>) 'preview', \
                            operation",
                None,
                &[id.to_string().into(), stmt.clone().into()],
            )?;
            if t.len() != 1 {
                return Ok::<_, pgrx::spi::Error>(None);
            }
            let r = t.first();
            let max_rows = r.get::<i64>(1)?;
            let preview = r.get::<String>(2)?;
            let operation = r.get::<String>(3)?.unwrap_or_default();
            let per_table = preview
                .filter(|_| matches!(operation.as_str(), "DELETE" | "UPDATE"))
                .map(|p| previewed_rows(&p));
            Ok(Some(Limits {
                max_rows,
                per_table,
            }))
        })
    })
}

/// The rows per table a stored preview counted, by kind: its entries'
/// relid and `deleted`, `updated`, `inserted` (a kind left out: none). An
/// entry that does not read as such allows nothing.
fn previewed_rows(preview: &str) -> Vec<(u32, Changes)> {
    let v: serde_json::Value = serde_json::from_str(preview).unwrap_or_default();
    let kind = |e: &serde_json::Value, k: &str| e.get(k).and_then(|n| n.as_i64()).unwrap_or(0);
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        u32::try_from(e.get("relid")?.as_u64()?).ok()?,
                        Changes {
                            inserted: kind(e, "inserted"),
                            updated: kind(e, "updated"),
                            deleted: kind(e, "deleted"),
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The granted, unused, unexpired tokens `role` requested in this database (the newest first, at most a few): when an agent presents no
/// token, the guard asks whether one of them would have allowed the
/// statement, to say that its SET was lost.
pub fn held_by(role: &str) -> Vec<String> {
    let r = privileged::run(|| {
        Spi::connect(|c| {
            let rows = c.select(
                "SELECT id::text FROM ai_agent_safety.tokens \
                  WHERE requested_by = $1 AND state = 'granted' AND used_at IS NULL \
                    AND expires_at > pg_catalog.clock_timestamp() \
                  ORDER BY decided_at DESC LIMIT 5",
                None,
                &[role.into()],
            )?;
            let mut out = Vec::new();
            for r in rows {
                if let Some(id) = r.get::<String>(1)? {
                    out.push(id);
                }
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    });
    r.unwrap_or_default()
}
