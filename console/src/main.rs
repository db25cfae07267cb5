//! ai-agent-safety-console: the approver's web console for ai_agent_safety.
//! See the README's "Console" section.

mod config;
mod db;
mod queries;
mod state;
mod web;
mod webhook;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut args = config::Args::parse();
    match run(&mut args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ai-agent-safety-console: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &mut config::Args) -> Result<(), String> {
    // One TLS implementation for the whole process (HTTPS and webhooks).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    args.listen = listener.local_addr().map_err(|e| e.to_string())?;
    let state = state::AppState::new(args.clone())?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| format!("TLS certificate or key: {e}"))?,
        ),
        _ => None,
    };
    state.spawn_sweeper();
    state.spawn_watch();
    let app = web::router(state);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts read this line to learn the port (with --listen ...:0).
    println!("listening on {scheme}://{}", args.listen);
    tracing::info!("listening on {scheme}://{}", args.listen);
    let serve = async {
        match tls {
            Some(tls) => {
                let std = listener.into_std().map_err(|e| e.to_string())?;
                axum_server::from_tcp_rustls(std, tls)
                    .serve(app.into_make_service())
                    .await
                    .map_err(|e| e.to_string())
            }
            None => axum::serve(listener, app).await.map_err(|e| e.to_string()),
        }
    };
    tokio::select! {
        r = serve => r,
        _ = shutdown() => {
            tracing::info!("stopping");
            Ok(())
        }
    }
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
