//! The MCP tools. Each one connects as the agent's own role, so everything it
//! does is judged by ai_agent_safety like any other session of that role.

use crate::actions::{self, Request};
use crate::errors::{self, Failure};
use crate::pg::Db;
use crate::wait::{self, Hooks};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// wait_for_decision's default and longest wait.
const DEFAULT_WAIT_SECONDS: u64 = 30;
const MAX_WAIT_SECONDS: u64 = 600;

pub const INSTRUCTIONS: &str = "\
PostgreSQL access as your own agent role, guarded by ai_agent_safety. Reads (query) and \
ordinary writes (execute) run directly. In a protected database, destructive statements \
(DELETE, DROP, TRUNCATE, and UPDATE or ALTER where configured) are refused until a human \
approves them. The approval flow: (1) execute refuses the statement with sqlstate 42501 and a \
next_step; (2) call request_approval with the operation, target, your task_id, a reason for the \
human, and the exact statement; you get a pending token and a preview (estimated rows); \
(3) call wait_for_decision with the token until its status is no longer pending; (4) if it \
is granted, call execute_approved with the token and the same statement: it runs once, and \
the token is spent. If it is denied, do not run the statement or look for another way to do \
it: tell the user the approver's comment. Every error carries sqlstate, message, detail, hint \
and next_step: follow next_step.";

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SqlArgs {
    /// Exactly one SQL statement (no parameters; a second statement is refused).
    pub sql: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RequestArgs {
    /// The operation class to approve: DELETE, DROP, TRUNCATE, UPDATE or ALTER (the
    /// refusal's request_approval_arguments names it).
    pub operation: String,
    /// The object, written as in SQL: `public.orders`, `DATABASE staging_old`,
    /// `SCHEMA scratch`, `FUNCTION f(integer)`. Omit only when the refusal names none
    /// (the token then covers any object in this database).
    #[serde(default)]
    pub target: Option<String>,
    /// The task you are working on (required, up to 200 characters); approvers see it.
    pub task_id: String,
    /// Why the statement is needed, for the human who decides (up to 2000 characters).
    #[serde(default)]
    pub reason: Option<String>,
    /// The exact statement you will run with execute_approved. It is only EXPLAINed
    /// here for the preview, never run.
    pub statement: String,
    /// The statement's form when it is not its class's plain one (for example
    /// `CREATE OR REPLACE VIEW` or `ALTER TABLE ... DROP COLUMN note`): copy it from
    /// the refusal's request_approval_arguments when it has one.
    #[serde(default)]
    pub verb: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WaitArgs {
    /// The token request_approval returned.
    pub token: String,
    /// How long to wait for a decision, in seconds (default 30, at most 600; 0 only
    /// reads the current status).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ApprovedArgs {
    /// A granted token from request_approval / wait_for_decision.
    pub token: String,
    /// The statement the token was granted for (exactly one statement).
    pub statement: String,
}

/// The server: where to connect, and the tools.
#[derive(Clone)]
pub struct SafetyServer {
    db: Db,
    tool_router: ToolRouter<SafetyServer>,
}

fn answer(result: Result<Value, Failure>, tool: &str) -> Result<CallToolResult, ErrorData> {
    Ok(match result {
        Ok(v) => CallToolResult::structured(v),
        Err(f) => {
            let v = errors::to_json(&f);
            crate::log(&format!(
                "{tool}: error {}: {}",
                v["sqlstate"].as_str().unwrap_or("-"),
                v["message"].as_str().unwrap_or("")
            ));
            CallToolResult::structured_error(v)
        }
    })
}

#[tool_router]
impl SafetyServer {
    pub fn new(db: Db) -> SafetyServer {
        SafetyServer {
            db,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Run one read-only SQL statement (SELECT, SHOW, EXPLAIN, ...) inside BEGIN READ ONLY ... ROLLBACK, as your own database role. Returns {columns, rows, row_count}: each row an object of column name -> value (numbers, booleans and json as JSON, everything else as text; at most 500 rows, then truncated: true). Any write fails here (sqlstate 25006): use execute for writes.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn query(&self, Parameters(a): Parameters<SqlArgs>) -> Result<CallToolResult, ErrorData> {
        answer(actions::query(&self.db, &a.sql).await, "query")
    }

    #[tool(
        description = "Run one SQL statement that may write, in its own transaction (committed when it succeeds), as your own database role. Returns {rows_affected} and, for a statement that returns rows (RETURNING), {columns, rows, row_count}. In a protected database, a destructive statement (DELETE, DROP, TRUNCATE, and UPDATE or ALTER where configured) is refused with sqlstate 42501 until a human approves it: the error's next_step and request_approval_arguments say what to do: call request_approval, then wait_for_decision, then execute_approved with the same statement. Never try to get around a refusal.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    async fn execute(
        &self,
        Parameters(a): Parameters<SqlArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(actions::execute(&self.db, &a.sql).await, "execute")
    }

    #[tool(
        description = "Ask a human to approve one destructive statement that execute refused (step 2 of the approval flow). Creates a single-use approval token for operation + target, requested by your role, which approvers see with your task_id and reason. Returns {token, status: \"pending\", preview}: preview is EXPLAIN of the statement (never run): node_type and estimated_rows (the rows it would write), or the EXPLAIN error (DROP and TRUNCATE cannot be EXPLAINed). Then call wait_for_decision with the token.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn request_approval(
        &self,
        Parameters(a): Parameters<RequestArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = Request {
            operation: &a.operation,
            task_id: &a.task_id,
            target: a.target.as_deref().filter(|t| !t.trim().is_empty()),
            reason: a.reason.as_deref().filter(|t| !t.trim().is_empty()),
            verb: a.verb.as_deref().filter(|t| !t.trim().is_empty()),
            statement: &a.statement,
        };
        answer(
            actions::request_approval(&self.db, &r).await,
            "request_approval",
        )
    }

    #[tool(
        description = "Wait for a human's decision on an approval token (step 3 of the approval flow). Returns at once if it is already decided, otherwise when an approver decides or after timeout_seconds (default 30, at most 600). Returns {status, decided_by, comment, expires_at}: status is granted (call execute_approved with the token and the same statement before expires_at), denied (do not run it; tell the user the comment), cancelled, expired, used, or still pending (call wait_for_decision again).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn wait_for_decision(
        &self,
        Parameters(a): Parameters<WaitArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let seconds = a
            .timeout_seconds
            .unwrap_or(DEFAULT_WAIT_SECONDS)
            .min(MAX_WAIT_SECONDS);
        let progress_token = ctx.meta.get_progress_token();
        let peer = ctx.peer.clone();
        let ct = ctx.ct.clone();
        let hooks = Hooks {
            // Keeps a client that asked for progress from timing the call out.
            progress: move |waited: Duration| {
                let peer = peer.clone();
                let token = progress_token.clone();
                async move {
                    if let Some(token) = token {
                        let note = ProgressNotificationParam::new(token, waited.as_secs_f64())
                            .with_total(seconds as f64)
                            .with_message("waiting for a human approver");
                        let _ = peer.notify_progress(note).await;
                    }
                }
            },
            cancelled: async move { ct.cancelled().await },
        };
        let result =
            wait::wait_for_decision(&self.db, &a.token, Duration::from_secs(seconds), hooks).await;
        answer(result, "wait_for_decision")
    }

    #[tool(
        description = "Run a statement a human approved (step 4 of the approval flow): in one transaction, presents the granted token (set_config('ai_agent_safety.approval_token', token, true)) and runs the statement, then commits. The token works once, for the operation and target it was granted for; a second use is refused (sqlstate 42501). Returns {rows_affected} (and rows for RETURNING).",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    async fn execute_approved(
        &self,
        Parameters(a): Parameters<ApprovedArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        answer(
            actions::execute_approved(&self.db, a.token.trim(), &a.statement).await,
            "execute_approved",
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SafetyServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "ai-agent-safety-mcp",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }
}
