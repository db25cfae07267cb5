//! The recycle bin: what agents dropped and the extension keeps, with
//! Restore (optionally under a new name) and Purge, run as the signed-in
//! person. The bin is the cluster's; it is read through the first database.

use super::layout::{db_error, not_found, page, refusal_status};
use super::session::{CsrfForm, Signed};
use crate::queries;
use axum::extract::Query;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

async fn render(who: &Signed, banner: Option<Markup>) -> Markup {
    let Some(conn) = who.login.conns.dbs.first() else {
        return page(
            "Recycle bin",
            Some(who),
            "/recycle",
            html! { p { "No database." } },
        );
    };
    let result = queries::recycle_bin(&conn.client).await;
    page(
        "Recycle bin",
        Some(who),
        "/recycle",
        html! {
            h1 { "Recycle bin" }
            p.muted { "What agents dropped, kept until it expires: Restore brings an entry back as it was; Purge lets it go for good now. The bin is the whole cluster's (read through database " (conn.label) ")." }
            @if let Some(b) = banner { (b) }
            @match &result {
                Err(e) => (db_error("Could not read the recycle bin", e)),
                Ok(list) => {
                    p #recycle-count { (list.len()) @if list.len() == 1 { " entry" } @else { " entries" } }
                    @if !list.is_empty() {
                        table #recycle {
                            thead { tr {
                                th { "Entry" } th { "Kind" } th { "Object" } th { "Kept as" } th { "Dropped by" } th { "Task" }
                                th { "Statement" } th { "At" } th { "Expires" } th { "Size" } th {} th {}
                            } }
                            tbody {
                                @for e in list {
                                    tr data-id=(e.id) {
                                        td { (e.id) } td { (e.kind) } td.mono { strong { (e.object) } }
                                        td.mono { (e.kept_as.as_deref().unwrap_or("")) } td { (e.dropped_by) }
                                        td.mono { (e.task_id.as_deref().unwrap_or("")) } td.mono { (e.statement.as_deref().unwrap_or("")) }
                                        td { (e.at) } td { (e.expires_at) } td { (e.size.as_deref().unwrap_or("")) }
                                        td {
                                            form method="post" action="/recycle/restore" {
                                                input type="hidden" name="csrf" value=(who.csrf);
                                                input type="hidden" name="id" value=(e.id);
                                                input type="text" name="new_name" placeholder="new name (optional)" maxlength="63";
                                                button.grant type="submit" { "Restore" }
                                            }
                                        }
                                        td {
                                            form method="post" action="/recycle/purge" {
                                                input type="hidden" name="csrf" value=(who.csrf);
                                                input type="hidden" name="id" value=(e.id);
                                                button.deny type="submit" title="Drop it for good, now" { "Purge" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[derive(serde::Deserialize, Default)]
pub struct Said {
    said: Option<String>,
}

pub async fn show(who: Signed, Query(q): Query<Said>) -> Response {
    let banner = q.said.map(|s| html! { div.box.ok #done { (s) } });
    render(&who, banner).await.into_response()
}

#[derive(serde::Deserialize)]
pub struct EntryForm {
    id: i64,
    #[serde(default)]
    new_name: String,
}

async fn act(who: Signed, f: EntryForm, restore: bool) -> Response {
    let Some(conn) = who.login.conns.dbs.first() else {
        return not_found(&who, "No database.");
    };
    let name = Some(f.new_name.trim()).filter(|n| !n.is_empty());
    let r = if restore {
        queries::restore(&conn.client, f.id, name).await
    } else {
        queries::purge(&conn.client, f.id).await
    };
    let what = if restore { "restore" } else { "purge" };
    match r {
        Ok(said) => {
            tracing::info!(by = %who.login.role, entry = f.id, "{what}: {said}");
            let q = serde_urlencoded::to_string([("said", said.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/recycle?{q}")).into_response()
        }
        Err(e) => {
            let banner = db_error(
                &format!("The database refused to {what} entry {}", f.id),
                &e,
            );
            (refusal_status(&e), render(&who, Some(banner)).await).into_response()
        }
    }
}

pub async fn restore(who: Signed, CsrfForm(f): CsrfForm<EntryForm>) -> Response {
    act(who, f, true).await
}

pub async fn purge(who: Signed, CsrfForm(f): CsrfForm<EntryForm>) -> Response {
    act(who, f, false).await
}
