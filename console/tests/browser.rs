//! The console in a real browser (Debian's chromium, headless, through
//! chromedriver), against the real cluster, as an approver would use it.

mod support;

use support::browser::Browser;
use support::{admin, describe, until, Console, World};

/// Approver signs in; an agent's request appears on the open page without a
/// reload; the approver grants it in the page and the agent's statement runs
/// once; a second request is denied in the page and its statement stays
/// refused; the approver's own request is refused by the database, and the
/// page shows the database's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_decides_in_the_browser() {
    let w = World::named("shop", "cleanup_bot", "alice").await;
    let console = Console::start(&["--database", &w.dsn()], &[]).await;
    let b = Browser::start().await;

    b.sign_in(&console.url, &w.approver, &w.password).await;
    assert_eq!(b.text("#who").await, w.approver);
    assert!(b.text("p.dbs").await.contains(&w.db));
    // The event stream is open: from here on the page hears of requests.
    b.wait_for("#live-state[data-state=live]").await;
    // A mark that a reload would wipe out.
    b.client
        .execute("window.__not_reloaded = true;", vec![])
        .await
        .unwrap();

    let agent = w.agent().await;
    let t1 = w
        .request(&agent, "cleanup-42", "remove the test orders")
        .await;
    let row = format!("tr[data-token='{t1}']");
    b.wait_for(&row).await;
    let text = b.text(&row).await;
    for expected in [
        w.db.as_str(),
        w.agent.as_str(),
        "cleanup-42",
        "DELETE",
        "public.orders",
        "remove the test orders",
        "after a grant",
    ] {
        assert!(text.contains(expected), "{expected:?} not in row: {text}");
    }
    let not_reloaded = b
        .client
        .execute("return window.__not_reloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        not_reloaded,
        serde_json::json!(true),
        "the page was reloaded"
    );
    b.screenshot("console-pending.png").await;

    // Grant in the page, with a comment.
    b.click(&format!("{row} a")).await;
    b.wait_for("#grant-form").await;
    assert!(b.text("#would-allow").await.contains(&w.agent));
    b.screenshot("console-request.png").await;
    b.fill("#grant-form textarea[name=comment]", "ok: test rows only")
        .await;
    b.click("#grant").await;
    b.wait_for("#status[data-status=granted]").await;
    assert_eq!(b.text("#comment").await, "ok: test rows only");
    assert!(b.text("#done").await.contains("Granted"));

    // The agent's statement runs once.
    let delete = format!("DELETE FROM public.orders WHERE id = 1 /*ai_agent_safety_token='{t1}'*/");
    let n = agent
        .execute(&delete, &[])
        .await
        .unwrap_or_else(|e| panic!("granted DELETE: {}", describe(&e)));
    assert_eq!(n, 1);
    let again = format!("DELETE FROM public.orders WHERE id = 2 /*ai_agent_safety_token='{t1}'*/");
    let e = agent.execute(&again, &[]).await.unwrap_err();
    assert!(describe(&e).contains("already used"), "{}", describe(&e));
    assert_eq!(w.orders().await, 9);

    // A second request, denied in the page.
    b.click("header a[href='/']").await;
    b.wait_for("#live-state[data-state=live]").await;
    let t2 = w.request(&agent, "cleanup-43", "remove more").await;
    let row2 = format!("tr[data-token='{t2}']");
    b.wait_for(&row2).await;
    b.click(&format!("{row2} a")).await;
    b.fill("#deny-form textarea[name=reason]", "not in production")
        .await;
    b.click("#deny").await;
    b.wait_for("#status[data-status=denied]").await;
    let denied = format!("DELETE FROM public.orders WHERE id = 3 /*ai_agent_safety_token='{t2}'*/");
    let e = agent.execute(&denied, &[]).await.unwrap_err();
    let msg = describe(&e);
    assert!(
        msg.contains("[42501]") && msg.contains("denied"),
        "denied token: {msg}"
    );
    assert_eq!(w.orders().await, 9);

    // The approver's own request: the database refuses the grant, and the
    // page shows its message.
    let own = support::connect(&w.approver, &w.db).await;
    let t3 = w.request(&own, "self-service", "my own").await;
    b.goto(&format!("{}/db/{}/request/{t3}", console.url, w.db))
        .await;
    b.click("#grant").await;
    let shown = b.text("#db-error-message").await;
    assert!(
        shown.contains("may not grant its own request"),
        "page shows: {shown}"
    );
    b.wait_for("#status[data-status=pending]").await;

    // Decided elsewhere while the page is open: the page shows it without
    // a reload, and its forms go away.
    let t4 = w.request(&agent, "cleanup-44", "decided elsewhere").await;
    b.goto(&format!("{}/db/{}/request/{t4}", console.url, w.db))
        .await;
    b.wait_for("#live-state[data-state=live]").await;
    b.wait_for("#grant-form").await;
    b.client
        .execute("window.__not_reloaded = true;", vec![])
        .await
        .unwrap();
    admin(&w.db)
        .await
        .execute(
            "SELECT ai_agent_safety.grant_approval_token($1, 'granted by the DBA in psql')",
            &[&t4],
        )
        .await
        .unwrap();
    b.wait_for("#status[data-status=granted]").await;
    assert_eq!(b.text("#comment").await, "granted by the DBA in psql");
    let hidden = b
        .client
        .execute(
            "return window.__not_reloaded === true && document.querySelector('.decide').hidden;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(hidden, serde_json::json!(true), "forms hidden, no reload");
    b.close().await;
}

