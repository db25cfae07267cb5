//! The session cookie's contents (which sign-in, which CSRF token) and the
//! extractors that check them: `Signed` for pages of a signed-in person,
//! `CsrfForm` for every POST.

use crate::state::{AppState, Login};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tower_sessions::Session;
use uuid::Uuid;

const LOGIN_KEY: &str = "login";
const CSRF_KEY: &str = "csrf";

fn new_csrf() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "session store");
    (StatusCode::INTERNAL_SERVER_ERROR, "session error").into_response()
}

/// The session's CSRF token, made on first use.
pub async fn csrf_token(session: &Session) -> Result<String, Response> {
    if let Some(t) = session.get::<String>(CSRF_KEY).await.map_err(internal)? {
        return Ok(t);
    }
    let t = new_csrf();
    session.insert(CSRF_KEY, &t).await.map_err(internal)?;
    Ok(t)
}

/// After a sign-in: a new session id (no fixation) and a new CSRF token.
pub async fn start(session: &Session, login: Uuid) -> Result<(), Response> {
    session.cycle_id().await.map_err(internal)?;
    session.insert(LOGIN_KEY, login).await.map_err(internal)?;
    session
        .insert(CSRF_KEY, new_csrf())
        .await
        .map_err(internal)?;
    Ok(())
}

pub async fn end(session: &Session) -> Option<Uuid> {
    let id = session.get::<Uuid>(LOGIN_KEY).await.ok().flatten();
    let _ = session.flush().await;
    id
}

/// A signed-in person, with the CSRF token their forms carry.
pub struct Signed {
    pub login: Arc<Login>,
    pub csrf: String,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|e| e.into_response())?;
        let id = session.get::<Uuid>(LOGIN_KEY).await.map_err(internal)?;
        let Some(login) = id.and_then(|id| state.login(id)) else {
            return Err(Redirect::to("/login").into_response());
        };
        login.touch();
        let csrf = csrf_token(&session).await?;
        Ok(Signed { login, csrf })
    }
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A urlencoded form whose `csrf` field matches the session's token; any
/// other POST is refused with 403 before its handler runs.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| e.into_response())?;
        let expected = session.get::<String>(CSRF_KEY).await.map_err(internal)?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| e.into_response())?;
        let given = serde_urlencoded::from_bytes::<CsrfField>(&bytes)
            .map(|f| f.csrf)
            .unwrap_or_default();
        let ok = match expected {
            Some(e) => !given.is_empty() && bool::from(e.as_bytes().ct_eq(given.as_bytes())),
            None => false,
        };
        if !ok {
            tracing::warn!("POST refused: missing or wrong CSRF token");
            return Err((
                StatusCode::FORBIDDEN,
                "Forbidden: the form's CSRF token is missing or wrong. Reload the page and try again.",
            )
                .into_response());
        }
        serde_urlencoded::from_bytes::<T>(&bytes)
            .map(CsrfForm)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad form: {e}")).into_response())
    }
}
