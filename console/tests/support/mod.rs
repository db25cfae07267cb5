//! Helpers for the console's tests: a real cluster (AAS_TEST_PORT, default
//! 55433, started by scripts/test, with the library preloaded, trust on the
//! /tmp socket and SCRAM on 127.0.0.1), real roles with passwords, the real
//! console binary, and Debian's chromium driven through chromedriver.
//! Every wait is for a condition, with a deadline; nothing sleeps to
//! synchronise.

#![allow(dead_code)]

use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_postgres::{Client, NoTls};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn port() -> u16 {
    std::env::var("AAS_TEST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(55433)
}

/// A name no other test (or earlier run) uses: the prefix and 8 random hex
/// digits.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} [{}]", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

/// Over the /tmp socket (trust): the test's own administration and agents.
pub async fn connect(role: &str, db: &str) -> Client {
    try_connect(role, db)
        .await
        .unwrap_or_else(|e| panic!("connect as {role} to {db}: {}", describe(&e)))
}

pub async fn try_connect(role: &str, db: &str) -> Result<Client, tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path("/tmp")
        .port(port())
        .user(role)
        .dbname(db)
        .application_name("aas_console_test");
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

pub async fn admin(db: &str) -> Client {
    connect("postgres", db).await
}

/// Waits until `f` gives Some, at most DEADLINE, checking every 50 ms.
pub async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One test's world: a protected database with public.orders (10 rows), an
/// agent and an approver, both with passwords for SCRAM logins over TCP.
pub struct World {
    pub db: String,
    pub agent: String,
    pub approver: String,
    pub password: String,
}

impl World {
    pub async fn new(tag: &str) -> World {
        Self::named(
            &format!("{tag}_db"),
            &format!("{tag}_bot"),
            &format!("{tag}_dba"),
        )
        .await
    }

    /// With name prefixes of one's choosing (for readable screenshots).
    pub async fn named(db: &str, agent: &str, approver: &str) -> World {
        let w = World {
            db: unique(db),
            agent: unique(agent),
            approver: unique(approver),
            password: format!("pw-{}", uuid::Uuid::new_v4()),
        };
        let tag = db;
        let a = admin("postgres").await;
        // The first CREATE EXTENSION in the cluster makes the group roles;
        // several test binaries may race for it.
        if let Err(e) = a
            .batch_execute("CREATE EXTENSION IF NOT EXISTS ai_agent_safety")
            .await
        {
            let code = e.as_db_error().map(|d| d.code().code().to_string());
            assert!(
                matches!(code.as_deref(), Some("23505") | Some("42710")),
                "CREATE EXTENSION: {}",
                describe(&e)
            );
        }
        let owner = unique(&format!("{tag}_owner"));
        let until = in_one_hour(&a).await;
        for sql in [
            format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}' IN ROLE ai_agent VALID UNTIL '{until}'",
                w.agent, w.password
            ),
            format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}' IN ROLE ai_agent_approver",
                w.approver, w.password
            ),
            format!("CREATE ROLE {owner} LOGIN"),
            format!("CREATE DATABASE {} OWNER {owner}", w.db),
            format!(
                "ALTER DATABASE {} SET ai_agent_safety.require_approval = on",
                w.db
            ),
        ] {
            a.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("world setup: {sql}: {}", describe(&e)));
        }
        admin(&w.db)
            .await
            .batch_execute(&format!(
                "CREATE EXTENSION ai_agent_safety;
                 GRANT ALL ON SCHEMA public TO {agent};
                 SET ROLE {owner};
                 CREATE TABLE public.orders (id int PRIMARY KEY, note text);
                 INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 10) g;
                 GRANT ALL ON public.orders TO {agent};
                 RESET ROLE;
                 ANALYZE public.orders;",
                agent = w.agent,
                owner = owner
            ))
            .await
            .unwrap_or_else(|e| panic!("world setup in {}: {}", w.db, describe(&e)));
        w
    }

    /// `--database` for the console: TCP and SCRAM, as in production.
    pub fn dsn(&self) -> String {
        format!("host=127.0.0.1 port={} dbname={}", port(), self.db)
    }

    pub async fn agent(&self) -> Client {
        connect(&self.agent, &self.db).await
    }

    /// The agent asks for one DELETE on public.orders.
    pub async fn request(&self, agent: &Client, task: &str, reason: &str) -> uuid::Uuid {
        agent
            .query_one(
                "SELECT ai_agent_safety.request_approval_token('DELETE', $1, 'public.orders', $2)",
                &[&task, &reason],
            )
            .await
            .unwrap_or_else(|e| panic!("request_approval_token: {}", describe(&e)))
            .get(0)
    }

    pub async fn orders(&self) -> i64 {
        admin(&self.db)
            .await
            .query_one("SELECT count(*) FROM public.orders", &[])
            .await
            .unwrap()
            .get(0)
    }
}

pub async fn in_one_hour(c: &Client) -> String {
    c.query_one("SELECT (now() + interval '1 hour')::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// The console binary, running until dropped.
pub struct Console {
    pub url: String,
    pub log: std::path::PathBuf,
    _child: Child,
}

impl Console {
    /// Starts `ai-agent-safety-console --listen 127.0.0.1:0 <args>` and
    /// waits for the line that gives its address.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Console {
        let log = std::env::temp_dir().join(format!("{}.log", unique("aas_console")));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ai-agent-safety-console"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the console");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the console did not start in time")
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "the console exited: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Console {
            url,
            log,
            _child: child,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Console {
    /// The console's log stays only when the test failed, and is named then.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("console log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A plain HTTP client with its own cookie jar.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the first `name="csrf"` field in a page.
pub fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_string()
}

/// Signs in over plain HTTP; returns the CSRF token of the session.
pub async fn sign_in(
    http: &reqwest::Client,
    console: &Console,
    role: &str,
    password: &str,
) -> String {
    let page = http
        .get(format!("{}/login", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = http
        .post(format!("{}/login", console.url))
        .form(&[
            ("csrf", csrf_in(&page).as_str()),
            ("role", role),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in: {}", r.text().await.unwrap());
    let home = http
        .get(format!("{}/", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    csrf_in(&home)
}

pub mod browser;
