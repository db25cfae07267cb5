//! The SQL the console runs, always as the signed-in person (or the watch
//! role), through the extension's approver API and views. Times are
//! formatted by the server, in UTC.

use crate::db::DbError;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

const UTC: &str = "'YYYY-MM-DD HH24:MI:SS \"UTC\"'";

/// One pending request, from ai_agent_safety.pending_requests.
#[derive(Debug, Clone)]
pub struct Pending {
    pub token: Uuid,
    pub requested_by: String,
    pub requested_at: String,
    pub waiting: String,
    pub operation: String,
    pub verb: Option<String>,
    pub target: String,
    pub target_oid: Option<String>,
    pub target_owner: Option<String>,
    pub target_size: Option<String>,
    pub target_estimated_rows: Option<i64>,
    pub target_earlier_names: Vec<String>,
    pub task_id: String,
    pub reason: Option<String>,
    pub would_allow: String,
    pub token_ttl: String,
    /// The one statement the token is bound to, when the request carried it.
    pub statement: Option<String>,
    /// Its preview (what the dry run changed, or what a TRUNCATE or DROP
    /// would remove), its total, and the row cap a grant keeps.
    pub preview: Vec<PreviewEntry>,
    pub preview_rows: Option<i64>,
    pub max_rows: Option<i64>,
}

/// One entry of a request's preview: a table and the rows it would lose or
/// change, or an object a CASCADE would drop.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PreviewEntry {
    pub table: Option<String>,
    pub object: Option<String>,
    pub rows: Option<i64>,
    pub deleted: Option<i64>,
    pub updated: Option<i64>,
    pub inserted: Option<i64>,
    #[serde(default)]
    pub estimated: bool,
    pub via: Option<String>,
}

fn pending_sql(filter: &str) -> String {
    format!(
        "SELECT token, requested_by::text, to_char(requested_at AT TIME ZONE 'UTC', {UTC}),
                waiting::text, operation, verb, target, target_oid::text, target_owner::text,
                target_size, target_estimated_rows, COALESCE(target_earlier_names, '{{}}'),
                task_id, reason, would_allow, current_setting('ai_agent_safety.token_ttl'), statement,
                preview::text, preview_rows, max_rows
           FROM ai_agent_safety.pending_requests {filter}"
    )
}

fn pending_row(r: &Row) -> Pending {
    Pending {
        token: r.get(0),
        requested_by: r.get(1),
        requested_at: r.get(2),
        waiting: r.get(3),
        operation: r.get(4),
        verb: r.get(5),
        target: r.get(6),
        target_oid: r.get(7),
        target_owner: r.get(8),
        target_size: r.get(9),
        target_estimated_rows: r.get(10),
        target_earlier_names: r.get(11),
        task_id: r.get(12),
        reason: r.get(13),
        would_allow: r.get(14),
        token_ttl: r.get(15),
        statement: r.get(16),
        preview: r
            .get::<_, Option<String>>(17)
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default(),
        preview_rows: r.get(18),
        max_rows: r.get(19),
    }
}

pub async fn pending(c: &Client) -> Result<Vec<Pending>, DbError> {
    let rows = c.query(&pending_sql("ORDER BY requested_at"), &[]).await?;
    Ok(rows.iter().map(pending_row).collect())
}

pub async fn pending_one(c: &Client, token: Uuid) -> Result<Option<Pending>, DbError> {
    let row = c
        .query_opt(&pending_sql("WHERE token = $1"), &[&token])
        .await?;
    Ok(row.as_ref().map(pending_row))
}

/// A token's whole history, from ai_agent_safety.approval_tokens.
#[derive(Debug, Clone)]
pub struct TokenState {
    pub status: String,
    pub requested_by: String,
    pub requested_at: String,
    pub operation: String,
    pub verb: Option<String>,
    pub target: String,
    pub task_id: String,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    pub expires_at: Option<String>,
    pub used_at: Option<String>,
    pub used_statement: Option<String>,
}

pub async fn token_state(c: &Client, token: Uuid) -> Result<Option<TokenState>, DbError> {
    let sql = format!(
        "SELECT status, requested_by::text, to_char(requested_at AT TIME ZONE 'UTC', {UTC}),
                operation, verb, target, task_id, reason, decided_by::text,
                to_char(decided_at AT TIME ZONE 'UTC', {UTC}), comment,
                to_char(expires_at AT TIME ZONE 'UTC', {UTC}),
                to_char(used_at AT TIME ZONE 'UTC', {UTC}), used_statement
           FROM ai_agent_safety.approval_tokens WHERE token = $1"
    );
    let row = c.query_opt(&sql, &[&token]).await?;
    Ok(row.map(|r| TokenState {
        status: r.get(0),
        requested_by: r.get(1),
        requested_at: r.get(2),
        operation: r.get(3),
        verb: r.get(4),
        target: r.get(5),
        task_id: r.get(6),
        reason: r.get(7),
        decided_by: r.get(8),
        decided_at: r.get(9),
        comment: r.get(10),
        expires_at: r.get(11),
        used_at: r.get(12),
        used_statement: r.get(13),
    }))
}

