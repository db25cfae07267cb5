//! The page shell, shared pieces, and the static files.

use super::session::Signed;
use crate::db::DbError;
use crate::webhook::encode_segment;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

pub const CSS: &str = include_str!("../../static/app.css");
pub const JS: &str = include_str!("../../static/app.js");

pub async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

pub async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// The navigation's entries: (path, label).
const NAV: [(&str, &str); 6] = [
    ("/", "Pending requests"),
    ("/reviews", "Reviews"),
    ("/recycle", "Recycle bin"),
    ("/audit", "Audit log"),
    ("/agents", "Agents"),
    ("/webhooks", "Notifications"),
];

/// A whole page. `active` is the path of the navigation entry to mark.
pub fn page(title: &str, who: Option<&Signed>, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ai_agent_safety console" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header {
                    span.brand { "ai_agent_safety" }
                    @if let Some(s) = who {
                        @for (href, label) in NAV {
                            a href=(href) class=[(href == active).then_some("active")] { (label) }
                        }
                        span.who {
                            "Signed in as " strong #who { (s.login.role) }
                            @if s.login.superuser { " (superuser)" }
                            " · "
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// "Database: x" or "Databases: a, b" for the top of a page.
pub fn databases(names: &[String]) -> Markup {
    html! {
        p.dbs {
            @if names.len() == 1 { "Database: " } @else { "Databases: " }
            @for (i, n) in names.iter().enumerate() {
                @if i > 0 { ", " }
                strong { (n) }
            }
        }
    }
}

/// A database's refusal or error, as the database said it.
pub fn db_error(what: &str, e: &DbError) -> Markup {
    html! {
        div.box.error #db-error role="alert" {
            strong { (what) } br;
            span #db-error-message { (e.message) }
            @if let Some(d) = &e.detail { br; span.muted { "DETAIL: " } (d) }
            @if let Some(h) = &e.hint { br; span.muted { "HINT: " } (h) }
            @if let Some(c) = &e.code { br; span.muted { "SQLSTATE " (c) } }
        }
    }
}

/// The HTTP status for a database's refusal of an action.
pub fn refusal_status(e: &DbError) -> StatusCode {
    if e.is_privilege() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::CONFLICT
    }
}

pub fn request_href(database: &str, token: &uuid::Uuid) -> String {
    format!("/db/{}/request/{token}", encode_segment(database))
}

pub fn not_found(who: &Signed, what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            Some(who),
            "",
            html! { h1 { "Not found" } p { (what) } },
        ),
    )
        .into_response()
}

/// `?db=` when it names one of the person's databases, else the first.
pub fn pick_db(who: &Signed, asked: Option<&str>) -> Option<String> {
    let names = who.login.databases();
    match asked {
        Some(a) if names.iter().any(|n| n == a) => Some(a.to_string()),
        Some(_) => None,
        None => names.into_iter().next(),
    }
}

pub fn db_select(who: &Signed, current: &str) -> Markup {
    html! {
        label {
            "Database"
            select name="db" {
                @for n in who.login.databases() {
                    option value=(n) selected[n == current] { (n) }
                }
            }
        }
    }
}
