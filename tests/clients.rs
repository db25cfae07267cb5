//! Real agent clients. The MCP server postgres-mcp 0.3.0 (PyPI), driven over
//! stdio by the mcp Python SDK (`clients/postgres-mcp/drive.py`) the way an
//! agent drives it: each statement is one call of its `execute_sql` tool, and
//! the agent reads the tool's text answer.
//!
//! What postgres-mcp does with a call, which decides how an agent presents a
//! token through it:
//! - it runs the call's SQL text as one simple-protocol query inside its own
//!   transaction (psycopg's implicit BEGIN, then COMMIT), keeping comments;
//! - it takes a connection from a pool of 1 to 5 backends for each call, and
//!   after any error it throws the pool away and opens a new one;
//! - an error is not an MCP error: the tool returns normal text starting with
//!   `Error: `, with the server's DETAIL and HINT lines.
//!
//! So the token and the statement go in ONE call:
//! `SET LOCAL ai_agent_safety.approval_token = '<token>'; DELETE ...`, or
//! (recommended) the token as a tag in the statement:
//! `DELETE ... /*ai_agent_safety_token='<token>'*/`.
//!
//! `clients/postgres-mcp/setup.sh` makes the venv (Python >= 3.12, about 40 s
//! the first time, a no-op after); `scripts/test` runs it before the
//! integration tests and this test runs it again, so `cargo test --test
//! clients` works on its own.

use aas_integration::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

/// The venv's python, from `clients/postgres-mcp/setup.sh` (run once per test binary).
fn venv_python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let setup = repo_root().join("clients/postgres-mcp/setup.sh");
        let out = Command::new("bash")
            .arg(&setup)
            .current_dir(repo_root())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", setup.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} failed ({}):\n{stdout}\n{stderr}",
            setup.display(),
            out.status
        );
        let python = PathBuf::from(stdout.trim());
        assert!(
            python.is_file(),
            "setup.sh printed {python:?}, not the venv's python:\n{stderr}"
        );
        python
    })
}

/// One postgres-mcp process (so one connection pool), fed one `execute_sql`
/// call at a time through `drive.py session`.
struct McpAgent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    server_log: PathBuf,
}

/// What the agent got back from one `execute_sql` call.
#[derive(Debug)]
struct Answer {
    /// Not an error: the text does not start with `Error: `.
    ok: bool,
    /// isError of the MCP result (postgres-mcp never sets it for SQL errors).
    is_error: bool,
    text: String,
}

impl McpAgent {
    /// Starts postgres-mcp in unrestricted mode, connected as `role` to `db`
    /// over the unix socket in /tmp.
    fn start(role: &str, db: &str) -> McpAgent {
        let uri = format!("postgresql://{role}@/{db}?host=/tmp&port={}", port());
        let server_log =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.log", unique("mcp")));
        let mut child = Command::new(venv_python())
            .arg(repo_root().join("clients/postgres-mcp/drive.py"))
            .args([
                "--uri",
                &uri,
                "--access-mode",
                "unrestricted",
                "--server-log",
            ])
            .arg(&server_log)
            .arg("session")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start drive.py: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        McpAgent {
            child,
            stdin,
            stdout,
            server_log,
        }
    }

