//! Reviewed transactions waiting for an approver, in every database: what
//! each statement changed, and Commit (COMMIT PREPARED) or Roll back
//! (ROLLBACK PREPARED), run as the signed-in person; a refusal is shown as
//! the database words it.

use super::layout::{databases, db_error, not_found, page, pick_db, refusal_status};
use super::session::{CsrfForm, Signed};
use crate::db::DbError;
use crate::queries::{self, Review};
use axum::extract::Query;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

async fn gather(who: &Signed) -> Vec<(String, Result<Vec<Review>, DbError>)> {
    let reads = who
        .login
        .conns
        .dbs
        .iter()
        .map(|d| async move { (d.label.clone(), queries::reviews(&d.client).await) });
    futures_util::future::join_all(reads).await
}

fn review(db: &str, r: &Review, csrf: &str) -> Markup {
    html! {
        section.review data-gid=(r.gid) data-database=(db) {
            h2 { "Review " span.mono { (r.gid) } }
            dl.details {
                dt { "Database" } dd { (db) }
                dt { "Requested by" } dd { (r.requested_by) }
                dt { "Task" } dd.mono { (r.task_id) }
                dt { "Reason" } dd { (r.reason.as_deref().unwrap_or("(none given)")) }
                dt { "Prepared" } dd { (r.prepared) }
                dt { "Rolled back unless decided by" } dd { (r.expires_at) }
                dt { "Rows changed in all" } dd.num { (r.rows) }
            }
            table.preview {
                thead { tr { th { "Statement" } th { "Table" } th { "Rows" } th { "Deleted" } th { "Updated" } th { "Inserted" } th { "How" } } }
                tbody {
                    @for s in &r.statements {
                        @for (i, t) in s.tables.iter().enumerate() {
                            tr {
                                td.mono { @if i == 0 { (s.statement) } }
                                td.mono { (t.table.as_deref().unwrap_or("")) }
                                td.num { (t.rows.unwrap_or(0)) }
                                td.num { (t.deleted.map(|n| n.to_string()).unwrap_or_default()) }
                                td.num { (t.updated.map(|n| n.to_string()).unwrap_or_default()) }
                                td.num { (t.inserted.map(|n| n.to_string()).unwrap_or_default()) }
                                td { (t.via.as_deref().unwrap_or("")) }
                            }
                        }
                        @if s.tables.is_empty() {
                            tr { td.mono { (s.statement) } td colspan="6" { (s.rows) " rows" } }
                        }
                    }
                }
            }
            div.decide {
                @for (action, label, class) in [("commit", "Commit (COMMIT PREPARED)", "grant"), ("rollback", "Roll back (ROLLBACK PREPARED)", "deny")] {
                    form method="post" action=(format!("/reviews/{action}")) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="db" value=(db);
                        input type="hidden" name="gid" value=(r.gid);
                        button class=(class) type="submit" { (label) }
                    }
                }
            }
        }
    }
}

async fn render(who: &Signed, banner: Option<Markup>) -> Markup {
    let all = gather(who).await;
    let count: usize = all
        .iter()
        .map(|(_, r)| r.as_ref().map_or(0, Vec::len))
        .sum();
    page(
        "Reviews",
        Some(who),
        "/reviews",
        html! {
            h1 { "Reviewed transactions" }
            (databases(&who.login.databases()))
            @if let Some(b) = banner { (b) }
            p.muted { "An agent ran these transactions and prepared them (PREPARE TRANSACTION); nothing is visible until an approver other than the requester commits. A review not decided in time is rolled back." }
            @for (db, r) in &all {
                @if let Err(e) = r { (db_error(&format!("Database {db}: could not read the reviews"), e)) }
            }
            p #review-count { (count) @if count == 1 { " review waiting" } @else { " reviews waiting" } }
            @for (db, r) in &all {
                @if let Ok(list) = r { @for rv in list { (review(db, rv, &who.csrf)) } }
            }
        },
    )
}

#[derive(serde::Deserialize, Default)]
pub struct Done {
    done: Option<String>,
    gid: Option<String>,
}

pub async fn show(who: Signed, Query(q): Query<Done>) -> Response {
    let banner = match (q.done.as_deref(), q.gid.as_deref()) {
        (Some("committed"), Some(g)) => Some(
            html! { div.box.ok #done { "Committed review " (g) ": its changes are now visible." } },
        ),
        (Some("rolled_back"), Some(g)) => Some(
            html! { div.box.ok #done { "Rolled back review " (g) ": nothing it did was kept." } },
        ),
        _ => None,
    };
    render(&who, banner).await.into_response()
}

#[derive(serde::Deserialize)]
pub struct FinishForm {
    db: String,
    gid: String,
}

async fn finish(who: Signed, f: FinishForm, commit: bool) -> Response {
    let Some(db) = pick_db(&who, Some(&f.db)) else {
        return not_found(&who, "That database is not one of this console's.");
    };
    let conn = who
        .login
        .conns
        .get(&db)
        .expect("picked from the person's databases");
    let (what, done) = if commit {
        ("commit", "committed")
    } else {
        ("roll back", "rolled_back")
    };
    match queries::finish_review(&conn.client, &f.gid, commit).await {
        Ok(()) => {
            tracing::info!(by = %who.login.role, database = %db, gid = %f.gid, "review {done}");
            let q = serde_urlencoded::to_string([("done", done), ("gid", f.gid.as_str())])
                .unwrap_or_default();
            Redirect::to(&format!("/reviews?{q}")).into_response()
        }
        Err(e) => {
            tracing::warn!(by = %who.login.role, database = %db, gid = %f.gid, error = %e, "{what} refused");
            let banner = db_error(
                &format!("The database refused to {what} review {}", f.gid),
                &e,
            );
            (refusal_status(&e), render(&who, Some(banner)).await).into_response()
        }
    }
}

pub async fn commit(who: Signed, CsrfForm(f): CsrfForm<FinishForm>) -> Response {
    finish(who, f, true).await
}

pub async fn rollback(who: Signed, CsrfForm(f): CsrfForm<FinishForm>) -> Response {
    finish(who, f, false).await
}
