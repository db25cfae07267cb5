//! One request: what it asks, what the database knows of its target, and
//! the Grant and Deny forms. A refusal is shown as the database words it.

use super::layout::{databases, db_error, not_found, page, refusal_status, request_href};
use super::pending::facts;
use super::session::{CsrfForm, Signed};
use crate::db::{DbConn, DbError};
use crate::queries::{self, Pending, TokenState};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use uuid::Uuid;

struct View {
    db: String,
    token: Uuid,
    state: Option<TokenState>,
    pending: Option<Pending>,
}

async fn read(conn: &DbConn, token: Uuid) -> Result<View, DbError> {
    Ok(View {
        db: conn.label.clone(),
        token,
        state: queries::token_state(&conn.client, token).await?,
        pending: queries::pending_one(&conn.client, token).await?,
    })
}

fn details(v: &View) -> Markup {
    let Some(t) = &v.state else {
        return html! { p { "There is no approval token " (v.token) " in database " (v.db) "." } };
    };
    html! {
        dl.details {
            dt { "Status" } dd { span.status #status data-status=(t.status) { (t.status) } }
            dt { "Database" } dd { (v.db) }
            dt { "Requested by" } dd #requested-by { (t.requested_by) }
            dt { "Requested at" } dd { (t.requested_at) @if let Some(p) = &v.pending { " (waiting " (p.waiting) ")" } }
            dt { "Task" } dd.mono { (t.task_id) }
            dt { "Operation" } dd { span.op { (t.operation) } @if let Some(verb) = &t.verb { " · form " (verb) } }
            dt { "Target" } dd.mono { (t.target) }
            @if let Some(p) = &v.pending {
                dt { "Target facts" } dd { (facts(p)) }
            }
            dt { "Reason" } dd { (t.reason.as_deref().unwrap_or("(none given)")) }
            @if let Some(s) = v.pending.as_ref().and_then(|p| p.statement.as_deref()) {
                dt { "Exactly this statement" } dd.mono #statement { (s) }
            }
            @if let Some(p) = v.pending.as_ref().filter(|p| !p.preview.is_empty()) {
                dt { "Preview" } dd { (preview(p)) }
            }
            @if let Some(n) = v.pending.as_ref().and_then(|p| p.max_rows) {
                dt { "Row cap" } dd #max-rows { "at most " (n) " rows; over it, the statement fails and changes nothing" }
            }
            @if let Some(p) = &v.pending {
                dt { "A grant allows" } dd #would-allow { (p.would_allow) }
            }
            @if let Some(by) = &t.decided_by {
                dt { "Decided by" } dd { (by) " at " (t.decided_at.as_deref().unwrap_or("")) }
            }
            @if let Some(c) = &t.comment { @if !c.is_empty() { dt { "Comment" } dd #comment { (c) } } }
            @if let Some(e) = &t.expires_at { dt { "Expires" } dd { (e) } }
            @if let Some(u) = &t.used_at { dt { "Used at" } dd { (u) } }
            @if let Some(s) = &t.used_statement { dt { "Used by" } dd.mono { (s) } }
        }
    }
}

/// What the request's statement would do: per table, the rows its dry run
/// changed (or a TRUNCATE or DROP would remove), and the objects a CASCADE
/// would drop.
fn preview(p: &queries::Pending) -> Markup {
    let n = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    html! {
        table.preview #preview {
            thead { tr { th { "Table or object" } th { "Rows" } th { "Deleted" } th { "Updated" } th { "Inserted" } th { "How" } } }
            tbody {
                @for e in &p.preview {
                    tr {
                        td.mono { (e.table.as_deref().or(e.object.as_deref()).unwrap_or("")) }
                        td.num { (n(e.rows)) @if e.estimated { " (estimated)" } }
                        td.num { (n(e.deleted)) }
                        td.num { (n(e.updated)) }
                        td.num { (n(e.inserted)) }
                        td { (e.via.as_deref().unwrap_or("")) }
                    }
                }
            }
            @if let Some(total) = p.preview_rows {
                tfoot { tr { td { "In all" } td.num #preview-rows { (total) } td colspan="4" {} } }
            }
        }
    }
}

/// Grant and Deny, while the request is pending.
fn forms(v: &View, csrf: &str) -> Markup {
    let Some(t) = v.state.as_ref().filter(|t| t.status == "pending") else {
        return html! {};
    };
    let action = request_href(&v.db, &v.token);
    html! {
        {
            div.decide {
                form method="post" action=(format!("{action}/grant")) #grant-form {
                    input type="hidden" name="csrf" value=(csrf);
                    h2 { "Grant" }
                    label { "Comment (optional, kept in the audit log)"
                        textarea name="comment" rows="3" maxlength="2000" {} }
                    @if matches!(t.operation.as_str(), "DELETE" | "UPDATE") {
                        label { "Row cap (optional: at most this many rows; it can only lower the request's)"
                            input type="number" name="max_rows" min="1" step="1" #max-rows-input; }
                    }
                    button.grant type="submit" #grant { "Grant one " (t.operation) }
                }
                form method="post" action=(format!("{action}/deny")) #deny-form {
                    input type="hidden" name="csrf" value=(csrf);
                    h2 { "Deny" }
                    label { "Reason (required, the agent reads it)"
                        textarea name="reason" rows="3" maxlength="2000" required {} }
                    button.deny type="submit" #deny { "Deny" }
                }
            }
        }
    }
}

fn render(who: &Signed, v: &View, banner: Option<Markup>) -> Markup {
    page(
        "Request",
        Some(who),
        "/",
        html! {
            h1 { "Request " span.mono { (v.token) } " " span #live-state data-state="static" { "not live" } }
            (databases(std::slice::from_ref(&v.db)))
            @if let Some(b) = banner { (b) }
            div data-live=(format!("{}/fragment", request_href(&v.db, &v.token))) { (details(v)) }
            (forms(v, &who.csrf))
            p { a href="/" { "← All pending requests" } }
        },
    )
}

fn conn<'a>(who: &'a Signed, db: &str) -> Option<&'a DbConn> {
    who.login.conns.get(db)
}

#[derive(serde::Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

pub async fn show(
    who: Signed,
    Path((db, token)): Path<(String, Uuid)>,
    Query(q): Query<Done>,
) -> Response {
    let Some(c) = conn(&who, &db) else {
        return not_found(&who, "That database is not one of this console's.");
    };
    let banner = match q.done.as_deref() {
        Some("granted") => Some(
            html! { div.box.ok #done { "Granted. The agent may now run the statement once." } },
        ),
        Some("denied") => {
            Some(html! { div.box.ok #done { "Denied. The agent's statement stays refused." } })
        }
        _ => None,
    };
    match read(c, token).await {
        Ok(v) => render(&who, &v, banner).into_response(),
        Err(e) => error_page(&who, &db, token, &e),
    }
}

pub async fn fragment(who: Signed, Path((db, token)): Path<(String, Uuid)>) -> Response {
    let Some(c) = conn(&who, &db) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match read(c, token).await {
        Ok(v) => details(&v).into_response(),
        Err(e) => db_error("Could not read the request", &e).into_response(),
    }
}

fn error_page(who: &Signed, db: &str, token: Uuid, e: &DbError) -> Response {
    let body = html! {
        h1 { "Request " (token) }
        (databases(&[db.to_string()]))
        (db_error("Could not read the request", e))
    };
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        page("Request", Some(who), "/", body),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    comment: String,
    /// Empty when no cap is given.
    #[serde(default)]
    max_rows: String,
}

#[derive(serde::Deserialize)]
pub struct DenyForm {
    #[serde(default)]
    reason: String,
}

/// After an action: to the request page on success, or the page again with
/// the database's refusal.
async fn after(
    who: &Signed,
    c: &DbConn,
    token: Uuid,
    what: &str,
    done: &str,
    r: Result<(), DbError>,
) -> Response {
    match r {
        Ok(()) => {
            tracing::info!(role = %who.login.role, database = %c.label, %token, "{done}");
            Redirect::to(&format!("{}?done={done}", request_href(&c.label, &token))).into_response()
        }
        Err(e) => {
            tracing::warn!(role = %who.login.role, database = %c.label, %token, error = %e, "{what} refused");
            let banner = db_error(&format!("The database refused to {what} this request"), &e);
            match read(c, token).await {
                Ok(v) => (refusal_status(&e), render(who, &v, Some(banner))).into_response(),
                Err(e2) => error_page(who, &c.label, token, &e2),
            }
        }
    }
}

pub async fn grant(
    who: Signed,
    Path((db, token)): Path<(String, Uuid)>,
    CsrfForm(f): CsrfForm<GrantForm>,
) -> Response {
    let Some(c) = conn(&who, &db) else {
        return not_found(&who, "That database is not one of this console's.");
    };
    let comment = Some(f.comment.trim()).filter(|s| !s.is_empty());
    let max_rows = match f.max_rows.trim() {
        "" => None,
        n => match n.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    "The row cap must be a whole number of rows.",
                )
                    .into_response()
            }
        },
    };
    let r = queries::grant(&c.client, token, comment, max_rows)
        .await
        .map(|_| ());
    after(&who, c, token, "grant", "granted", r).await
}

pub async fn deny(
    who: Signed,
    Path((db, token)): Path<(String, Uuid)>,
    CsrfForm(f): CsrfForm<DenyForm>,
) -> Response {
    let Some(c) = conn(&who, &db) else {
        return not_found(&who, "That database is not one of this console's.");
    };
    let r = queries::deny(&c.client, token, f.reason.trim()).await;
    after(&who, c, token, "deny", "denied", r).await
}
