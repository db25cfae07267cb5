//! The console over plain HTTP: CSRF protection, the session cookie, and
//! webhook notifications delivered to a test server on 127.0.0.1.

mod support;

use axum::http::StatusCode;
use std::sync::{Arc, Mutex};
use support::{admin, http, sign_in, until, Console, World};

/// POSTs without the session's CSRF token are refused with 403, before
/// anything runs; the session cookie is HttpOnly and SameSite=Strict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_need_the_csrf_token() {
    let w = World::new("ccsrf").await;
    let console = Console::start(&["--database", &w.dsn()], &[]).await;
    let c = http();

    let r = c
        .get(format!("{}/login", console.url))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("aas_console="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        r.headers()
            .get("content-security-policy")
            .is_some_and(|v| v.to_str().unwrap().contains("frame-ancestors 'none'")),
        "CSP header"
    );

    // Sign-in without, or with a wrong, token.
    let creds = [("role", w.approver.as_str()), ("password", &w.password)];
    let r = c
        .post(format!("{}/login", console.url))
        .form(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(format!("{}/login", console.url))
        .form(&[
            ("csrf", "0".repeat(64).as_str()),
            ("role", &w.approver),
            ("password", &w.password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Signed in, a grant without the token is refused and grants nothing.
    let csrf = sign_in(&c, &console, &w.approver, &w.password).await;
    let agent = w.agent().await;
    // A request bound to its statement shows the statement to the approver.
    let bound: uuid::Uuid = agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 'bound-task', statement => 'DELETE FROM orders WHERE id = 3')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let page = c
        .get(format!("{}/db/{}/request/{bound}", console.url, w.db))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Exactly this statement") && page.contains("DELETE FROM orders WHERE id = 3"),
        "{page}"
    );
    let t = w.request(&agent, "csrf-task", "test").await;
    let grant = format!("{}/db/{}/request/{t}/grant", console.url, w.db);
    let r = c
        .post(&grant)
        .form(&[("comment", "sneaky")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Another session's token does not do either.
    let other = http();
    let other_csrf = sign_in(&other, &console, &w.approver, &w.password).await;
    assert_ne!(other_csrf, csrf);
    let r = c
        .post(&grant)
        .form(&[("csrf", other_csrf.as_str()), ("comment", "sneaky")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let status: String = admin(&w.db)
        .await
        .query_one(
            "SELECT status FROM ai_agent_safety.approval_tokens WHERE token = $1",
            &[&t],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "pending");
    // With it, the grant goes through.
    let r = c
        .post(&grant)
        .form(&[("csrf", csrf.as_str()), ("comment", "fine")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Sign-out needs it too.
    let r = c
        .post(format!("{}/logout", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// What the test webhook server received, and how it answers.
#[derive(Default)]
struct Hook {
    bodies: Vec<serde_json::Value>,
    fail_first: usize,
}

/// A webhook receiver on 127.0.0.1: answers 500 to the first `fail_first`
/// POSTs, then 200; records every body.
async fn hook_server(fail_first: usize) -> (String, Arc<Mutex<Hook>>) {
    let hook = Arc::new(Mutex::new(Hook {
        fail_first,
        ..Hook::default()
    }));
    let state = hook.clone();
    let app = axum::Router::new().route(
        "/hook/secret-path",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let state = state.clone();
            async move {
                let mut h = state.lock().unwrap();
                h.bodies.push(body);
                if h.bodies.len() <= h.fail_first {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/secret-path", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hook)
}

/// Each new request is posted as {"text": ...} with requester, operation,
/// target, task, reason and the request page's link, retried after a
/// failure, without the statement's data values; a webhook that keeps
/// failing is shown on the pending page. The console's own watch role (only
/// SELECT grants) hears the request while nobody is signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_delivered() {
    let w = World::new("chook").await;
    let watcher = support::unique("chook_watch");
    admin("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {watcher} LOGIN PASSWORD '{}'",
            w.password
        ))
        .await
        .unwrap();
    admin(&w.db)
        .await
        .batch_execute(&format!(
            "GRANT SELECT ON ai_agent_safety.pending_requests, ai_agent_safety.renames TO {watcher}"
        ))
        .await
        .unwrap();
    let (good, hook) = hook_server(1).await;
    let (bad, bad_hook) = hook_server(usize::MAX).await;
    let console = Console::start(
        &[
            "--database",
            &w.dsn(),
            "--webhook",
            &good,
            "--webhook",
            &bad,
            "--webhook-attempts",
            "3",
            "--webhook-backoff-ms",
            "20",
            "--public-url",
            "https://console.example",
            "--watch-as",
            &watcher,
        ],
        &[("AAS_CONSOLE_WATCH_PASSWORD", &w.password)],
    )
    .await;
    // The watch connection is listening once its LISTEN was its last statement.
    until("the watch role to LISTEN", || async {
        let n: i64 = admin(&w.db)
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE usename = $1 AND datname = $2 AND query LIKE 'LISTEN%' AND state = 'idle'",
                &[&watcher, &w.db],
            )
            .await
            .unwrap()
            .get(0);
        (n > 0).then_some(())
    })
    .await;

    let agent = w.agent().await;
    // A refused statement with a data value in it, which must not leak.
    let e = agent
        .execute(
            "DELETE FROM public.orders WHERE note = 'secret-value-7'",
            &[],
        )
        .await
        .unwrap_err();
    assert!(support::describe(&e).contains("[42501]"));
    let t = w.request(&agent, "hook-task-9", "stale test data").await;

    let bodies = until("two POSTs to the webhook", || async {
        let h = hook.lock().unwrap();
        (h.bodies.len() >= 2).then(|| h.bodies.clone())
    })
    .await;
    assert_eq!(bodies[0], bodies[1], "a retry sends the same message");
    let obj = bodies[0].as_object().unwrap();
    assert_eq!(obj.len(), 1, "only text: {obj:?}");
    let text = obj["text"].as_str().unwrap();
    for expected in [
        format!(
            "{} asks to run one DELETE on public.orders in database {}",
            w.agent, w.db
        ),
        "(task hook-task-9)".to_string(),
        "Reason: stale test data".to_string(),
        format!("Review: https://console.example/db/{}/request/{t}", w.db),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in {text:?}");
    }
    assert!(
        !text.contains("secret-value-7"),
        "statement data leaked: {text}"
    );

    // The failing webhook: three attempts, then shown as failed.
    let c = http();
    sign_in(&c, &console, &w.approver, &w.password).await;
    let page = until("the failure on the pending page", || async {
        let page = c
            .get(format!("{}/", console.url))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        page.contains("id=\"webhook-failures\"").then_some(page)
    })
    .await;
    assert!(page.contains("HTTP 500"), "{page}");
    assert_eq!(bad_hook.lock().unwrap().bodies.len(), 3);
    let deliveries = c
        .get(format!("{}/webhooks", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(deliveries.contains("delivered"), "{deliveries}");
    assert!(
        !deliveries.contains("secret-path"),
        "webhook URL paths are secret"
    );
    assert!(!console.log_text().contains("secret-path"), "nor logged");
    assert!(
        !console.log_text().contains(&w.password),
        "no password in the log"
    );
}

/// With --tls-cert and --tls-key the console serves HTTPS (rustls) and the
/// session cookie is Secure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https() {
    let w = World::new("ctls").await;
    let dir = std::env::temp_dir().join(support::unique("aas_console_tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = Console::start(
        &[
            "--database",
            &w.dsn(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(
        console.url.starts_with("https://127.0.0.1:"),
        "{}",
        console.url
    );
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(root)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .get(format!("{}/login", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let page = r.text().await.unwrap();
    let r = c
        .post(format!("{}/login", console.url))
        .form(&[
            ("csrf", support::csrf_in(&page).as_str()),
            ("role", &w.approver),
            ("password", &w.password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Plain HTTP to the HTTPS port gets nothing.
    let plain = console.url.replace("https://", "http://");
    assert!(http().get(format!("{plain}/login")).send().await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without --database, the databases where the extension is created are
/// discovered at sign-in, and each page says which database it shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_databases() {
    let tag = support::unique("cdisc");
    let w = World::new(&tag).await;
    let plain = format!("{tag}_plain");
    admin("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {plain}"))
        .await
        .unwrap();
    let port = support::port().to_string();
    // Only this run's databases: the cluster holds many more (every test's).
    let like = format!("{tag}%");
    let console = Console::start(&["--pg-port", &port, "--discover-like", &like], &[]).await;
    let c = http();
    sign_in(&c, &console, &w.approver, &w.password).await;
    let home = c
        .get(format!("{}/", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dbs = &home[home.find("class=\"dbs\"").expect("the databases line")..];
    let dbs = &dbs[..dbs.find("</p>").unwrap()];
    assert!(dbs.contains(&format!("<strong>{}</strong>", w.db)), "{dbs}");
    assert!(!dbs.contains(&plain), "no extension there: {dbs}");
    let agent = w.agent().await;
    let t = w.request(&agent, "disc-task", "found").await;
    let page = c
        .get(format!("{}/db/{}/request/{t}", console.url, w.db))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("disc-task"), "{page}");
}

/// With --webhook-include-statement the message carries the agent's last
/// refused statement, data values and all. Here the notice is heard on the
/// signed-in approver's own connection (no watch role).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_can_include_the_statement() {
    let w = World::new("cstmt").await;
    let (url, hook) = hook_server(0).await;
    let console = Console::start(
        &[
            "--database",
            &w.dsn(),
            "--webhook",
            &url,
            "--webhook-include-statement",
        ],
        &[],
    )
    .await;
    let c = http();
    sign_in(&c, &console, &w.approver, &w.password).await;

    let agent = w.agent().await;
    let refused = "DELETE FROM public.orders WHERE note = 'secret-value-8'";
    assert!(agent.execute(refused, &[]).await.is_err());
    // The audit writer loads refusals every 100 ms: wait until it has.
    until("the refusal in the audit log", || async {
        let n: i64 = admin(&w.db)
            .await
            .query_one(
                "SELECT count(*) FROM ai_agent_safety.audit_log WHERE statement = $1",
                &[&refused],
            )
            .await
            .unwrap()
            .get(0);
        (n > 0).then_some(())
    })
    .await;
    w.request(&agent, "stmt-task", "with the statement").await;
    let text = until("a POST to the webhook", || async {
        let h = hook.lock().unwrap();
        h.bodies
            .first()
            .map(|b| b["text"].as_str().unwrap().to_string())
    })
    .await;
    assert!(text.contains(&format!("Statement: {refused}")), "{text}");
    assert!(text.contains("(task stmt-task)"), "{text}");
}

/// A request that carries its statement shows the approver its preview (the
/// rows per table, and how the table is reached) and its row cap; a grant
/// can lower the cap, and the agent's statement is then held to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_page_shows_the_preview_and_a_grant_lowers_the_cap() {
    let w = World::new("cprev").await;
    let console = Console::start(&["--database", &w.dsn()], &[]).await;
    let c = http();
    let csrf = sign_in(&c, &console, &w.approver, &w.password).await;
    let agent = w.agent().await;
    let t: uuid::Uuid = agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 'prev-task', statement => 'DELETE FROM orders WHERE id <= 4')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let url = format!("{}/db/{}/request/{t}", console.url, w.db);
    let page = c.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"preview\""), "{page}");
    assert!(page.contains("public.orders"), "{page}");
    assert!(page.contains("id=\"preview-rows\">4<"), "{page}");
    assert!(page.contains("at most 4 rows"), "{page}");
    assert!(page.contains("name=\"max_rows\""), "{page}");
    // A cap above the request's is the database's refusal, shown as such.
    let r = c
        .post(format!("{url}/grant"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("comment", "more"),
            ("max_rows", "10"),
        ])
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::SEE_OTHER);
    let body = r.text().await.unwrap();
    assert!(body.contains("max_rows"), "{body}");
    // Lowered to 2: the grant goes through, and 4 rows are then too many.
    let r = c
        .post(format!("{url}/grant"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("comment", "two at most"),
            ("max_rows", "2"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let e = agent
        .batch_execute(&format!(
            "DELETE FROM orders WHERE id <= 4 /*ai_agent_safety_token='{t}'*/"
        ))
        .await
        .unwrap_err();
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("over the cap of 2 rows"), "{msg}");
    // Not a number: refused before anything runs.
    let t2 = w.request(&agent, "prev-task-2", "test").await;
    let r = c
        .post(format!("{}/db/{}/request/{t2}/grant", console.url, w.db))
        .form(&[("csrf", csrf.as_str()), ("max_rows", "lots")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Reviewed transactions are listed with what each statement changed, and
/// an approver commits or rolls one back from the page; a refusal is the
/// database's own words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_committed_or_rolled_back_from_the_page() {
    let w = World::new("crev").await;
    let console = Console::start(&["--database", &w.dsn()], &[]).await;
    let c = http();
    let csrf = sign_in(&c, &console, &w.approver, &w.password).await;
    let agent = w.agent().await;
    let gids = [format!("review_{}_a", w.db), format!("review_{}_b", w.db)];
    for (i, gid) in gids.iter().enumerate() {
        agent
            .batch_execute(&format!(
                "BEGIN; SELECT ai_agent_safety.begin_review('crev-{i}', 'old orders');
                 DELETE FROM orders WHERE id = {};
                 PREPARE TRANSACTION '{gid}';",
                i + 1
            ))
            .await
            .unwrap();
    }
    let page = c
        .get(format!("{}/reviews", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&gids[0]) && page.contains(&gids[1]), "{page}");
    assert!(page.contains("DELETE FROM orders WHERE id = 1"), "{page}");
    let post = |action: &str, gid: &str| {
        c.post(format!("{}/reviews/{action}", console.url))
            .form(&[("csrf", csrf.as_str()), ("db", w.db.as_str()), ("gid", gid)])
            .send()
    };
    assert_eq!(
        post("commit", &gids[0]).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        post("rollback", &gids[1]).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let a = admin(&w.db).await;
    let left: Vec<i32> = a
        .query("SELECT id FROM orders WHERE id <= 2 ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        vec![2],
        "the committed review deleted order 1, the rolled back one kept 2"
    );
    // One that is not there: the database's refusal, on the page.
    let r = post("commit", &gids[0]).await.unwrap();
    assert_ne!(r.status(), StatusCode::SEE_OTHER);
    let body = r.text().await.unwrap();
    assert!(body.contains("does not exist"), "{body}");
}

/// The recycle bin page lists what an agent dropped; Restore brings a
/// database back, Purge drops one for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recycle_bin_page_restores_and_purges() {
    let w = World::new("crb").await;
    let console = Console::start(&["--database", &w.dsn()], &[]).await;
    let c = http();
    let csrf = sign_in(&c, &console, &w.approver, &w.password).await;
    let a = admin("postgres").await;
    let dbs = [format!("{}_keep", w.db), format!("{}_gone", w.db)];
    for d in &dbs {
        a.batch_execute(&format!("CREATE DATABASE {d} OWNER {}", w.agent))
            .await
            .unwrap();
    }
    let agent = w.agent().await;
    for d in &dbs {
        agent
            .batch_execute(&format!("DROP DATABASE {d}"))
            .await
            .unwrap();
    }
    let page = c
        .get(format!("{}/recycle", console.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&dbs[0]) && page.contains(&dbs[1]), "{page}");
    let id = |name: &str| {
        let a = &a;
        let name = name.to_string();
        async move {
            a.query_one(
                "SELECT id FROM ai_agent_safety.recycle_bin WHERE object = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            .to_string()
        }
    };
    let (keep, gone) = (id(&dbs[0]).await, id(&dbs[1]).await);
    let r = c
        .post(format!("{}/recycle/restore", console.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("id", keep.as_str()),
            ("new_name", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c
        .post(format!("{}/recycle/purge", console.url))
        .form(&[("csrf", csrf.as_str()), ("id", gone.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let there = |name: String| {
        let a = &a;
        async move {
            a.query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(there(dbs[0].clone()).await, 1);
    assert_eq!(
        a.query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'recycled\\_%' AND datname LIKE '%' || $1",
            &[&dbs[1]],
        )
        .await
        .unwrap()
        .get::<_, i64>(0),
        0
    );
    // An entry that is gone: the database's words.
    let r = c
        .post(format!("{}/recycle/purge", console.url))
        .form(&[("csrf", csrf.as_str()), ("id", gone.as_str())])
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("does not exist"), "{body}");
}
