//! Shared helpers for the integration tests.
//!
//! The tests run against a real PostgreSQL 15 cluster with ai_agent_safety
//! preloaded, started by `scripts/test` (port in AAS_TEST_PORT, socket in /tmp,
//! trust for local connections, SCRAM for 127.0.0.1). Every test makes its own
//! databases and roles with unique names, so tests run in parallel.

use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use postgres;

pub fn port() -> u16 {
    std::env::var("AAS_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(55433)
}

pub fn try_connect(role: &str, db: &str) -> Result<Client, postgres::Error> {
    try_connect_with(role, db, "")
}

/// Connects with extra libpq `options` (for example `-c ai_agent_safety.task_id=x`).
pub fn try_connect_with(role: &str, db: &str, options: &str) -> Result<Client, postgres::Error> {
    let mut cfg = postgres::Config::new();
    cfg.host_path("/tmp")
        .port(port())
        .user(role)
        .dbname(db)
        .application_name("aas_integration");
    if !options.is_empty() {
        cfg.options(options);
    }
    cfg.connect(NoTls)
}

/// A connection whose NOTICEs (and other notices) are collected, in order.
pub fn connect_with_notices(
    role: &str,
    db: &str,
) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut cfg = postgres::Config::new();
    cfg.host_path("/tmp")
        .port(port())
        .user(role)
        .dbname(db)
        .application_name("aas_integration")
        .notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()));
    let c = cfg
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect as {role} to {db}: {}", describe(&e)));
    (c, seen)
}

pub fn connect(role: &str, db: &str) -> Client {
    try_connect(role, db).unwrap_or_else(|e| panic!("connect as {role} to {db}: {}", describe(&e)))
}

/// A superuser connection.
pub fn admin(db: &str) -> Client {
    connect("postgres", db)
}

static PREPARED: std::sync::Once = std::sync::Once::new();

/// Creates the extension in the `postgres` database once (which also creates the
/// ai_agent and ai_agent_approver roles).
pub fn prepare_cluster() {
    PREPARED.call_once(|| {
        admin("postgres")
            .batch_execute("CREATE EXTENSION IF NOT EXISTS ai_agent_safety")
            .unwrap_or_else(|e| panic!("CREATE EXTENSION in postgres: {}", describe(&e)));
    });
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 1_000_000_000;
    format!("{prefix}_{}_{t}_{n}", std::process::id())
}

/// Message, detail and hint of a database error, for assertions and panics.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!(
            "{} [{}] DETAIL: {} HINT: {}",
            d.message(),
            d.code().code(),
            d.detail().unwrap_or(""),
            d.hint().unwrap_or("")
        ),
        None => e.to_string(),
    }
}

/// Asserts the statement was refused with SQLSTATE 42501 and returns the full text.
pub fn assert_refused(r: Result<impl std::fmt::Debug, postgres::Error>) -> String {
    match r {
        Ok(v) => panic!("expected a refusal (42501), but the statement succeeded: {v:?}"),
        Err(e) => {
            let d = e
                .as_db_error()
                .unwrap_or_else(|| panic!("expected a database error, got {e}"));
            assert_eq!(d.code().code(), "42501", "wrong SQLSTATE: {}", describe(&e));
            describe(&e)
        }
    }
}

/// Asserts the statement failed with a database error of this SQLSTATE.
pub fn assert_sqlstate(r: Result<impl std::fmt::Debug, postgres::Error>, code: &str) -> String {
    match r {
        Ok(v) => panic!("expected SQLSTATE {code}, but the statement succeeded: {v:?}"),
        Err(e) => {
            let got = e
                .as_db_error()
                .map(|d| d.code().code().to_string())
                .unwrap_or_default();
            assert_eq!(got, code, "wrong SQLSTATE: {}", describe(&e));
            describe(&e)
        }
    }
}

pub fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

