//! The HTTP side: routes, the session layer, security headers, and serving
//! plain HTTP or HTTPS (rustls).

mod agents;
mod audit;
mod events;
mod layout;
mod login;
mod pending;
mod recycle;
mod request;
mod reviews;
mod session;
mod store;

use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::{time, SameSite};
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions::{Expiry, SessionManagerLayer};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: AppState) -> Router {
    let idle = time::Duration::seconds(state.args.idle().as_secs() as i64);
    let store = store::BoundedStore::new(100_000);
    let sweep = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let _ = sweep.delete_expired().await;
        }
    });
    let sessions = SessionManagerLayer::new(store)
        .with_name("aas_console")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(state.args.secure_cookie())
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(idle));
    let headers = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    let mut app = Router::new()
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/", get(pending::page_handler))
        .route("/pending/fragment", get(pending::fragment))
        .route("/webhooks", get(pending::webhooks))
        .route("/events", get(events::stream))
        .route("/db/{db}/request/{token}", get(request::show))
        .route("/db/{db}/request/{token}/fragment", get(request::fragment))
        .route("/db/{db}/request/{token}/grant", post(request::grant))
        .route("/db/{db}/request/{token}/deny", post(request::deny))
        .route("/reviews", get(reviews::show))
        .route("/reviews/commit", post(reviews::commit))
        .route("/reviews/rollback", post(reviews::rollback))
        .route("/recycle", get(recycle::show))
        .route("/recycle/restore", post(recycle::restore))
        .route("/recycle/purge", post(recycle::purge))
        .route("/audit", get(audit::show))
        .route("/agents", get(agents::show))
        .route("/agents/revoke", post(agents::revoke))
        .route("/static/app.css", get(layout::css))
        .route("/static/app.js", get(layout::js))
        .layer(sessions)
        .with_state(state);
    for (name, value) in headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    app
}
