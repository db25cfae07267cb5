//! What each tool does in the database, as the agent's role. The tools in
//! `server.rs` only turn these results into MCP results.

use crate::errors::{sqlstate, Failure};
use crate::pg::{rollback_quietly, run_one, Db, Outcome};
use serde_json::{json, Map, Value};
use tokio_postgres::Client;

/// SQLSTATE 25001: the statement cannot run inside a transaction block
/// (DROP DATABASE, VACUUM, CREATE INDEX CONCURRENTLY, ...).
const ACTIVE_SQL_TRANSACTION: &str = "25001";

/// `query`: one statement inside `BEGIN READ ONLY` ... `ROLLBACK`.
pub async fn query(db: &Db, sql: &str) -> Result<Value, Failure> {
    let client = db.connect().await?;
    client.batch_execute("BEGIN READ ONLY").await?;
    let result = run_one(&client, sql).await;
    rollback_quietly(&client).await;
    Ok(result?.to_json(false))
}

/// `execute`: one statement in its own transaction.
pub async fn execute(db: &Db, sql: &str) -> Result<Value, Failure> {
    let client = db.connect().await?;
    let (outcome, in_block) = in_own_transaction(&client, sql, None).await?;
    Ok(with_note(outcome.to_json(true), in_block))
}

/// `execute_approved`: the token, set with `set_config(..., true)`, and the
/// statement in one transaction, so the token lasts exactly that transaction
/// whatever pooling sits between this server and PostgreSQL.
pub async fn execute_approved(db: &Db, token: &str, sql: &str) -> Result<Value, Failure> {
    let client = db.connect().await?;
    let (outcome, in_block) = in_own_transaction(&client, sql, Some(token)).await?;
    let mut out = with_note(outcome.to_json(true), in_block);
    if let Value::Object(m) = &mut out {
        m.insert("token".into(), json!(token));
    }
    Ok(out)
}

/// Runs `sql` between BEGIN and COMMIT, presenting `token` for that
/// transaction only. A statement that cannot run inside a transaction block
/// runs again alone (on this connection, which no one else uses and which
/// closes after the call), with the token set for the session and reset
/// after it. Returns the outcome and whether it ran in the block.
async fn in_own_transaction(
    client: &Client,
    sql: &str,
    token: Option<&str>,
) -> Result<(Outcome, bool), Failure> {
    client.batch_execute("BEGIN").await?;
    let attempt = async {
        if let Some(t) = token {
            present_token(client, t, true).await?;
        }
        let outcome = run_one(client, sql).await?;
        client.batch_execute("COMMIT").await?;
        Ok::<_, Failure>(outcome)
    }
    .await;
    match attempt {
        Ok(outcome) => Ok((outcome, true)),
        Err(e) if sqlstate(&e) == Some(ACTIVE_SQL_TRANSACTION) => {
            rollback_quietly(client).await;
            crate::log("the statement cannot run inside a transaction block: running it alone");
            if let Some(t) = token {
                present_token(client, t, false).await?;
            }
            let result = run_one(client, sql).await;
            if token.is_some() {
                // Best effort: the connection closes after this call anyway.
                let _ = client
                    .batch_execute("RESET ai_agent_safety.approval_token")
                    .await;
            }
            Ok((result?, false))
        }
        Err(e) => {
            rollback_quietly(client).await;
            Err(e)
        }
    }
}

async fn present_token(client: &Client, token: &str, local: bool) -> Result<(), Failure> {
    client
        .query_one(
            "SELECT set_config('ai_agent_safety.approval_token', $1, $2)",
            &[&token, &local],
        )
        .await?;
    Ok(())
}

fn with_note(mut out: Value, in_block: bool) -> Value {
    if !in_block {
        if let Value::Object(m) = &mut out {
            m.insert(
                "note".into(),
                json!("the statement cannot run inside a transaction block, so it ran on its own"),
            );
        }
    }
    out
}

/// Arguments of `request_approval`.
pub struct Request<'a> {
    pub operation: &'a str,
    pub task_id: &'a str,
    pub target: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub verb: Option<&'a str>,
    pub statement: &'a str,
}