/// Waits (up to 30 s) until `sql` counts `n`: the audit writer loads
/// events a moment after their statements.
pub fn wait_for_count(c: &mut Client, sql: &str, n: i64) {
    let start = std::time::Instant::now();
    loop {
        let got = count(c, sql);
        if got == n {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{sql}: {got}, not {n}, after 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits (up to 60 s) while `held` says a recycle bin entry is still there,
/// with a statement in `nudge`'s database each time (events keep its audit
/// writer, which expires entries, at work).
pub fn wait_for_expiry(nudge: &mut Client, what: &str, mut held: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while held() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{what} did not expire within 60 s"
        );
        nudge.batch_execute("SELECT 1").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// One test's world: a protected database, an unprotected one, an agent role,
/// a non-agent owner role. Each database has the extension and a table
/// `public.orders` (10 rows) owned by the owner role, writable by the agent.
pub struct World {
    pub protected: String,
    pub open: String,
    pub agent: String,
    pub owner: String,
}

impl World {
    pub fn new(tag: &str) -> World {
        Self::with_settings(tag, &[])
    }

    /// `settings`: extra `name = 'value'` pairs set on the protected database.
    pub fn with_settings(tag: &str, settings: &[(&str, &str)]) -> World {
        let w = World {
            protected: unique(&format!("{tag}_prod")),
            open: unique(&format!("{tag}_dev")),
            agent: unique(&format!("{tag}_agent")),
            owner: unique(&format!("{tag}_owner")),
        };
        prepare_cluster();
        let mut a = admin("postgres");
        let until = in_one_hour(&mut a);
        for sql in [
            format!(
                "CREATE ROLE {} LOGIN IN ROLE ai_agent VALID UNTIL '{until}'",
                w.agent
            ),
            format!("CREATE ROLE {} LOGIN", w.owner),
            format!("CREATE DATABASE {} OWNER {}", w.protected, w.owner),
            format!("CREATE DATABASE {} OWNER {}", w.open, w.owner),
            format!(
                "ALTER DATABASE {} SET ai_agent_safety.require_approval = on",
                w.protected
            ),
        ] {
            a.batch_execute(&sql)
                .unwrap_or_else(|e| panic!("world setup: {sql}: {}", describe(&e)));
        }
        for (k, v) in settings {
            a.batch_execute(&format!("ALTER DATABASE {} SET {k} = '{v}'", w.protected))
                .unwrap();
        }
        for db in [&w.protected, &w.open] {
            let mut c = admin(db);
            c.batch_execute(&format!(
                "CREATE EXTENSION ai_agent_safety;
                 GRANT ALL ON SCHEMA public TO {agent}, {owner};
                 SET ROLE {owner};
                 CREATE TABLE public.orders (id int PRIMARY KEY, note text);
                 INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
                 GRANT ALL ON public.orders TO {agent};
                 RESET ROLE;",
                agent = w.agent,
                owner = w.owner
            ))
            .unwrap_or_else(|e| panic!("world setup in {db}: {}", describe(&e)));
        }
        w
    }

    /// `approver` grants `token` in the protected database.
    pub fn grant(&self, approver: &str, token: &str) {
        connect(approver, &self.protected)
            .query_one(
                "SELECT ai_agent_safety.grant_approval_token($1::text::uuid)",
                &[&token],
            )
            .unwrap_or_else(|e| panic!("grant {token}: {}", describe(&e)));
    }

    /// The token's status in the protected database, as an approver reads it.
    pub fn token_status(&self, token: &str) -> String {
        admin(&self.protected)
            .query_one(
                "SELECT status FROM ai_agent_safety.approval_tokens WHERE token = $1::text::uuid",
                &[&token],
            )
            .unwrap()
            .get(0)
    }

    pub fn agent_in(&self, db: &str) -> Client {
        connect(&self.agent, db)
    }
    pub fn owner_in(&self, db: &str) -> Client {
        connect(&self.owner, db)
    }
}

/// The server's major version (15, 17, 18): for the forms only some majors
/// have.
pub fn server_major(c: &mut Client) -> i32 {
    let v: String = c
        .query_one("SELECT current_setting('server_version_num')", &[])
        .unwrap()
        .get(0);
    v.parse::<i32>().unwrap() / 10000
}

/// now() + 1 hour, as text, from the server's clock.
/// For a form only later majors have: on this server it is a syntax error
/// (42601), so there is no gap to close here.
pub fn assert_not_a_statement_here(c: &mut Client, sql: &str) {
    let e = c.batch_execute(sql).unwrap_err();
    assert_eq!(
        e.code().map(|c| c.code()),
        Some("42601"),
        "{sql}: {}",
        describe(&e)
    );
}

pub fn in_one_hour(c: &mut Client) -> String {
    c.query_one("SELECT (now() + interval '1 hour')::text", &[])
        .unwrap()
        .get(0)
}

/// Connects to a cluster on another port (for example a second cluster started
/// by a test), over the unix socket in /tmp.
pub fn try_connect_port(port: u16, role: &str, db: &str) -> Result<Client, postgres::Error> {
    let mut cfg = postgres::Config::new();
    cfg.host_path("/tmp")
        .port(port)
        .user(role)
        .dbname(db)
        .application_name("aas_integration");
    cfg.connect(NoTls)
}

pub fn connect_port(port: u16, role: &str, db: &str) -> Client {
    try_connect_port(port, role, db)
        .unwrap_or_else(|e| panic!("connect as {role} to {db} on port {port}: {}", describe(&e)))
}

/// The repository root: AAS_REPO_ROOT (set by scripts/test), else the parent of
/// this crate's directory.
pub fn repo_root() -> std::path::PathBuf {
    match std::env::var_os("AAS_REPO_ROOT") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ has a parent")
            .to_path_buf(),
    }
}

/// Stops a cluster started by a test (`cluster_stop NAME`) however the test ends.
pub struct StopCluster(pub &'static str);

impl Drop for StopCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("source scripts/lib.sh && cluster_stop {}", self.0))
            .current_dir(repo_root())
            .output();
    }
}

/// Runs `source scripts/lib.sh && <command>` with bash from the repository root,
/// panicking with its output when it fails.
pub fn run_lib_sh(command: &str) {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source scripts/lib.sh && {command}"))
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("bash -c '{command}': {e}"));
    assert!(
        out.status.success(),
        "bash -c '{command}' failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts the statement was refused by ai_agent_safety's guard (SQLSTATE 42501
/// and the guard's wording, so a plain "permission denied" does not pass), and
/// returns the full text.
pub fn assert_guard_refused(r: Result<impl std::fmt::Debug, postgres::Error>) -> String {
    let msg = assert_refused(r);
    assert!(
        msg.contains("refused: agent role") && msg.contains("needs an approval token"),
        "refused with 42501, but not by the guard: {msg}"
    );
    msg
}

/// A new approver: a login role in ai_agent_approver, named `<tag>_dba_...`.
pub fn new_approver(tag: &str) -> String {
    let name = unique(&format!("{tag}_dba"));
    admin("postgres")
        .batch_execute(&format!(
            "CREATE ROLE {name} LOGIN IN ROLE ai_agent_approver"
        ))
        .unwrap_or_else(|e| panic!("create approver {name}: {}", describe(&e)));
    name
}
