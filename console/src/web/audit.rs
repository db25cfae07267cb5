//! The audit log of one database, filtered and paged (newest first).

use super::layout::{databases, db_error, db_select, page, pick_db, request_href};
use super::session::Signed;
use crate::queries::{self, AuditFilter, AUDIT_PAGE};
use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

/// The query string; `before` as text, since an empty or stray value must
/// not fail the page.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    db: Option<String>,
    agent: String,
    task: String,
    decision: String,
    source: String,
    since: String,
    until: String,
    before: String,
}

impl AuditQuery {
    fn filter(self) -> (Option<String>, AuditFilter) {
        let f = AuditFilter {
            agent: self.agent,
            task: self.task,
            decision: self.decision,
            source: self.source,
            since: self.since,
            until: self.until,
            before: self.before.trim().parse().ok(),
        };
        (self.db, f)
    }
}

fn href(db: &str, f: &AuditFilter, before: Option<i64>) -> String {
    let mut q = vec![("db", db.to_string())];
    for (k, v) in [
        ("agent", &f.agent),
        ("task", &f.task),
        ("decision", &f.decision),
        ("source", &f.source),
        ("since", &f.since),
        ("until", &f.until),
    ] {
        if !v.trim().is_empty() {
            q.push((k, v.clone()));
        }
    }
    if let Some(b) = before {
        q.push(("before", b.to_string()));
    }
    format!(
        "/audit?{}",
        serde_urlencoded::to_string(q).unwrap_or_default()
    )
}

fn choice(name: &str, label: &str, current: &str, options: &[&str]) -> Markup {
    html! {
        label { (label)
            select name=(name) {
                option value="" selected[current.is_empty()] { "any" }
                @for o in options { option value=(o) selected[*o == current] { (o) } }
            }
        }
    }
}

fn filters(who: &Signed, db: &str, f: &AuditFilter) -> Markup {
    html! {
        form.filters method="get" action="/audit" #audit-filters {
            (db_select(who, db))
            label { "Agent (role)" input type="text" name="agent" value=(f.agent); }
            label { "Task" input type="text" name="task" value=(f.task); }
            (choice("decision", "Decision", &f.decision, &["refuse", "would_refuse", "allow", "info"]))
            (choice("source", "Source", &f.source, &["guard", "token", "credentials", "environment"]))
            label { "Since (timestamp)" input type="text" name="since" value=(f.since) placeholder="2026-11-25 18:00+00"; }
            label { "Until (timestamp)" input type="text" name="until" value=(f.until) placeholder="now"; }
            div { button type="submit" { "Filter" } " " a href=(format!("/audit?db={}", crate::webhook::encode_segment(db))) { "Clear" } }
        }
    }
}

pub async fn show(who: Signed, Query(q): Query<AuditQuery>) -> Response {
    let (asked, f) = q.filter();
    let Some(db) = pick_db(&who, asked.as_deref()) else {
        return super::layout::not_found(&who, "That database is not one of this console's.");
    };
    let conn = who
        .login
        .conns
        .get(&db)
        .expect("picked from the person's databases");
    let result = queries::audit(&conn.client, &f).await;
    let body = html! {
        h1 { "Audit log" }
        (databases(std::slice::from_ref(&db)))
        (filters(&who, &db, &f))
        @match &result {
            Err(e) => (db_error("Could not read the audit log", e)),
            Ok((events, more)) => {
                p.muted #audit-count { (events.len()) " event(s)"
                    @if f.before.is_some() { " older than event " (f.before.unwrap_or(0)) }
                    @else { ", newest first" }
                    " (" (AUDIT_PAGE) " per page)" }
                table #audit {
                    thead { tr {
                        th { "#" } th { "Time" } th { "Agent" } th { "Task" } th { "Source" } th { "Event" }
                        th { "Decision" } th { "Operation" } th { "Object" } th { "Reason" } th { "Statement" }
                    } }
                    tbody {
                        @for e in events {
                            tr data-event-id=(e.id) {
                                td { (e.id) } td { (e.ts) } td { (e.agent.as_deref().unwrap_or("")) }
                                td.mono { (e.task_id.as_deref().unwrap_or("")) } td { (e.source) } td { (e.event) }
                                td { (e.decision) } td { (e.operation.as_deref().unwrap_or("")) }
                                td.mono { (e.object.as_deref().unwrap_or("")) }
                                td { (e.reason.as_deref().unwrap_or(""))
                                    @if let Some(t) = &e.token { br; a href=(request_href(&db, t)) { "token " (t) } } }
                                td.mono { (e.statement.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
                div.pager {
                    @if f.before.is_some() { a href=(href(&db, &f, None)) #newest { "⇤ Newest" } }
                    @if *more { @if let Some(last) = events.last() {
                        a href=(href(&db, &f, Some(last.id))) #older { "Older →" }
                    } }
                }
            }
        }
    };
    page("Audit log", Some(&who), "/audit", body).into_response()
}
