//! End to end: the built `ai-agent-safety-mcp` binary, spawned over stdio and
//! driven by an rmcp client, against a real cluster with ai_agent_safety
//! preloaded (port AAS_TEST_PORT, default 55433, socket in /tmp, trust auth;
//! `scripts/test` starts it). Each test makes its own agent, approver and
//! protected database, so tests run in parallel.
//!
//! No sleeps: the test grants a token only after the server has logged (on
//! its stderr, which the test reads) that it is listening for the decision.

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Map, Value};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, OnceCell};
use tokio_postgres::{Client, NoTls};

fn port() -> u16 {
    std::env::var("AAS_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(55433)
}

/// A connection over the /tmp socket (trust).
async fn connect(user: &str, db: &str) -> Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path("/tmp")
        .port(port())
        .user(user)
        .dbname(db)
        .application_name("aas_mcp_test");
    let (client, connection) = cfg.connect(NoTls).await.unwrap_or_else(|e| {
        panic!(
            "connect as {user} to {db} on port {} (is a preloaded cluster running? \
             scripts/test starts one; or set AAS_TEST_PORT): {e}",
            port()
        )
    });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn sql(c: &Client, statement: &str) {
    c.batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {}", db_error(&e)));
}

fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} [{}] {:?}", d.message(), d.code().code(), d.hint()),
        None => e.to_string(),
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test or run uses: pid and a counter (and the clock, for
/// names left behind by an earlier run with the same pid).
fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 1_000_000_000;
    format!("{prefix}_{}_{t}_{n}", std::process::id())
}

static PREPARED: OnceCell<()> = OnceCell::const_new();

/// One test's world: an agent role, an approver role, and a protected
/// database with public.orders (5 rows) that the agent may read and delete.
struct World {
    agent: String,
    approver: String,
    db: String,
}

impl World {
    async fn new(tag: &str) -> World {
        // As the integration tests do: the first CREATE EXTENSION in the
        // cluster makes the ai_agent and ai_agent_approver group roles.
        PREPARED
            .get_or_init(|| async {
                sql(
                    &connect("postgres", "postgres").await,
                    "CREATE EXTENSION IF NOT EXISTS ai_agent_safety",
                )
                .await;
            })
            .await;
        let w = World {
            agent: unique(&format!("mcp_{tag}_agent")),
            approver: unique(&format!("mcp_{tag}_dba")),
            db: unique(&format!("mcp_{tag}_prod")),
        };
        let admin = connect("postgres", "postgres").await;
        let until: String = admin
            .query_one("SELECT (now() + interval '1 hour')::text", &[])
            .await
            .unwrap()
            .get(0);
        for statement in [
            format!(
                "CREATE ROLE {} LOGIN IN ROLE ai_agent VALID UNTIL '{until}'",
                w.agent
            ),
            format!("CREATE ROLE {} LOGIN IN ROLE ai_agent_approver", w.approver),
            format!("CREATE DATABASE {}", w.db),
            format!(
                "ALTER DATABASE {} SET ai_agent_safety.require_approval = true",
                w.db
            ),
        ] {
            sql(&admin, &statement).await;
        }
        sql(
            &connect("postgres", &w.db).await,
            &format!(
                "CREATE EXTENSION ai_agent_safety;
                 CREATE TABLE public.orders (id int PRIMARY KEY, note text, amount numeric);
                 INSERT INTO public.orders SELECT g, 'order ' || g, g * 1.5 FROM generate_series(1, 5) g;
                 GRANT SELECT, DELETE ON public.orders TO {};",
                w.agent
            ),
        )
        .await;
        w
    }

    fn dsn(&self) -> String {
        format!(
            "host=/tmp port={} user={} dbname={}",
            port(),
            self.agent,
            self.db
        )
    }

    async fn approver(&self) -> Client {
        connect(&self.approver, &self.db).await
    }