/// Grants, with a row cap when one is given (it may only lower the
/// request's); returns when the token expires.
pub async fn grant(
    c: &Client,
    token: Uuid,
    comment: Option<&str>,
    max_rows: Option<i64>,
) -> Result<String, DbError> {
    let sql = format!(
        "SELECT to_char(ai_agent_safety.grant_approval_token($1::uuid, $2::text, max_rows => $3::bigint) AT TIME ZONE 'UTC', {UTC})"
    );
    let row = c.query_one(&sql, &[&token, &comment, &max_rows]).await?;
    Ok(row.get(0))
}

pub async fn deny(c: &Client, token: Uuid, reason: &str) -> Result<(), DbError> {
    c.execute(
        "SELECT ai_agent_safety.deny_approval_token($1::uuid, $2::text)",
        &[&token, &reason],
    )
    .await?;
    Ok(())
}

/// The requester's latest refused statement for this operation (for
/// notifications with --webhook-include-statement only).
pub async fn last_refused_statement(
    c: &Client,
    requester: &str,
    operation: &str,
) -> Result<Option<String>, DbError> {
    let row = c
        .query_opt(
            "SELECT statement FROM ai_agent_safety.audit_log_since(now() - interval '1 hour')
              WHERE session_user_name = $1::text::name AND operation = $2
                AND decision IN ('refuse', 'would_refuse') AND statement IS NOT NULL
              ORDER BY id DESC LIMIT 1",
            &[&requester, &operation],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Filters of the audit log page; empty means no filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub agent: String,
    pub task: String,
    pub decision: String,
    pub source: String,
    pub since: String,
    pub until: String,
    /// Show events with an id below this (the next page).
    pub before: Option<i64>,
}

fn opt(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub id: i64,
    pub ts: String,
    pub agent: Option<String>,
    pub task_id: Option<String>,
    pub source: String,
    pub event: String,
    pub decision: String,
    pub operation: Option<String>,
    pub object: Option<String>,
    pub statement: Option<String>,
    pub reason: Option<String>,
    pub token: Option<Uuid>,
}

pub const AUDIT_PAGE: i64 = 50;

/// One page of events, newest first; the bool says whether older ones match.
pub async fn audit(c: &Client, f: &AuditFilter) -> Result<(Vec<AuditEvent>, bool), DbError> {
    let sql = format!(
        "SELECT id, to_char(ts AT TIME ZONE 'UTC', {UTC}), session_user_name::text, task_id, source,
                event, decision, operation, object, statement, reason, token
           FROM ai_agent_safety.audit_log_since(coalesce($5::text::timestamptz, '-infinity'))
          WHERE ($1::text IS NULL OR session_user_name = $1::text::name)
            AND ($2::text IS NULL OR task_id = $2)
            AND ($3::text IS NULL OR decision = $3)
            AND ($4::text IS NULL OR source = $4)
            AND ($5::text IS NULL OR ts >= $5::timestamptz)
            AND ($6::text IS NULL OR ts < $6::timestamptz)
            AND ($7::bigint IS NULL OR id < $7)
          ORDER BY id DESC LIMIT $8"
    );
    let rows = c
        .query(
            &sql,
            &[
                &opt(&f.agent),
                &opt(&f.task),
                &opt(&f.decision),
                &opt(&f.source),
                &opt(&f.since),
                &opt(&f.until),
                &f.before,
                &(AUDIT_PAGE + 1),
            ],
        )
        .await?;
    let more = rows.len() as i64 > AUDIT_PAGE;
    let events = rows
        .iter()
        .take(AUDIT_PAGE as usize)
        .map(|r| AuditEvent {
            id: r.get(0),
            ts: r.get(1),
            agent: r.get(2),
            task_id: r.get(3),
            source: r.get(4),
            event: r.get(5),
            decision: r.get(6),
            operation: r.get(7),
            object: r.get(8),
            statement: r.get(9),
            reason: r.get(10),
            token: r.get(11),
        })
        .collect();
    Ok((events, more))
}

/// One agent role, from credential_report and agent_activity.
#[derive(Debug, Clone)]
pub struct Agent {
    pub role: String,
    pub can_login: bool,
    pub valid_until: Option<String>,
    pub time_remaining: Option<String>,
    pub open_sessions: i64,
    pub allowed_environments: Vec<String>,
    pub problems: Vec<String>,
    pub last_seen: Option<String>,
    pub refusals: i64,
    pub tokens_used: i64,
}

pub async fn agents(c: &Client) -> Result<Vec<Agent>, DbError> {
    let sql = format!(
        "SELECT r.role::text, r.can_login, to_char(r.valid_until AT TIME ZONE 'UTC', {UTC}),
                date_trunc('second', r.time_remaining)::text, r.open_sessions,
                COALESCE(r.allowed_environments, '{{}}'), r.problems,
                to_char(a.last_seen AT TIME ZONE 'UTC', {UTC}),
                COALESCE(a.refusals, 0), COALESCE(a.tokens_used, 0)
           FROM ai_agent_safety.credential_report r
           LEFT JOIN ai_agent_safety.agent_activity a ON a.role = r.role
          ORDER BY r.role"
    );
    let rows = c.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| Agent {
            role: r.get(0),
            can_login: r.get(1),
            valid_until: r.get(2),
            time_remaining: r.get(3),
            open_sessions: r.get(4),
            allowed_environments: r.get(5),
            problems: r.get(6),
            last_seen: r.get(7),
            refusals: r.get(8),
            tokens_used: r.get(9),
        })
        .collect())
}