/// `request_approval`: asks for a token, then previews the statement with
/// EXPLAIN (never running it).
pub async fn request_approval(db: &Db, r: &Request<'_>) -> Result<Value, Failure> {
    if r.statement.trim().is_empty() {
        return Err(Failure::Usage(
            "statement is required: the exact SQL you want to run once approved".into(),
        ));
    }
    let client = db.connect().await?;
    // The token is bound to the statement when the extension can bind it
    // (one DELETE, UPDATE, TRUNCATE, DROP or ALTER TABLE): the approver then
    // approves exactly this statement. Other forms are requested unbound.
    let bound_request = client
        .query_one(
            "SELECT ai_agent_safety.request_approval_token($1::text, $2::text, $3::text, $4::text, \
                    statement => $5::text, verb => $6::text)::text",
            &[&r.operation, &r.task_id, &r.target, &r.reason, &r.statement, &r.verb],
        )
        .await;
    let (token, bound): (String, bool) = match bound_request {
        Ok(row) => (row.get(0), true),
        Err(e)
            if e.as_db_error().is_some_and(|d| {
                d.message()
                    .starts_with("the statement cannot be approved as given")
            }) =>
        {
            let row = client
                .query_one(
                    "SELECT ai_agent_safety.request_approval_token($1::text, $2::text, $3::text, $4::text, \
                            verb => $5::text)::text",
                    &[&r.operation, &r.task_id, &r.target, &r.reason, &r.verb],
                )
                .await?;
            (row.get(0), false)
        }
        Err(e) => return Err(e.into()),
    };
    let status: String = client
        .query_one(
            "SELECT status FROM ai_agent_safety.approval_token_status($1::text::uuid)",
            &[&token],
        )
        .await?
        .get(0);
    let preview = preview(&client, r.statement).await;
    crate::log(&format!("request_approval: token {token} ({status})"));
    Ok(json!({
        "token": token,
        "status": status,
        "bound_to_statement": bound,
        "preview": preview,
        "next_step": format!(
            "A human approver must now decide. Call wait_for_decision with token {token}; \
             once it is granted, call execute_approved with the token and this same statement."
        ),
    }))
}

/// What EXPLAIN (FORMAT JSON) says about `statement`, read-only and without
/// running it; the error text when EXPLAIN fails (for example for DROP or
/// TRUNCATE, which EXPLAIN does not take).
pub async fn preview(client: &Client, statement: &str) -> Value {
    let explain = format!("EXPLAIN (FORMAT JSON) {statement}");
    let result = async {
        client.batch_execute("BEGIN READ ONLY").await?;
        // The extended protocol: one statement only, so nothing can follow it.
        let row = client.query_one(explain.as_str(), &[]).await?;
        Ok::<Value, Failure>(row.get(0))
    }
    .await;
    rollback_quietly(client).await;
    match result {
        Ok(plan) => summarize_plan(&plan),
        Err(e) => {
            let err = crate::errors::to_json(&e);
            json!({
                "error": err["message"],
                "sqlstate": err["sqlstate"],
                "note": "EXPLAIN could not plan this statement; the request was made all the same",
            })
        }
    }
}

/// The top plan node of `EXPLAIN (FORMAT JSON)` output: its type and Plan
/// Rows. A write's top node (ModifyTable) estimates no rows of its own
/// without RETURNING, so `estimated_rows` is then its input's estimate: the
/// rows it would write.
pub fn summarize_plan(explain: &Value) -> Value {
    let Some(top) = explain.get(0).and_then(|p| p.get("Plan")) else {
        return json!({ "error": "EXPLAIN returned no plan" });
    };
    let mut out = Map::new();
    let node_type = top.get("Node Type").cloned().unwrap_or(Value::Null);
    out.insert("node_type".into(), node_type.clone());
    let top_rows = top.get("Plan Rows").cloned().unwrap_or(Value::Null);
    let mut estimated = top_rows.clone();
    if node_type == "ModifyTable" {
        for key in ["Operation", "Relation Name", "Alias"] {
            if let Some(v) = top.get(key) {
                let name = key.to_lowercase().replace(' ', "_");
                out.insert(name, v.clone());
            }
        }
        if let Some(child_rows) = top
            .get("Plans")
            .and_then(|p| p.get(0))
            .and_then(|c| c.get("Plan Rows"))
        {
            estimated = child_rows.clone();
        }
    } else if let Some(rel) = top.get("Relation Name") {
        out.insert("relation_name".into(), rel.clone());
    }
    out.insert("estimated_rows".into(), estimated);
    out.insert("plan_rows".into(), top_rows);
    if let Some(cost) = top.get("Total Cost") {
        out.insert("total_cost".into(), cost.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_estimates_its_inputs_rows() {
        let plan = json!([{"Plan": {
            "Node Type": "ModifyTable", "Operation": "Delete", "Relation Name": "orders",
            "Alias": "orders", "Plan Rows": 0, "Total Cost": 8.17,
            "Plans": [{"Node Type": "Index Scan", "Plan Rows": 1}]
        }}]);
        let s = summarize_plan(&plan);
        assert_eq!(s["node_type"], "ModifyTable");
        assert_eq!(s["operation"], "Delete");
        assert_eq!(s["relation_name"], "orders");
        assert_eq!(s["estimated_rows"], 1);
        assert_eq!(s["plan_rows"], 0);
    }

    #[test]
    fn a_select_estimates_its_top_node() {
        let plan =
            json!([{"Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Plan Rows": 42}}]);
        let s = summarize_plan(&plan);
        assert_eq!(s["estimated_rows"], 42);
        assert_eq!(s["relation_name"], "t");
        assert_eq!(
            summarize_plan(&json!([]))["error"],
            "EXPLAIN returned no plan"
        );
    }
}