    async fn rows_left(&self) -> i64 {
        connect("postgres", &self.db)
            .await
            .query_one("SELECT count(*) FROM public.orders", &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// The server, spawned with DATABASE_URL for the world's agent, and the
/// lines it writes on stderr.
struct Server {
    client: RunningService<RoleClient, ()>,
    stderr: mpsc::UnboundedReceiver<String>,
}

impl Server {
    async fn start(w: &World) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ai-agent-safety-mcp"));
        cmd.env("DATABASE_URL", w.dsn());
        let (transport, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ai-agent-safety-mcp");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(stderr.expect("piped stderr")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[server] {line}");
                let _ = tx.send(line);
            }
        });
        let client = ().serve(transport).await.expect("MCP handshake");
        Server { client, stderr: rx }
    }

    async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        call(self.client.peer(), tool, args).await
    }

    /// Waits until the server logs a line containing every one of `parts`.
    async fn logged(&mut self, parts: &[&str]) {
        while let Some(line) = self.stderr.recv().await {
            if parts.iter().all(|p| line.contains(p)) {
                return;
            }
        }
        panic!("the server's stderr closed before it logged {parts:?}");
    }
}

async fn call(peer: &Peer<RoleClient>, tool: &str, args: Value) -> CallToolResult {
    let args: Map<String, Value> = args.as_object().cloned().expect("arguments object");
    peer.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// The structured content of a successful call.
fn ok(r: CallToolResult, what: &str) -> Value {
    let s = r.structured_content.clone().unwrap_or(Value::Null);
    assert_eq!(r.is_error, Some(false), "{what} failed: {s}");
    s
}

/// The structured content of a tool error.
fn tool_error(r: CallToolResult, what: &str) -> Value {
    let s = r.structured_content.clone().unwrap_or(Value::Null);
    assert_eq!(r.is_error, Some(true), "{what} should fail: {s}");
    for key in ["sqlstate", "message", "detail", "hint", "next_step"] {
        assert!(s.get(key).is_some(), "{what}: no {key} in {s}");
    }
    assert!(s["next_step"].is_string(), "{what}: {s}");
    s
}

/// The message and detail of a tool error, where the refusal says why.
fn said(e: &Value) -> String {
    format!(
        "{} {}",
        e["message"].as_str().unwrap_or(""),
        e["detail"].as_str().unwrap_or("")
    )
}

const DELETE_ONE: &str = "DELETE FROM public.orders WHERE id = 1";

#[tokio::test]
async fn the_whole_approval_loop() {
    let w = World::new("loop").await;
    let mut server = Server::start(&w).await;

    // The tool list teaches the flow.
    let tools = server.client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "execute",
            "execute_approved",
            "query",
            "request_approval",
            "wait_for_decision"
        ]
    );
    let execute = tools.iter().find(|t| t.name == "execute").unwrap();
    let text = execute.description.as_deref().unwrap_or("");
    for step in ["request_approval", "wait_for_decision", "execute_approved"] {
        assert!(text.contains(step), "execute's description: {text}");
    }

    // query: rows as JSON.
    let r = ok(
        server
            .call(
                "query",
                json!({"sql": "SELECT id, note, amount, id > 2 AS big FROM public.orders ORDER BY id"}),
            )
            .await,
        "query",
    );
    assert_eq!(r["row_count"], 5);
    assert_eq!(r["columns"], json!(["id", "note", "amount", "big"]));
    assert_eq!(
        r["rows"][0],
        json!({"id": 1, "note": "order 1", "amount": 1.5, "big": false})
    );

    // query is read-only, and one statement cannot end its transaction for a second.
    let e = tool_error(
        server
            .call(
                "query",
                json!({"sql": "INSERT INTO public.orders VALUES (99, 'x', 0)"}),
            )
            .await,
        "INSERT in query",
    );
    assert_eq!(e["sqlstate"], "25006", "{e}");
    let e = tool_error(
        server
            .call(
                "query",
                json!({"sql": "ROLLBACK; INSERT INTO public.orders VALUES (99, 'x', 0)"}),
            )
            .await,
        "two statements in query",
    );
    assert_eq!(e["sqlstate"], "42601", "{e}");

    // execute: the guard refuses the DELETE, and the error says what to do.
    let e = tool_error(
        server.call("execute", json!({"sql": DELETE_ONE})).await,
        "DELETE without a token",
    );
    assert_eq!(e["sqlstate"], "42501", "{e}");
    let next = e["next_step"].as_str().unwrap();
    for step in ["request_approval", "wait_for_decision", "execute_approved"] {
        assert!(next.contains(step), "next_step: {next}");
    }
    assert_eq!(
        e["request_approval_arguments"]["operation"], "DELETE",
        "{e}"
    );
    assert_eq!(
        e["request_approval_arguments"]["target"], "public.orders",
        "{e}"
    );

    // request_approval: a pending token and a preview from EXPLAIN.
    let r = ok(
        server
            .call(
                "request_approval",
                json!({
                    "operation": "DELETE",
                    "target": "public.orders",
                    "task_id": "mcp-e2e",
                    "reason": "remove the test order 1",
                    "statement": DELETE_ONE,
                }),
            )
            .await,
        "request_approval",
    );
    assert_eq!(r["status"], "pending", "{r}");
    let token = r["token"].as_str().expect("token").to_string();
    assert_eq!(token.len(), 36, "{r}");
    assert_eq!(r["preview"]["estimated_rows"], 1, "{r}");
    assert_eq!(r["preview"]["node_type"], "ModifyTable", "{r}");
    assert_eq!(w.rows_left().await, 5, "the preview ran nothing");

    // A pending token does not work yet.
    let e = tool_error(
        server
            .call(
                "execute_approved",
                json!({"token": token, "statement": DELETE_ONE}),
            )
            .await,
        "execute_approved with a pending token",
    );
    assert_eq!(e["sqlstate"], "42501", "{e}");
    assert!(said(&e).contains("pending"), "{e}");

    // wait_for_decision, granted while it waits.
    let peer = server.client.peer().clone();
    let waiting = {
        let token = token.clone();
        tokio::spawn(async move {
            call(
                &peer,
                "wait_for_decision",
                json!({"token": token, "timeout_seconds": 300}),
            )
            .await
        })
    };
    server.logged(&[&token, "is pending; listening"]).await;
    w.approver()
        .await
        .query_one(
            "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'ok')",
            &[&token],
        )
        .await
        .unwrap_or_else(|e| panic!("grant: {}", db_error(&e)));
    let r = ok(waiting.await.expect("wait task"), "wait_for_decision");
    assert_eq!(r["status"], "granted", "{r}");
    assert_eq!(r["comment"], "ok", "{r}");
    assert_eq!(r["decided_by"], w.approver.as_str(), "{r}");
    assert!(r["expires_at"].is_string(), "{r}");
    // Woken by the decision's notification, not by a periodic read.
    assert_eq!(
        r["seen_by"], "notification",
        "the grant's NOTIFY on ai_agent_safety_decisions did not wake the wait \
         (is the installed extension older than that NOTIFY?): {r}"
    );

    // execute_approved: exactly one row, once.
    let r = ok(
        server
            .call(
                "execute_approved",
                json!({"token": token, "statement": DELETE_ONE}),
            )
            .await,
        "execute_approved",
    );
    assert_eq!(r["rows_affected"], 1, "{r}");
    assert_eq!(w.rows_left().await, 4);

    let e = tool_error(
        server
            .call(
                "execute_approved",
                json!({"token": token, "statement": DELETE_ONE}),
            )
            .await,
        "the same call again (the token's second use)",
    );
    assert_eq!(e["sqlstate"], "42501", "{e}");
    assert!(said(&e).contains("already used"), "{e}");
    assert!(
        e["next_step"]
            .as_str()
            .unwrap()
            .contains("request_approval"),
        "{e}"
    );
    assert_eq!(w.rows_left().await, 4);

    // Waiting on a used token answers at once.
    let r = ok(
        server
            .call("wait_for_decision", json!({"token": token}))
            .await,
        "wait on a used token",
    );
    assert_eq!(r["status"], "used", "{r}");

    server.client.cancel().await.expect("close the server");
}