/// Agents may not sign in: one the extension lets in is refused by the
/// console's gate; one the extension itself refuses at login gets the
/// extension's FATAL message on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_cannot_sign_in() {
    let w = World::new("cagent").await;
    let console = Console::start(&["--database", &w.dsn()], &[]).await;
    let b = Browser::start().await;

    b.sign_in(&console.url, &w.agent, &w.password).await;
    let shown = b.text("#db-error-message").await;
    assert!(
        shown.contains("is an AI agent") && shown.contains("may not use the approver's console"),
        "page shows: {shown}"
    );
    assert!(b
        .client
        .find(fantoccini::Locator::Css("#who"))
        .await
        .is_err());

    // An agent role without an expiry: the extension refuses the login.
    let stale = support::unique("cagent_stale");
    admin("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {stale} LOGIN PASSWORD '{}' IN ROLE ai_agent",
            w.password
        ))
        .await
        .unwrap();
    b.sign_in(&console.url, &stale, &w.password).await;
    let shown = b.text("#db-error-message").await;
    assert!(
        shown.contains(&format!("agent role \"{stale}\"")) && shown.contains("expiry"),
        "page shows: {shown}"
    );
    // A human who is not an approver is refused too.
    let human = support::unique("chuman");
    admin("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {human} LOGIN PASSWORD '{}'",
            w.password
        ))
        .await
        .unwrap();
    b.sign_in(&console.url, &human, &w.password).await;
    let shown = b.text("#db-error-message").await;
    assert!(
        shown.contains("neither a member of ai_agent_approver"),
        "{shown}"
    );
    // The right password matters.
    b.sign_in(&console.url, &w.approver, "wrong").await;
    let shown = until("the refusal", || async {
        b.client
            .find(fantoccini::Locator::Css("#db-error-message"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
    .await;
    assert!(shown.contains("password authentication failed"), "{shown}");
    b.close().await;
}

/// The audit log page filters and pages; the agents page revokes an agent
/// now and says how many sessions ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_and_revoke() {
    let w = World::new("caudit").await;
    let agent = w.agent().await;
    // The task an agent declares is in each of its events.
    agent
        .batch_execute("SET ai_agent_safety.task_id = 'audit-task'")
        .await
        .unwrap();
    // 55 refusals: more than one page (50).
    for i in 0..55 {
        let sql = format!("DELETE FROM public.orders WHERE id = {i}");
        let e = agent.execute(&sql, &[]).await.unwrap_err();
        assert!(describe(&e).contains("[42501]"), "{}", describe(&e));
    }
    w.request(&agent, "audit-task", "for the log").await;
    // The audit writer loads the spool every 100 ms.
    until("56 events of the agent in the audit log", || async {
        let n: i64 = admin(&w.db)
            .await
            .query_one(
                "SELECT count(*) FROM ai_agent_safety.audit_log WHERE session_user_name = $1",
                &[&w.agent],
            )
            .await
            .unwrap()
            .get(0);
        (n >= 56).then_some(())
    })
    .await;

    let console = Console::start(&["--database", &w.dsn()], &[]).await;
    let b = Browser::start().await;
    b.sign_in(&console.url, &w.approver, &w.password).await;
    b.wait_for("#who").await;
    b.click("header a[href='/audit']").await;
    b.fill("#audit-filters input[name=agent]", &w.agent).await;
    b.click("#audit-filters button[type=submit]").await;
    b.wait_for_text("#audit-count", "50 event(s)").await;
    assert!(b.text("p.dbs").await.contains(&w.db));
    // Older: the rest of the agent's events.
    b.click("#older").await;
    b.wait_for_text("#audit-count", "6 event(s) older than event")
        .await;
    assert!(b
        .client
        .find(fantoccini::Locator::Css("#older"))
        .await
        .is_err());
    // Filter by decision and task.
    b.goto(&format!(
        "{}/audit?agent={}&decision=info&task=audit-task",
        console.url, w.agent
    ))
    .await;
    b.wait_for_text("#audit-count", "1 event(s)").await;
    assert!(b.text("#audit tbody").await.contains("requested"));

    // Revoke now: the agent's open session ends.
    b.click("header a[href='/agents']").await;
    let row = format!("tr[data-role='{}']", w.agent);
    assert!(b.text(&row).await.contains(&w.agent));
    b.click(&format!("{row} button.revoke")).await;
    let said = b.wait_for_text("#revoked", "session").await;
    assert!(said.contains("1 session ended"), "{said}");
    assert!(
        agent.simple_query("SELECT 1").await.is_err(),
        "the agent's session ended"
    );
    b.close().await;
}
