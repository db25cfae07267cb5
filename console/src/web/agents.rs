//! Agent roles (credential_report with activity) and "revoke now".

use super::layout::{databases, db_error, db_select, not_found, page, pick_db, refusal_status};
use super::session::{CsrfForm, Signed};
use crate::queries;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

#[derive(serde::Deserialize, Default)]
pub struct AgentsQuery {
    db: Option<String>,
    revoked: Option<String>,
    ended: Option<i32>,
}

async fn render(who: &Signed, db: &str, banner: Option<Markup>) -> Markup {
    let conn = who
        .login
        .conns
        .get(db)
        .expect("picked from the person's databases");
    let result = queries::agents(&conn.client).await;
    let body = html! {
        h1 { "Agents" }
        (databases(&[db.to_string()]))
        form.filters method="get" action="/agents" { (db_select(who, db)) div { button type="submit" { "Show" } } }
        @if let Some(b) = banner { (b) }
        @match &result {
            Err(e) => (db_error("Could not read the agents", e)),
            Ok(agents) => {
                p.muted { "Credentials are cluster-wide; activity (last seen, refusals, tokens used) is from this database's audit log." }
                table #agents {
                    thead { tr {
                        th { "Role" } th { "Can log in" } th { "Valid until" } th { "Time left" } th { "Open sessions" }
                        th { "Environments" } th { "Problems" } th { "Last seen" } th { "Refusals" } th { "Tokens used" } th {}
                    } }
                    tbody {
                        @for a in agents {
                            tr data-role=(a.role) {
                                td { strong { (a.role) } } td { @if a.can_login { "yes" } @else { "no" } }
                                td { (a.valid_until.as_deref().unwrap_or("never")) }
                                td { (a.time_remaining.as_deref().unwrap_or("")) }
                                td { (a.open_sessions) } td { (a.allowed_environments.join(", ")) }
                                td { @for p in &a.problems { span.op { (p) } br; } }
                                td { (a.last_seen.as_deref().unwrap_or("")) } td { (a.refusals) } td { (a.tokens_used) }
                                td {
                                    form method="post" action="/agents/revoke" {
                                        input type="hidden" name="csrf" value=(who.csrf);
                                        input type="hidden" name="db" value=(db);
                                        input type="hidden" name="role" value=(a.role);
                                        button.revoke type="submit" title="Expire the credentials now and end every open session" { "Revoke now" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Agents", Some(who), "/agents", body)
}

pub async fn show(who: Signed, Query(q): Query<AgentsQuery>) -> Response {
    let Some(db) = pick_db(&who, q.db.as_deref()) else {
        return not_found(&who, "That database is not one of this console's.");
    };
    let banner = q.revoked.as_ref().map(|r| {
        let n = q.ended.unwrap_or(0);
        html! { div.box.ok #revoked {
            "Revoked the credentials of " strong { (r) } ": " (n)
            @if n == 1 { " session ended." } @else { " sessions ended." }
        } }
    });
    render(&who, &db, banner).await.into_response()
}

#[derive(serde::Deserialize)]
pub struct RevokeForm {
    db: String,
    role: String,
}

pub async fn revoke(who: Signed, CsrfForm(f): CsrfForm<RevokeForm>) -> Response {
    let Some(db) = pick_db(&who, Some(&f.db)) else {
        return not_found(&who, "That database is not one of this console's.");
    };
    let conn = who
        .login
        .conns
        .get(&db)
        .expect("picked from the person's databases");
    match queries::revoke(&conn.client, &f.role).await {
        Ok(n) => {
            tracing::info!(by = %who.login.role, role = %f.role, sessions_ended = n, "revoked agent credentials");
            let q = serde_urlencoded::to_string([
                ("db", db.as_str()),
                ("revoked", f.role.as_str()),
                ("ended", &n.to_string()),
            ])
            .unwrap_or_default();
            Redirect::to(&format!("/agents?{q}")).into_response()
        }
        Err(e) => {
            let status: StatusCode = refusal_status(&e);
            let banner = db_error(&format!("The database refused to revoke {}", f.role), &e);
            (status, render(&who, &db, Some(banner)).await).into_response()
        }
    }
}
