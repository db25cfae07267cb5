//! Pending requests in every database, kept live by server-sent events;
//! and the notifications page.

use super::layout::{databases, db_error, page, request_href};
use super::session::Signed;
use crate::db::DbError;
use crate::queries::{self, Pending};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

/// Every database's pending requests, oldest first within each.
async fn gather(who: &Signed) -> Vec<(String, Result<Vec<Pending>, DbError>)> {
    let reads = who.login.conns.dbs.iter().map(|d| async move {
        let r = if d.is_closed() {
            Err(DbError::plain(
                "the connection to this database was lost; sign out and in again",
            ))
        } else {
            queries::pending(&d.client).await
        };
        (d.label.clone(), r)
    });
    futures_util::future::join_all(reads).await
}

fn table(all: &[(String, Result<Vec<Pending>, DbError>)]) -> Markup {
    let count: usize = all
        .iter()
        .map(|(_, r)| r.as_ref().map_or(0, Vec::len))
        .sum();
    html! {
        @for (db, r) in all {
            @if let Err(e) = r { (db_error(&format!("Database {db}: could not read pending requests"), e)) }
        }
        p #pending-count { (count) @if count == 1 { " pending request" } @else { " pending requests" } }
        @if count > 0 {
            table #pending {
                thead { tr {
                    th { "Database" } th { "Requested by" } th { "Task" } th { "Operation" }
                    th { "Target" } th { "Target facts" } th { "Reason" } th { "Waiting" } th { "Expiry" } th {}
                } }
                tbody {
                    @for (db, r) in all {
                        @if let Ok(rows) = r {
                            @for p in rows { (row(db, p)) }
                        }
                    }
                }
            }
        }
    }
}

fn row(db: &str, p: &Pending) -> Markup {
    let href = request_href(db, &p.token);
    html! {
        tr data-token=(p.token) data-database=(db) {
            td { (db) }
            td { strong { (p.requested_by) } }
            td.mono { (p.task_id) }
            td { span.op { (p.operation) } @if let Some(v) = &p.verb { br; span.muted { (v) } } }
            td.mono { (p.target) }
            td.facts { (facts(p)) }
            td { (p.reason.as_deref().unwrap_or("")) }
            td title=(format!("requested at {}", p.requested_at)) { (p.waiting) }
            td title="how long a grant stays usable" { (p.token_ttl) " after a grant" }
            td { a href=(href) { "Review" } }
        }
    }
}

/// What the database knows about the target, which the agent cannot dress up.
pub fn facts(p: &Pending) -> Markup {
    html! {
        @if let Some(o) = &p.target_owner { "owner " (o) br; }
        @if let Some(s) = &p.target_size { "size " (s) br; }
        @if let Some(n) = p.target_estimated_rows { "≈ " (n) " rows" br; }
        @if let Some(oid) = &p.target_oid { "oid " (oid) br; }
        @for n in &p.target_earlier_names { "earlier: " (n) br; }
    }
}

pub async fn page_handler(State(state): State<AppState>, who: Signed) -> Response {
    let all = gather(&who).await;
    let failures = state.webhooks.failures();
    page(
        "Pending requests",
        Some(&who),
        "/",
        html! {
            h1 { "Pending requests " span #live-state data-state="static" { "not live" } }
            (databases(&who.login.databases()))
            @if !failures.is_empty() {
                div.box.warn #webhook-failures {
                    strong { (failures.len()) " notification(s) could not be delivered" }
                    " (newest: " (failures[0].url) ", " (failures[0].error.as_deref().unwrap_or("")) "). "
                    a href="/webhooks" { "Details" }
                }
            }
            div data-live="/pending/fragment" { (table(&all)) }
            p.muted { "New requests appear here as they come (server-sent events); without JavaScript, reload the page." }
        },
    )
    .into_response()
}

pub async fn fragment(who: Signed) -> Response {
    table(&gather(&who).await).into_response()
}

pub async fn webhooks(State(state): State<AppState>, who: Signed) -> Response {
    let list = state.webhooks.deliveries();
    page(
        "Notifications",
        Some(&who),
        "/webhooks",
        html! {
            h1 { "Notifications" }
            @if !state.webhooks.enabled() {
                p { "No webhook is configured (flag " code { "--webhook URL" } ")." }
            } @else {
                p.muted { "Each new request is posted as {\"text\": \"…\"} to every webhook, with retries. The newest outcomes first." }
                table #deliveries {
                    thead { tr { th { "When" } th { "Database" } th { "Request" } th { "Webhook" } th { "Attempts" } th { "Outcome" } } }
                    tbody {
                        @for d in &list {
                            tr {
                                td { (d.at) } td { (d.database) }
                                td { a href=(request_href(&d.database, &d.token)) { (d.token) } }
                                td.mono { (d.url) } td { (d.attempts) }
                                td { @if d.ok { "delivered" } @else { "failed: " (d.error.as_deref().unwrap_or("")) } }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}