#[tokio::test]
async fn denied_and_undecided_tokens() {
    let w = World::new("deny").await;
    let server = Server::start(&w).await;
    let request = |statement: &str, operation: &str| {
        json!({
            "operation": operation,
            "target": "public.orders",
            "task_id": "mcp-e2e-deny",
            "reason": "cleanup",
            "statement": statement,
        })
    };

    // Denied before the wait: the wait answers at once.
    let r = ok(
        server
            .call("request_approval", request(DELETE_ONE, "DELETE"))
            .await,
        "request_approval",
    );
    let token = r["token"].as_str().unwrap().to_string();
    w.approver()
        .await
        .query_one(
            "SELECT ai_agent_safety.deny_approval_token($1::text::uuid, 'not today')",
            &[&token],
        )
        .await
        .unwrap_or_else(|e| panic!("deny: {}", db_error(&e)));
    let r = ok(
        server
            .call(
                "wait_for_decision",
                json!({"token": token, "timeout_seconds": 300}),
            )
            .await,
        "wait_for_decision",
    );
    assert_eq!(r["status"], "denied", "{r}");
    assert_eq!(r["comment"], "not today", "{r}");
    assert_eq!(r["decided_by"], w.approver.as_str(), "{r}");
    assert_eq!(r["seen_by"], "first_read", "{r}");

    let e = tool_error(
        server
            .call(
                "execute_approved",
                json!({"token": token, "statement": DELETE_ONE}),
            )
            .await,
        "execute_approved with a denied token",
    );
    assert_eq!(e["sqlstate"], "42501", "{e}");
    assert!(said(&e).contains("denied"), "{e}");
    assert_eq!(w.rows_left().await, 5);

    // A statement EXPLAIN cannot plan: the request is made, the preview says why.
    let r = ok(
        server
            .call(
                "request_approval",
                request("DROP TABLE public.orders", "DROP"),
            )
            .await,
        "request_approval for DROP",
    );
    assert_eq!(r["status"], "pending", "{r}");
    assert!(r["preview"]["error"].is_string(), "{r}");

    // No decision within the time: still pending (timeout 0 only reads).
    let r = ok(
        server
            .call(
                "wait_for_decision",
                json!({"token": r["token"], "timeout_seconds": 0}),
            )
            .await,
        "wait_for_decision with timeout 0",
    );
    assert_eq!(r["status"], "pending", "{r}");
    assert_eq!(r["seen_by"], "final_read", "{r}");
    assert!(r["next_step"]
        .as_str()
        .unwrap()
        .contains("wait_for_decision"));

    // An argument error is a tool error too.
    let e = tool_error(
        server
            .call(
                "wait_for_decision",
                json!({"token": "not-a-uuid", "timeout_seconds": 0}),
            )
            .await,
        "a malformed token",
    );
    assert_eq!(e["sqlstate"], "22P02", "{e}");

    server.client.cancel().await.expect("close the server");
}