/// Revokes an agent's credentials; returns how many sessions ended.
pub async fn revoke(c: &Client, role: &str) -> Result<i32, DbError> {
    let row = c
        .query_one(
            "SELECT ai_agent_safety.revoke_agent_credentials($1::text::name)",
            &[&role],
        )
        .await?;
    Ok(row.get(0))
}

/// One prepared review, from ai_agent_safety.pending_reviews.
#[derive(Debug, Clone)]
pub struct Review {
    pub gid: String,
    pub requested_by: String,
    pub task_id: String,
    pub reason: Option<String>,
    pub prepared: String,
    pub expires_at: String,
    pub rows: i64,
    /// Per statement: its text, rows, and tables (as in a preview).
    pub statements: Vec<ReviewedStatement>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ReviewedStatement {
    pub statement: String,
    #[serde(default)]
    pub rows: i64,
    #[serde(default)]
    pub tables: Vec<PreviewEntry>,
}

pub async fn reviews(c: &Client) -> Result<Vec<Review>, DbError> {
    let sql = format!(
        "SELECT gid, requested_by, task_id, reason, to_char(prepared AT TIME ZONE 'UTC', {UTC}),
                to_char(expires_at AT TIME ZONE 'UTC', {UTC}), rows, statements::text
           FROM ai_agent_safety.pending_reviews ORDER BY prepared"
    );
    let rows = c.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| Review {
            gid: r.get(0),
            requested_by: r.get(1),
            task_id: r.get(2),
            reason: r.get(3),
            prepared: r.get(4),
            expires_at: r.get(5),
            rows: r.get::<_, Option<i64>>(6).unwrap_or(0),
            statements: r
                .get::<_, Option<String>>(7)
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
        })
        .collect())
}

/// COMMIT PREPARED or ROLLBACK PREPARED of a review, as the person: the
/// extension decides who may.
pub async fn finish_review(c: &Client, gid: &str, commit: bool) -> Result<(), DbError> {
    let verb = if commit { "COMMIT" } else { "ROLLBACK" };
    c.batch_execute(&format!("{verb} PREPARED '{}'", gid.replace('\'', "''")))
        .await?;
    Ok(())
}

/// One recycle bin entry, from ai_agent_safety.recycle_bin.
#[derive(Debug, Clone)]
pub struct Recycled {
    pub id: i64,
    pub kind: String,
    pub object: String,
    pub kept_as: Option<String>,
    pub dropped_by: String,
    pub task_id: Option<String>,
    pub statement: Option<String>,
    pub at: String,
    pub expires_at: String,
    pub size: Option<String>,
}

pub async fn recycle_bin(c: &Client) -> Result<Vec<Recycled>, DbError> {
    let sql = format!(
        "SELECT id, kind, object, kept_as, dropped_by, task_id, statement,
                to_char(at AT TIME ZONE 'UTC', {UTC}), to_char(expires_at AT TIME ZONE 'UTC', {UTC}),
                pg_size_pretty(bytes)
           FROM ai_agent_safety.recycle_bin ORDER BY at"
    );
    let rows = c.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| Recycled {
            id: r.get(0),
            kind: r.get(1),
            object: r.get(2),
            kept_as: r.get(3),
            dropped_by: r.get(4),
            task_id: r.get(5),
            statement: r.get(6),
            at: r.get(7),
            expires_at: r.get(8),
            size: r.get(9),
        })
        .collect())
}

/// restore_dropped or purge_dropped; returns what the database said.
pub async fn restore(c: &Client, id: i64, new_name: Option<&str>) -> Result<String, DbError> {
    let row = c
        .query_one(
            "SELECT ai_agent_safety.restore_dropped($1::bigint, new_name => $2::text)",
            &[&id, &new_name],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn purge(c: &Client, id: i64) -> Result<String, DbError> {
    let row = c
        .query_one("SELECT ai_agent_safety.purge_dropped($1::bigint)", &[&id])
        .await?;
    Ok(row.get(0))
}
