//! ai-agent-safety-mcp: an MCP server (stdio) that gives an AI agent
//! PostgreSQL access as its own role, with ai_agent_safety's approval flow
//! as tools.
//!
//! stdout carries the protocol: everything else goes to stderr.

mod actions;
mod errors;
mod pg;
mod server;
mod wait;

use rmcp::transport::stdio_pipes;
use rmcp::ServiceExt;
use std::process::ExitCode;
use std::str::FromStr;
use tokio_postgres::Config;

const USAGE: &str = "\
ai-agent-safety-mcp: an MCP server (stdio) for an AI agent's PostgreSQL access,
guarded by ai_agent_safety.

Usage: ai-agent-safety-mcp [--dsn CONNECTION_STRING]

The connection string names the agent's own role, e.g.
  host=/tmp port=5432 user=cleanup_bot dbname=production
  postgresql://cleanup_bot:PASSWORD@db.example:5432/production
It comes from --dsn, else from the environment variable DATABASE_URL.
Tools: query, execute, request_approval, wait_for_decision, execute_approved.
Logs go to stderr; stdout is the MCP protocol.";

/// One line on stderr.
pub fn log(message: &str) {
    eprintln!("ai-agent-safety-mcp: {message}");
}

/// The connection string, from the command line or DATABASE_URL.
fn dsn_from(args: &[String], env: Option<String>) -> Result<String, String> {
    let mut dsn = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dsn" => match it.next() {
                Some(v) => dsn = Some(v.clone()),
                None => return Err("--dsn needs a connection string".into()),
            },
            s if s.starts_with("--dsn=") => dsn = Some(s["--dsn=".len()..].to_string()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match dsn.or(env).filter(|d| !d.trim().is_empty()) {
        Some(d) => Ok(d),
        None => Err("no connection string: set DATABASE_URL or pass --dsn".into()),
    }
}

/// Connects once at start to say in the log who the server is; a failure
/// is only logged (the tools report it when they are called).
async fn startup_check(db: &pg::Db) {
    match db.connect().await {
        Ok(client) => match client
            .query_one(
                "SELECT session_user::text, current_database()::text, \
                        current_setting('ai_agent_safety.agent_session', true)",
                &[],
            )
            .await
        {
            Ok(row) => {
                let (user, database): (String, String) = (row.get(0), row.get(1));
                let agent: Option<String> = row.get(2);
                log(&format!("connected as {user} to database {database}"));
                match agent.as_deref() {
                    Some("on") => {}
                    Some(_) => log(&format!(
                        "warning: {user} is not an agent role (ai_agent_safety.agent_session = off): \
                         ai_agent_safety does not restrict it. Give the server the agent's own role."
                    )),
                    None => log(
                        "warning: ai_agent_safety is not loaded in this server: nothing guards these statements",
                    ),
                }
            }
            Err(e) => log(&format!("startup check failed: {e}")),
        },
        Err(e) => log(&format!(
            "cannot connect yet ({}); the tools will report it",
            errors::to_json(&e)["message"].as_str().unwrap_or("")
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("ai-agent-safety-mcp {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let dsn = match dsn_from(&args, std::env::var("DATABASE_URL").ok()) {
        Ok(d) => d,
        Err(e) => {
            log(&e);
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_str(&dsn) {
        Ok(c) => c,
        // The parser's message never contains the password.
        Err(e) => {
            log(&format!("invalid connection string: {e}"));
            return ExitCode::from(2);
        }
    };
    let db = pg::Db::new(config);
    log(&format!("starting on stdio ({})", db.describe()));
    startup_check(&db).await;

    let running = match server::SafetyServer::new(db).serve(stdio_pipes()).await {
        Ok(r) => r,
        Err(e) => {
            log(&format!("MCP initialization failed: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match running.waiting().await {
        Ok(reason) => {
            log(&format!("stopped ({reason:?})"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            log(&format!("stopped with an error: {e}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dsn_from;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dsn_from_flag_or_env() {
        assert_eq!(
            dsn_from(&args(&["--dsn", "host=/tmp"]), Some("x".into())).unwrap(),
            "host=/tmp"
        );
        assert_eq!(dsn_from(&args(&["--dsn=a=b"]), None).unwrap(), "a=b");
        assert_eq!(dsn_from(&[], Some("host=h".into())).unwrap(), "host=h");
        assert!(dsn_from(&[], None).is_err());
        assert!(dsn_from(&[], Some(" ".into())).is_err());
        assert!(dsn_from(&args(&["--dsn"]), None).is_err());
        assert!(dsn_from(&args(&["--what"]), None).is_err());
    }
}
