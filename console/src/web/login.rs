//! Sign-in with the person's own PostgreSQL role and password, and sign-out.

use super::layout::{db_error, page};
use super::session::{self, CsrfForm};
use crate::db::DbError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use tower_sessions::Session;

fn form(csrf: &str, role: &str, error: Option<&DbError>) -> Markup {
    page(
        "Sign in",
        None,
        "",
        html! {
            div.login {
                h1 { "Approver's console" }
                p.muted {
                    "Sign in with your own PostgreSQL role and password. Everything you do here runs as that role."
                }
                @if let Some(e) = error { (db_error("Sign-in refused", e)) }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Role" input type="text" name="role" value=(role) autocomplete="username" required autofocus; }
                    label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                    button type="submit" #sign-in { "Sign in" }
                }
            }
        },
    )
}

pub async fn show(session: Session) -> Response {
    match session::csrf_token(&session).await {
        Ok(csrf) => form(&csrf, "", None).into_response(),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
pub struct Credentials {
    role: String,
    password: String,
}

// Credentials is never printed: no Debug, and the password is dropped here.
pub async fn submit(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(c): CsrfForm<Credentials>,
) -> Response {
    let role = c.role.trim().to_string();
    let result = if role.is_empty() {
        Err(DbError::plain("a role is required"))
    } else {
        state.sign_in(&role, &c.password).await
    };
    drop(c);
    match result {
        Ok(id) => match session::start(&session, id).await {
            Ok(()) => Redirect::to("/").into_response(),
            Err(r) => r,
        },
        Err(e) => {
            tracing::warn!(role, reason = %e.message, "sign-in refused");
            let csrf = session::csrf_token(&session).await.unwrap_or_default();
            (StatusCode::UNAUTHORIZED, form(&csrf, &role, Some(&e))).into_response()
        }
    }
}

#[derive(serde::Deserialize)]
pub struct Empty {}

pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(_): CsrfForm<Empty>,
) -> Response {
    if let Some(id) = session::end(&session).await {
        state.logout(id);
    }
    Redirect::to("/login").into_response()
}