/// The incident's statement: DROP DATABASE cannot run inside a transaction
/// block, so execute and execute_approved run it on its own, and the token
/// (requested in another database, with target `DATABASE x`) still covers it.
#[tokio::test]
async fn drop_database_with_approval() {
    let w = World::new("dropdb").await;
    let doomed = unique("mcp_doomed");
    let admin = connect("postgres", "postgres").await;
    sql(
        &admin,
        &format!("CREATE DATABASE {doomed} OWNER {}", w.agent),
    )
    .await;
    sql(
        &admin,
        &format!("ALTER DATABASE {doomed} SET ai_agent_safety.require_approval = true"),
    )
    .await;
    let server = Server::start(&w).await;
    let drop = format!("DROP DATABASE {doomed}");

    let e = tool_error(
        server.call("execute", json!({"sql": drop})).await,
        "DROP DATABASE without a token",
    );
    assert_eq!(e["sqlstate"], "42501", "{e}");
    let args = &e["request_approval_arguments"];
    assert_eq!(args["operation"], "DROP", "{e}");
    assert_eq!(args["target"], format!("DATABASE {doomed}"), "{e}");

    let r = ok(
        server
            .call(
                "request_approval",
                json!({
                    "operation": "DROP",
                    "target": args["target"],
                    "task_id": "mcp-e2e-dropdb",
                    "reason": "the database is unused",
                    "statement": drop,
                }),
            )
            .await,
        "request_approval",
    );
    let token = r["token"].as_str().unwrap().to_string();
    assert!(r["preview"]["error"].is_string(), "{r}");
    w.approver()
        .await
        .query_one(
            "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'it is unused')",
            &[&token],
        )
        .await
        .unwrap_or_else(|e| panic!("grant: {}", db_error(&e)));

    let r = ok(
        server
            .call(
                "execute_approved",
                json!({"token": token, "statement": drop}),
            )
            .await,
        "execute_approved DROP DATABASE",
    );
    assert!(r["note"].is_string(), "{r}");
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&doomed],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the database was dropped");

    let r = ok(
        server
            .call("wait_for_decision", json!({"token": token}))
            .await,
        "status after use",
    );
    assert_eq!(r["status"], "used", "{r}");
    server.client.cancel().await.expect("close the server");
}