    /// One `execute_sql` call. drive.py answers every call, within its own
    /// timeout, or prints a fatal line and exits; either way this returns or
    /// panics, it does not wait forever.
    fn call(&mut self, sql: &str) -> Answer {
        writeln!(self.stdin, "{}", Value::String(sql.to_string()))
            .and_then(|_| self.stdin.flush())
            .unwrap_or_else(|e| panic!("send {sql:?} to drive.py: {e}\n{}", self.log()));
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("read drive.py's answer to {sql:?}: {e}"));
        assert!(
            n > 0,
            "drive.py ended before answering {sql:?}\n{}",
            self.log()
        );
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("drive.py printed {line:?}, not JSON: {e}"));
        assert!(
            v.get("fatal").is_none(),
            "drive.py failed on {sql:?}: {v}\n{}",
            self.log()
        );
        assert_eq!(v["sql"].as_str(), Some(sql), "answer to another call: {v}");
        let answer = Answer {
            ok: v["ok"].as_bool().expect("ok"),
            is_error: v["is_error"].as_bool().expect("is_error"),
            text: v["text"].as_str().expect("text").to_string(),
        };
        // The transcript, shown when the test fails (or with --nocapture).
        println!(
            "execute_sql: {sql}\n  -> {}",
            answer.text.replace('\n', "\n     ")
        );
        answer
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.server_log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        format!(
            "--- postgres-mcp's log ({}), last lines:\n{}",
            self.server_log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for McpAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first token id (a UUID) in `text`.
fn uuid_in(text: &str) -> Option<String> {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(35)).find_map(|i| {
        let s = &b[i..i + 36];
        let shape = s.iter().enumerate().all(|(j, c)| match j {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
        shape.then(|| String::from_utf8_lossy(s).into_owned())
    })
}

fn token_status(dba: &mut postgres::Client, token: &str) -> String {
    dba.query_one(
        "SELECT status FROM ai_agent_safety.approval_token_status($1::text::uuid)",
        &[&token],
    )
    .unwrap_or_else(|e| panic!("approval_token_status({token}): {}", describe(&e)))
    .get(0)
}

#[test]
fn postgres_mcp_agent_runs_one_approved_delete_with_set_local_in_the_same_call() {
    let w = World::new("mcp");
    let dba_role = new_approver("mcp");
    let mut dba = connect(&dba_role, &w.protected);
    let orders = |filter: &str| {
        count(
            &mut admin(&w.protected),
            &format!("SELECT count(*) FROM public.orders {filter}"),
        )
    };
    let mut agent = McpAgent::start(&w.agent, &w.protected);

    let who = agent.call("SELECT current_user AS who");
    assert!(who.ok, "{who:?}");
    assert_eq!(who.text, format!("[{{'who': '{}'}}]", w.agent));

    // (a) Refused, and the agent reads why and what to do. The refusal is
    // plain text (isError false) that starts with "Error: ".
    let a = agent.call("DELETE FROM orders WHERE id = 1");
    assert!(!a.ok && !a.is_error, "{a:?}");
    assert!(
        a.text.starts_with(&format!(
            "Error: DELETE on public.orders refused: agent role \"{}\" needs an approval token in database \"{}\"",
            w.agent, w.protected
        )),
        "{}",
        a.text
    );
    assert!(
        a.text.contains("\nDETAIL:  Database ") && a.text.contains("includes DELETE."),
        "{}",
        a.text
    );
    assert!(
        a.text.contains(
            "\nHINT:  Request approval with SELECT ai_agent_safety.request_approval_token('DELETE'::text, '<task id>'::text, 'public.orders'::text);"
        ),
        "{}",
        a.text
    );
    assert_eq!(orders(""), 10);

    // (b) The agent asks, through the same tool.
    let b = agent.call("SELECT request_approval_token('DELETE', 'mcp-cleanup-1', 'public.orders')");
    assert!(b.ok, "{b:?}");
    let token = uuid_in(&b.text).unwrap_or_else(|| panic!("no token in {:?}", b.text));
    assert_eq!(token_status(&mut dba, &token), "pending");

    // (c) A human approver grants it over their own connection.
    dba.query_one(
        "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'ok')",
        &[&token],
    )
    .unwrap_or_else(|e| panic!("grant {token}: {}", describe(&e)));
    assert_eq!(token_status(&mut dba, &token), "granted");

    // (f) Why the token goes in the same call as the statement. SET LOCAL in
    // a call of its own ends with that call's COMMIT, so the next call does
    // not present the token (deterministic: on whichever backend it runs):
    let f = agent.call(&format!(
        "SET LOCAL ai_agent_safety.approval_token = '{token}'"
    ));
    assert!(f.ok, "{f:?}");
    let f = agent.call("DELETE FROM orders WHERE id = 1");
    assert!(!f.ok, "{f:?}");
    // The refusal names the token the agent holds and did not present.
    assert!(
        f.text.contains(&format!(
            "it holds granted approval token {token} for this, but the statement did not present it"
        )),
        "{}",
        f.text
    );
    assert_eq!(token_status(&mut dba, &token), "granted");
    // A session-level `SET ai_agent_safety.approval_token = '<token>'` in one
    // call followed by the DELETE in a second call is not tested here, because what it does depends on the
    // pool: the SET stays on whichever backend ran it, and the DELETE may run
    // on another one (the pool has up to 5, and the error above made
    // postgres-mcp open a new pool), where it is refused again; or on the same
    // one, where it works, and the token id then stays set on that pooled
    // backend for whatever later call lands there.

    // (d) Token and statement in one call: one transaction, one backend.
    let d = agent.call(&format!(
        "SET LOCAL ai_agent_safety.approval_token = '{token}'; DELETE FROM orders WHERE id = 1 RETURNING id"
    ));
    assert!(d.ok, "{d:?}");
    assert_eq!(d.text, "[{'id': 1}]");
    assert_eq!(orders("WHERE id = 1"), 0);
    assert_eq!(orders(""), 9);
    assert_eq!(token_status(&mut dba, &token), "used");
    // The audit of the token names the DELETE alone, not the whole call.
    let used: Option<String> = dba
        .query_one(
            "SELECT used_statement FROM ai_agent_safety.approval_tokens WHERE token = $1::text::uuid",
            &[&token],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        used.as_deref(),
        Some("DELETE FROM orders WHERE id = 1 RETURNING id")
    );

    // (e) The same one-call form again: the token is spent.
    let e = agent.call(&format!(
        "SET LOCAL ai_agent_safety.approval_token = '{token}'; DELETE FROM orders WHERE id = 2 RETURNING id"
    ));
    assert!(!e.ok, "{e:?}");
    assert!(
        e.text.contains("needs an approval token")
            && e.text.contains(&format!(
                "\nDETAIL:  Approval token {token} cannot be used: it was already used at "
            ))
            && e.text.contains("\nHINT:  Request approval with"),
        "{}",
        e.text
    );
    assert_eq!(orders("WHERE id = 2"), 1);
    assert_eq!(orders(""), 9);

    // (g) The recommended form: the token as a comment tag in the statement.
    let g = agent.call("SELECT request_approval_token('DELETE', 'mcp-cleanup-2', 'public.orders')");
    let token = uuid_in(&g.text).unwrap_or_else(|| panic!("no token in {:?}", g.text));
    dba.query_one(
        "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'ok')",
        &[&token],
    )
    .unwrap();
    let g = agent.call(&format!(
        "DELETE FROM orders WHERE id = 2 RETURNING id /*ai_agent_safety_token='{token}'*/"
    ));
    assert!(g.ok, "{g:?}");
    assert_eq!(orders("WHERE id = 2"), 0);
    assert_eq!(token_status(&mut dba, &token), "used");
}
