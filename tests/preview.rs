//! Approving the effect: a request's statement is previewed (a DELETE's or
//! UPDATE's dry run, a TRUNCATE's or DROP's catalog reach), and a token's
//! row cap holds when the statement runs, cascades and triggers counted.

use aas_integration::postgres::fallible_iterator::FallibleIterator;
use aas_integration::*;
use postgres::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A world whose orders have lines (3 each, ON DELETE CASCADE), a view, and
/// a trigger that logs each deleted order into an unprotected table: all
/// the owner's, none the agent's.
fn world(tag: &str) -> World {
    let w = World::new(tag);
    admin(&w.protected)
        .batch_execute(&format!(
            "SET ROLE {owner};
             CREATE TABLE public.order_lines (id serial PRIMARY KEY,
                 order_id int NOT NULL REFERENCES public.orders ON DELETE CASCADE, item text);
             INSERT INTO public.order_lines (order_id, item)
                  SELECT o, 'item ' || i FROM generate_series(1, 10) o, generate_series(1, 3) i;
             CREATE TABLE public.deleted_log (order_id int, at timestamptz DEFAULT now());
             CREATE FUNCTION public.log_delete() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO public.deleted_log (order_id) VALUES (OLD.id); RETURN OLD; END $$;
             CREATE TRIGGER log_delete AFTER DELETE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.log_delete();
             CREATE VIEW public.v_orders AS SELECT id, note FROM public.orders;
             GRANT ALL ON public.order_lines, public.deleted_log, public.v_orders TO {agent};
             GRANT ALL ON SEQUENCE public.order_lines_id_seq TO {agent};
             RESET ROLE;",
            owner = w.owner,
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("world: {}", describe(&e)));
    w
}

fn rows(w: &World, table: &str) -> i64 {
    count(
        &mut admin(&w.protected),
        &format!("SELECT count(*) FROM public.{table}"),
    )
}

fn request(
    agent: &mut Client,
    op: &str,
    statement: &str,
    max_rows: Option<i64>,
) -> Result<String, postgres::Error> {
    agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token($1, 'preview-task', statement => $2, max_rows => $3)::text",
            &[&op, &statement, &max_rows],
        )
        .map(|r| r.get(0))
}

/// The request as the approver reads it: preview, its total, the cap.
fn pending(approver: &str, w: &World, token: &str) -> (Value, Option<i64>, Option<i64>) {
    let r = connect(approver, &w.protected)
        .query_one(
            "SELECT preview::text, preview_rows, max_rows FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
            &[&token],
        )
        .unwrap_or_else(|e| panic!("pending_requests: {}", describe(&e)));
    let preview: Option<String> = r.get(0);
    let mut preview = preview.map_or(Value::Null, |p| serde_json::from_str(&p).unwrap());
    // Each table's entry carries its oid (what a cap holds the table to by,
    // whatever it is renamed to); compared here without it.
    for e in preview.as_array_mut().into_iter().flatten() {
        if e.get("table").is_some() {
            let relid = e.as_object_mut().unwrap().remove("relid");
            assert!(relid.is_some_and(|r| r.as_u64().is_some()), "{e}");
        }
    }
    (preview, r.get(1), r.get(2))
}

/// The refused statement kept nothing: orders and their lines are whole,
/// and the token is still unused.
fn nothing_changed(w: &World, token: &str) {
    assert_eq!((rows(w, "orders"), rows(w, "order_lines")), (10, 30));
    assert_eq!(w.token_status(token), "granted");
}

fn tokens(w: &World) -> i64 {
    count(
        &mut admin(&w.protected),
        "SELECT count(*) FROM ai_agent_safety.tokens",
    )
}

fn with_token(sql: &str, token: &str) -> String {
    format!("{sql} /*ai_agent_safety_token='{token}'*/")
}

/// Waits (bounded) until the audit log holds an event whose reason matches
/// `like`; returns the reason.
fn audit_reason(w: &World, like: &str) -> String {
    let mut c = admin(&w.protected);
    let start = Instant::now();
    loop {
        let r = c
            .query(
                "SELECT reason FROM ai_agent_safety.audit_log WHERE reason LIKE $1 ORDER BY id DESC LIMIT 1",
                &[&like],
            )
            .unwrap();
        if let Some(r) = r.first() {
            return r.get(0);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no audit event like {like:?} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_preview_counts_what_the_statement_then_deletes_cascades_and_triggers_included() {
    let w = world("pv_count");
    let approver = new_approver("pv_count");
    let mut agent = w.agent_in(&w.protected);
    let stmt = "DELETE FROM orders WHERE id <= 4";
    let token =
        request(&mut agent, "DELETE", stmt, None).unwrap_or_else(|e| panic!("{}", describe(&e)));
    // The dry run left nothing behind.
    assert_eq!(
        (
            rows(&w, "orders"),
            rows(&w, "order_lines"),
            rows(&w, "deleted_log")
        ),
        (10, 30, 0)
    );
    let (preview, total, cap) = pending(&approver, &w, &token);
    assert_eq!(
        preview,
        json!([
            {"table": "public.orders", "rows": 4, "deleted": 4, "via": "statement"},
            {"table": "public.deleted_log", "rows": 4, "inserted": 4, "via": "trigger or rule"},
            {"table": "public.order_lines", "rows": 12, "deleted": 12, "via": "ON DELETE CASCADE"},
        ])
        .as_array()
        .map(|want| {
            // The order of the tables after the statement's own is the
            // order they were reached in; compare as sets.
            let mut got = preview.as_array().unwrap().clone();
            let key = |v: &Value| v["table"].as_str().unwrap().to_string();
            got.sort_by_key(key);
            let mut want = want.clone();
            want.sort_by_key(key);
            assert_eq!(got, want, "{preview}");
            preview.clone()
        })
        .unwrap()
    );
    assert_eq!(
        preview[0]["via"], "statement",
        "the statement's own table first: {preview}"
    );
    assert_eq!(total, Some(20));
    // No cap asked for: the cap is what the preview counted.
    assert_eq!(cap, Some(20));
    assert!(audit_reason(&w, "%requested approval%task preview-task%")
        .contains("preview: 20 rows in 3 tables"),);
    w.grant(&approver, &token);
    agent
        .batch_execute(&with_token(stmt, &token))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // Exactly what the preview said.
    assert_eq!(
        (
            rows(&w, "orders"),
            rows(&w, "order_lines"),
            rows(&w, "deleted_log")
        ),
        (6, 18, 4)
    );
    assert_eq!(w.token_status(&token), "used");
}

#[test]
fn an_update_is_previewed_too_and_a_failing_dry_run_creates_no_token() {
    let w = world("pv_update");
    let approver = new_approver("pv_update");
    let mut agent = w.agent_in(&w.protected);
    admin(&w.protected)
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE'",
            w.protected
        ))
        .unwrap();
    let mut agent2 = w.agent_in(&w.protected);
    let token = request(
        &mut agent2,
        "UPDATE",
        "UPDATE orders SET note = 'x' WHERE id > 7",
        None,
    )
    .unwrap();
    let (preview, total, _) = pending(&approver, &w, &token);
    assert_eq!(
        preview,
        json!([{"table": "public.orders", "rows": 3, "updated": 3, "via": "statement"}])
    );
    assert_eq!(total, Some(3));
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE note = 'x'"
        ),
        0
    );
    let before = tokens(&w);
    // A statement whose dry run fails: the error comes back, no token.
    let e = request(
        &mut agent,
        "DELETE",
        "DELETE FROM orders WHERE id = 1 / (id - id)",
        None,
    )
    .unwrap_err();
    assert!(
        describe(&e).contains("its dry run failed: division by zero"),
        "{}",
        describe(&e)
    );
    // One that takes longer than preview_timeout.
    admin(&w.protected)
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.preview_timeout = '200ms'",
            w.protected
        ))
        .unwrap();
    let mut agent3 = w.agent_in(&w.protected);
    let e = request(
        &mut agent3,
        "DELETE",
        "DELETE FROM orders WHERE pg_sleep(0.1) IS NOT NULL",
        None,
    )
    .unwrap_err();
    assert!(
        describe(&e).contains("did not finish within ai_agent_safety.preview_timeout (200 ms)"),
        "{}",
        describe(&e)
    );
    // The caller's own statement_timeout still holds after a dry run.
    agent3
        .batch_execute("SET statement_timeout = '800ms'")
        .unwrap();
    let e = agent3
        .batch_execute(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 't', statement => 'DELETE FROM orders WHERE id = 3'), pg_sleep(3)",
        )
        .unwrap_err();
    assert!(
        describe(&e).contains("canceling statement due to statement timeout"),
        "{}",
        describe(&e)
    );
    assert_eq!(tokens(&w), before);
    assert_eq!(rows(&w, "orders"), 10);
}

#[test]
fn truncate_and_drop_are_previewed_from_the_catalogs_without_running() {
    let w = world("pv_catalog");
    let approver = new_approver("pv_catalog");
    let mut agent = w.agent_in(&w.protected);
    // Without CASCADE they would fail: the request says so, and creates nothing.
    let e = request(&mut agent, "TRUNCATE", "TRUNCATE orders", None).unwrap_err();
    assert!(
        describe(&e).contains("it would fail, since public.orders is referenced by a foreign key of public.order_lines"),
        "{}",
        describe(&e)
    );
    let e = request(&mut agent, "DROP", "DROP TABLE orders", None).unwrap_err();
    assert!(
        describe(&e).contains("other objects depend on table public.orders"),
        "{}",
        describe(&e)
    );
    assert!(
        describe(&e).contains("view public.v_orders"),
        "{}",
        describe(&e)
    );
    assert_eq!(tokens(&w), 0);

    let t = request(&mut agent, "TRUNCATE", "TRUNCATE orders CASCADE", None).unwrap();
    let (preview, total, cap) = pending(&approver, &w, &t);
    assert_eq!(
        preview,
        json!([
            {"table": "public.orders", "rows": 10, "via": "statement"},
            {"table": "public.order_lines", "rows": 30, "via": "TRUNCATE ... CASCADE (foreign key)"},
        ])
    );
    assert_eq!((total, cap), (Some(40), None));
    // With no cap, the audit log's words name none.
    w.grant(&approver, &t);
    let granted = audit_reason(&w, "%granted the request%");
    let requested = audit_reason(&w, "%requested approval for one TRUNCATE%");
    assert!(
        !granted.contains("cap:") && !requested.contains("cap:"),
        "{requested} / {granted}"
    );
    assert!(
        requested.contains("preview: 40 rows in 2 tables or objects"),
        "{requested}"
    );

    let t = request(&mut agent, "DROP", "DROP TABLE orders CASCADE", None).unwrap();
    let (preview, total, _) = pending(&approver, &w, &t);
    let items = preview.as_array().unwrap();
    assert_eq!(
        items[0],
        json!({"table": "public.orders", "rows": 10, "via": "statement"}),
        "{preview}"
    );
    for want in [
        json!({"object": "view public.v_orders", "via": "DROP ... CASCADE"}),
        json!({"object": "constraint order_lines_order_id_fkey on table public.order_lines", "via": "DROP ... CASCADE"}),
    ] {
        assert!(items.contains(&want), "{want} not in {preview}");
    }
    // The parts of the dropped table (its trigger, index, type) are not
    // listed; the table referencing it stays (only its constraint goes).
    assert_eq!(items.len(), 3, "{preview}");
    assert_eq!(total, Some(10));
    // Nothing ran: every object is still there.
    assert_eq!((rows(&w, "orders"), rows(&w, "order_lines")), (10, 30));
    // A cap is for rows a DELETE or UPDATE changes.
    let e = request(&mut agent, "TRUNCATE", "TRUNCATE orders CASCADE", Some(5)).unwrap_err();
    assert!(
        describe(&e).contains("a TRUNCATE has no row cap"),
        "{}",
        describe(&e)
    );
}

#[test]
fn a_cap_stops_an_over_cap_statement_and_leaves_the_token_usable() {
    let w = world("pv_cap");
    let approver = new_approver("pv_cap");
    let mut agent = w.agent_in(&w.protected);
    let req = |agent: &mut Client, cap: Option<i64>| -> String {
        agent
            .query_one(
                "SELECT ai_agent_safety.request_approval_token('DELETE', 'cap-task', 'public.orders', max_rows => $1)::text",
                &[&cap],
            )
            .unwrap_or_else(|e| panic!("{}", describe(&e)))
            .get(0)
    };
    // Without a cap, a token for "one DELETE on public.orders" deletes
    // whatever the statement reaches.
    let open = req(&mut agent, None);
    w.grant(&approver, &open);
    agent
        .batch_execute(&with_token("DELETE FROM orders WHERE id > 8", &open))
        .unwrap();
    assert_eq!(rows(&w, "orders"), 8);

    // With a cap of 3 rows, a statement that deletes 5 is refused, nothing
    // changes, and the token stays usable.
    let capped = req(&mut agent, Some(3));
    w.grant(&approver, &capped);
    let e = assert_refused(agent.batch_execute(&with_token(
        "DELETE FROM orders WHERE id > 3 AND id <= 8",
        &capped,
    )));
    // 5 orders, their 15 lines and 5 log rows.
    assert!(
        e.contains("it changed 25 rows, over the cap of 3 rows"),
        "{e}"
    );
    assert!(e.contains("the token is still unused"), "{e}");
    assert!(e.contains("at most 3 rows"), "{e}");
    assert_eq!(rows(&w, "orders"), 8);
    assert_eq!(w.token_status(&capped), "granted");
    // Foreign-key actions and triggers count: one order with its 3 lines
    // and its log row is 5 rows.
    let e = assert_refused(
        agent.batch_execute(&with_token("DELETE FROM orders WHERE id = 1", &capped)),
    );
    assert!(
        e.contains("it changed 5 rows, over the cap of 3 rows"),
        "{e}"
    );
    assert_eq!(
        (
            rows(&w, "orders"),
            rows(&w, "order_lines"),
            rows(&w, "deleted_log")
        ),
        (8, 24, 2)
    );
    // Inside the cap it runs, and the token is spent.
    admin(&w.protected)
        .batch_execute("DELETE FROM order_lines WHERE order_id IN (1, 2, 3); DROP TRIGGER log_delete ON orders")
        .unwrap();
    agent
        .batch_execute(&with_token("DELETE FROM orders WHERE id <= 3", &capped))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(rows(&w, "orders"), 5);
    assert_eq!(w.token_status(&capped), "used");
    let reason = audit_reason(&w, "%it changed 5 rows, over the cap of 3 rows%");
    assert!(reason.contains("refused"), "{reason}");
}

#[test]
fn the_approver_lowers_the_cap_and_a_grown_effect_is_refused() {
    let w = world("pv_lower");
    let approver = new_approver("pv_lower");
    let mut agent = w.agent_in(&w.protected);
    // No trigger here: orders and lines only.
    admin(&w.protected)
        .batch_execute("DROP TRIGGER log_delete ON orders")
        .unwrap();
    let stmt = "DELETE FROM orders WHERE id <= 2";
    let token = request(&mut agent, "DELETE", stmt, None).unwrap();
    assert_eq!(pending(&approver, &w, &token).2, Some(8));
    let mut a = connect(&approver, &w.protected);
    // Raising it is not the approver's to do; lowering is.
    let e = a
        .query_one(
            "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'too many', max_rows => 100)",
            &[&token],
        )
        .unwrap_err();
    assert!(
        describe(&e).contains("max_rows can only lower the cap"),
        "{}",
        describe(&e)
    );
    a.query_one(
        "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, 'two orders at most', max_rows => 7)",
        &[&token],
    )
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(audit_reason(&w, "%granted the request%").contains("cap: 7 rows"));
    // 8 rows (2 orders, 6 lines) > 7.
    let e = assert_refused(agent.batch_execute(&with_token(stmt, &token)));
    assert!(
        e.contains("it changed 8 rows, over the cap of 7 rows"),
        "{e}"
    );
    assert_eq!(rows(&w, "orders"), 10);

    // A statement whose effect grew after the preview: the approver saw 2
    // orders with their lines; now a third order matches.
    let token = request(
        &mut agent,
        "DELETE",
        "DELETE FROM orders WHERE note LIKE 'order 1%'",
        None,
    )
    .unwrap();
    // order 1 and order 10, 3 lines each.
    assert_eq!(pending(&approver, &w, &token).2, Some(8));
    w.grant(&approver, &token);
    admin(&w.protected)
        .batch_execute("UPDATE orders SET note = 'order 1b' WHERE id = 5")
        .unwrap();
    let e = assert_refused(agent.batch_execute(&with_token(
        "DELETE FROM orders WHERE note LIKE 'order 1%'",
        &token,
    )));
    assert!(
        e.contains("it deleted 3 rows in public.orders, where the preview approved with token"),
        "{e}"
    );
    assert!(
        e.contains("public.orders: 2 rows deleted approved, 3 rows deleted."),
        "{e}"
    );
    assert_eq!(rows(&w, "orders"), 10);
    assert_eq!(w.token_status(&token), "granted");
}

#[test]
fn the_dry_run_is_judged_like_the_real_statement_and_keeps_nothing() {
    let w = world("pv_attack");
    let mut agent = w.agent_in(&w.protected);
    // Where the extension does not protect, the agent's DELETE simply runs.
    let mut open_agent = w.agent_in(&w.open);
    open_agent.batch_execute("DELETE FROM orders").unwrap();
    assert_eq!(count(&mut admin(&w.open), "SELECT count(*) FROM orders"), 0);
    // Here the dry run is the way an agent gets a protected DELETE run
    // without a token, so it must keep nothing: called by hand, with the
    // whole table, it is rolled back all the same.
    let shown: String = agent
        .query_one(
            "SELECT ai_agent_safety._preview('DELETE FROM orders', current_setting('search_path'))::text",
            &[],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert!(shown.contains(r#""rows": 10"#), "{shown}");
    assert_eq!((rows(&w, "orders"), rows(&w, "order_lines")), (10, 30));
    assert_guard_refused(agent.batch_execute("DELETE FROM orders WHERE id = 1"));
    // The request cannot be handed a preview of the caller's making: the
    // internal call stores only what the dry run made, for this statement.
    let e = agent
        .query_one(
            "SELECT ai_agent_safety._request_token('DELETE', 't', NULL, NULL, NULL, NULL, 'DELETE FROM orders WHERE id = 2', 'public', NULL)",
            &[],
        )
        .unwrap_err();
    assert!(describe(&e).contains("has no preview"), "{}", describe(&e));
    assert_eq!(tokens(&w), 0);
    // What the statement sets off is judged as when it really runs: a
    // trigger's own DELETE needs its own token, so the dry run fails, and
    // the request with it.
    admin(&w.protected)
        .batch_execute(&format!(
            "SET ROLE {owner};
             CREATE FUNCTION public.purge_lines() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN DELETE FROM public.order_lines WHERE order_id = OLD.id; RETURN OLD; END $$;
             CREATE TRIGGER purge_lines BEFORE DELETE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.purge_lines();
             RESET ROLE;",
            owner = w.owner
        ))
        .unwrap();
    let e = describe(
        &request(
            &mut agent,
            "DELETE",
            "DELETE FROM orders WHERE id = 1",
            None,
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("its dry run failed: DELETE on public.order_lines refused"),
        "{e}"
    );
    assert!(e.contains("needs an approval token"), "{e}");
    assert_eq!(tokens(&w), 0);
    assert_eq!((rows(&w, "orders"), rows(&w, "order_lines")), (10, 30));
}

#[test]
fn bad_caps_are_refused_and_create_nothing() {
    let w = world("pv_bad");
    let approver = new_approver("pv_bad");
    let mut agent = w.agent_in(&w.protected);
    for (op, stmt, cap, want) in [
        (
            "DELETE",
            Some("DELETE FROM orders WHERE id = 1"),
            Some(0i64),
            "max_rows must be at least 1 (it is 0)",
        ),
        (
            "DELETE",
            None,
            Some(-5i64),
            "max_rows must be at least 1 (it is -5)",
        ),
        (
            "DROP",
            Some("DROP TABLE orders CASCADE"),
            Some(1i64),
            "a DROP has no row cap",
        ),
    ] {
        let e = agent
            .query_one(
                "SELECT ai_agent_safety.request_approval_token($1, 'bad', 'public.orders', statement => $2, max_rows => $3)::text",
                &[&op, &stmt, &cap],
            )
            .unwrap_err();
        assert!(describe(&e).contains(want), "{want}: {}", describe(&e));
    }
    assert_eq!(tokens(&w), 0);
    let t = request(
        &mut agent,
        "DELETE",
        "DELETE FROM orders WHERE id = 1",
        None,
    )
    .unwrap();
    let e = connect(&approver, &w.protected)
        .query_one(
            "SELECT ai_agent_safety.grant_approval_token($1::text::uuid, NULL, max_rows => 0)",
            &[&t],
        )
        .unwrap_err();
    assert!(
        describe(&e).contains("max_rows must be at least 1"),
        "{}",
        describe(&e)
    );
    assert_eq!(w.token_status(&t), "pending");
}

#[test]
fn approvers_are_told_the_statement_and_its_preview() {
    let w = world("pv_notify");
    let approver = new_approver("pv_notify");
    let mut dba = connect(&approver, &w.protected);
    dba.batch_execute("LISTEN ai_agent_safety_requests")
        .unwrap();
    let mut agent = w.agent_in(&w.protected);
    let token = request(
        &mut agent,
        "DELETE",
        "DELETE FROM orders WHERE id <= 2",
        Some(50),
    )
    .unwrap();
    let n = dba
        .notifications()
        .timeout_iter(Duration::from_secs(30))
        .next()
        .unwrap()
        .expect("no NOTIFY within 30 s");
    let p: Value = serde_json::from_str(n.payload()).unwrap();
    assert_eq!(p["token"], token.as_str());
    assert_eq!(p["statement"], "DELETE FROM orders WHERE id <= 2");
    assert_eq!(p["preview_rows"], 10);
    assert_eq!(p["max_rows"], 50);
    assert_eq!(p["preview"][0]["table"], "public.orders");
    assert_eq!(p["preview"][0]["rows"], 2);
}

/// The agent's own tables, with its triggers: `mylist` (ids the statement
/// deletes) and `trig_tab`, whose trigger runs `body` for each insert.
fn agent_trigger(agent: &mut Client, body: &str) {
    agent
        .batch_execute(&format!(
            "CREATE TABLE public.mylist (id int);
             INSERT INTO public.mylist VALUES (1);
             CREATE TABLE public.trig_tab (x int);
             CREATE TABLE public.scratch (x int);
             CREATE FUNCTION public.trig_fn() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN {body} RETURN NEW; END $f$;
             CREATE TRIGGER t AFTER INSERT ON public.trig_tab FOR EACH ROW EXECUTE FUNCTION public.trig_fn();"
        ))
        .unwrap_or_else(|e| panic!("agent's tables: {}", describe(&e)));
}

#[test]
fn a_count_lowered_inside_the_statement_is_refused_not_taken_as_within_the_cap() {
    let w = world("pv_lower_count");
    let approver = new_approver("pv_lower_count");
    let mut agent = w.agent_in(&w.protected);
    // The counters the cap counts with can be lowered: a table made inside
    // a subtransaction that rolls back takes its counts with it.
    agent
        .batch_execute(
            "BEGIN; SAVEPOINT s;
             CREATE TEMP TABLE zz AS SELECT g FROM generate_series(1, 500) g;
             INSERT INTO zz VALUES (1);",
        )
        .unwrap();
    let zz: u32 = agent
        .query_one("SELECT 'zz'::regclass::oid", &[])
        .unwrap()
        .get(0);
    let inserted = |agent: &mut Client| -> i64 {
        agent
            .query_one("SELECT pg_stat_get_xact_tuples_inserted($1)", &[&zz])
            .unwrap()
            .get(0)
    };
    let before = inserted(&mut agent);
    agent.batch_execute("ROLLBACK TO s").unwrap();
    let after = inserted(&mut agent);
    agent.batch_execute("ROLLBACK").unwrap();
    assert_eq!((before, after), (501, 0));
    // The agent's trigger lowers one by 100,000 while the statement runs, and
    // the statement's own DELETE is in a CTE (not in what it reports).
    agent_trigger(
        &mut agent,
        "IF current_setting('pv.go', true) = 'on' THEN
           BEGIN
             CREATE TEMP TABLE h AS SELECT g FROM generate_series(1, 100000) g;
             INSERT INTO h VALUES (0);
             RAISE EXCEPTION 'undo';
           EXCEPTION WHEN raise_exception THEN NULL; END;
         END IF;",
    );
    let token: String = agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 'cap-task', 'public.orders', max_rows => 2)::text",
            &[],
        )
        .unwrap()
        .get(0);
    w.grant(&approver, &token);
    agent
        .batch_execute(
            "INSERT INTO mylist SELECT g FROM generate_series(2, 10) g; SET pv.go = 'on'",
        )
        .unwrap();
    let e = assert_refused(agent.batch_execute(&with_token(
        "WITH i AS (INSERT INTO trig_tab VALUES (1) RETURNING 1),
              d AS (DELETE FROM orders WHERE id IN (SELECT id FROM mylist) RETURNING 1)
         DELETE FROM orders WHERE id = -1",
        &token,
    )));
    assert!(e.contains("went down while the statement ran"), "{e}");
    nothing_changed(&w, &token);
    // The dry run is not fooled either: such a preview is not made.
    let e = request(
        &mut agent,
        "DELETE",
        "WITH i AS (INSERT INTO trig_tab VALUES (1) RETURNING 1) DELETE FROM orders WHERE id IN (SELECT id FROM mylist)",
        None,
    )
    .unwrap_err();
    assert!(
        describe(&e).contains("went down during its dry run"),
        "{}",
        describe(&e)
    );
}

/// A world without the owner's trigger, where the agent's trigger on
/// `trig_tab` runs `sql` only until the agent sets pv.go (while it previews):
/// the world, an approver, and the agent's session.
fn only_while_previewing(tag: &str, sql: &str) -> (World, String, Client) {
    let w = world(tag);
    let approver = new_approver(tag);
    let mut agent = w.agent_in(&w.protected);
    admin(&w.protected)
        .batch_execute("DROP TRIGGER log_delete ON orders")
        .unwrap();
    agent_trigger(
        &mut agent,
        &format!("IF current_setting('pv.go', true) IS DISTINCT FROM 'on' THEN {sql} END IF;"),
    );
    (w, approver, agent)
}

#[test]
fn rows_only_the_dry_run_saw_do_not_buy_room_elsewhere() {
    // The agent's trigger inserts 999 rows, but only while the preview is made.
    let (w, approver, mut agent) = only_while_previewing(
        "pv_room",
        "INSERT INTO public.scratch SELECT g FROM generate_series(1, 999) g;",
    );
    let stmt = "WITH i AS (INSERT INTO trig_tab VALUES (1) RETURNING 1) DELETE FROM orders WHERE id IN (SELECT id FROM mylist)";
    let token =
        request(&mut agent, "DELETE", stmt, None).unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (preview, total, cap) = pending(&approver, &w, &token);
    // 1 order, its 3 lines, 1 row in trig_tab, 999 in scratch.
    assert_eq!((total, cap), (Some(1004), Some(1004)), "{preview}");
    w.grant(&approver, &token);
    agent
        .batch_execute(
            "INSERT INTO mylist SELECT g FROM generate_series(2, 10) g; SET pv.go = 'on'",
        )
        .unwrap();
    // 10 orders and 30 lines are within 1004 in all, but not what the
    // approver saw in public.orders.
    let e = assert_refused(agent.batch_execute(&with_token(stmt, &token)));
    assert!(
        e.contains("it deleted 10 rows in public.orders, where the preview approved with token"),
        "{e}"
    );
    assert!(
        e.contains("public.orders: 1 row deleted approved, 10 rows deleted."),
        "{e}"
    );
    nothing_changed(&w, &token);
}

#[test]
fn a_preview_made_before_a_rollback_to_savepoint_is_not_a_requests() {
    let w = world("pv_savepoint");
    let mut agent = w.agent_in(&w.protected);
    // The agent changes what the preview sees, previews, and undoes its
    // change: the preview would show an effect the statement will not have.
    let e = agent
        .batch_execute(
            "BEGIN; SAVEPOINT s;
             UPDATE orders SET note = 'gone';
             SELECT ai_agent_safety._preview('DELETE FROM orders WHERE note = ''kept''', 'public');
             ROLLBACK TO s;
             SELECT ai_agent_safety._request_token('DELETE', 't', NULL, NULL, NULL, NULL,
                    'DELETE FROM orders WHERE note = ''kept''', 'public', NULL);",
        )
        .unwrap_err();
    assert!(describe(&e).contains("has no preview"), "{}", describe(&e));
    agent.batch_execute("ROLLBACK").unwrap();
    // A preview is for the search_path it was made with.
    let e = agent
        .batch_execute(
            "BEGIN;
             SELECT ai_agent_safety._preview('DELETE FROM orders WHERE id = 1', 'pg_temp, public');
             SELECT ai_agent_safety._request_token('DELETE', 't', NULL, NULL, NULL, NULL,
                    'DELETE FROM orders WHERE id = 1', 'public', NULL);",
        )
        .unwrap_err();
    assert!(describe(&e).contains("has no preview"), "{}", describe(&e));
    agent.batch_execute("ROLLBACK").unwrap();
    assert_eq!(tokens(&w), 0);
}

/// A preview and a cap count deleted, updated and inserted rows apart: room
/// the preview saw for a trigger's inserts into a table is not room for
/// deleting rows there. Here the agent previews deleting order 1 (3 lines
/// cascade) while its trigger adds 50 lines elsewhere, then moves order
/// 2's lines onto order 1: the cascade would delete 6 lines, within the 53
/// rows the preview counted in order_lines, but over its 3 deleted.
#[test]
fn room_for_inserts_is_not_room_for_deletes() {
    let (w, approver, mut agent) = only_while_previewing(
        "pv_kinds",
        "INSERT INTO public.order_lines (order_id, item) SELECT 3, 'dry' FROM generate_series(1, 50);",
    );
    let stmt =
        "WITH i AS (INSERT INTO trig_tab VALUES (1) RETURNING 1) DELETE FROM orders WHERE id = 1";
    let token =
        request(&mut agent, "DELETE", stmt, None).unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (preview, total, cap) = pending(&approver, &w, &token);
    assert_eq!((total, cap), (Some(55), Some(55)), "{preview}");
    let lines = preview
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["table"] == "public.order_lines")
        .unwrap_or_else(|| panic!("{preview}"));
    assert_eq!(
        (&lines["rows"], &lines["deleted"], &lines["inserted"]),
        (&json!(53), &json!(3), &json!(50)),
        "{preview}"
    );
    w.grant(&approver, &token);
    agent
        .batch_execute("UPDATE order_lines SET order_id = 1 WHERE order_id = 2; SET pv.go = 'on'")
        .unwrap();
    let e = assert_refused(agent.batch_execute(&with_token(stmt, &token)));
    assert!(
        e.contains(
            "it deleted 6 rows in public.order_lines, where the preview approved with token"
        ) && e.contains("counted 3 rows deleted"),
        "{e}"
    );
    nothing_changed(&w, &token);
}

/// A foreign table has no row counters: its rows count as the statement
/// writing it reports them, so a DELETE on it is previewed and capped like
/// any other. Written where nothing reports the rows (a WITH clause), a
/// capped statement is refused, and such a dry run makes no preview:
/// otherwise `WITH d AS (DELETE FROM ft RETURNING 1) SELECT count(*) FROM d`
/// deletes any number of rows under a cap of 2.
#[test]
fn rows_written_to_a_foreign_table_are_counted_or_refused() {
    let w = world("pv_foreign");
    let approver = new_approver("pv_foreign");
    let mut su = admin(&w.protected);
    let r = su
        .query_one(
            "SELECT split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port')",
            &[],
        )
        .unwrap();
    let (dir, port): (String, String) = (r.get(0), r.get(1));
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE TABLE public.remote_orders (id int);
             INSERT INTO public.remote_orders SELECT generate_series(1, 20);
             GRANT ALL ON public.remote_orders TO {agent};",
            agent = w.agent
        ))
        .unwrap();
    su.batch_execute(&format!(
        "CREATE EXTENSION postgres_fdw;
         CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw
                OPTIONS (host '{dir}', port '{port}', dbname '{open}');
         CREATE USER MAPPING FOR {agent} SERVER loopback
                OPTIONS (user '{agent}', password_required 'false');
         CREATE FOREIGN TABLE public.ft (id int) SERVER loopback OPTIONS (table_name 'remote_orders');
         GRANT ALL ON public.ft TO {agent};",
        open = w.open,
        agent = w.agent
    ))
    .unwrap_or_else(|e| panic!("foreign table: {}", describe(&e)));
    let remote = || {
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM public.remote_orders",
        )
    };
    let mut agent = w.agent_in(&w.protected);
    let capped = |agent: &mut Client| -> String {
        let t: String = agent
            .query_one(
                "SELECT ai_agent_safety.request_approval_token('DELETE', 'fdw-task', 'public.ft', max_rows => 2)::text",
                &[],
            )
            .unwrap()
            .get(0);
        w.grant(&approver, &t);
        t
    };
    // Deleted through a WITH clause, its rows are reported nowhere.
    let token = capped(&mut agent);
    let e = assert_refused(agent.batch_execute(&with_token(
        "WITH d AS (DELETE FROM ft RETURNING 1) SELECT count(*) FROM d",
        &token,
    )));
    assert!(
        e.contains("it wrote public.ft, whose rows are another server's (a foreign or distributed table), in a way whose rows cannot be counted"),
        "{e}"
    );
    assert_eq!(remote(), 20);
    assert_eq!(w.token_status(&token), "granted");
    // As the statement's own target they are counted: 3 is over the cap,
    // 2 is within it.
    let e =
        assert_refused(agent.batch_execute(&with_token("DELETE FROM ft WHERE id <= 3", &token)));
    assert!(
        e.contains("it changed 3 rows, over the cap of 2 rows"),
        "{e}"
    );
    assert_eq!(remote(), 20);
    assert_eq!(
        agent
            .execute(&with_token("DELETE FROM ft WHERE id <= 2", &token), &[])
            .unwrap_or_else(|e| panic!("{}", describe(&e))),
        2
    );
    assert_eq!(remote(), 18);
    // The preview counts them the same way; a dry run through a WITH
    // clause makes no preview, and no token.
    let token = request(&mut agent, "DELETE", "DELETE FROM ft WHERE id > 15", None)
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (preview, total, _) = pending(&approver, &w, &token);
    assert_eq!(
        preview,
        json!([{"table": "public.ft", "rows": 5, "deleted": 5, "via": "statement"}])
    );
    assert_eq!(total, Some(5));
    assert_eq!(remote(), 18);
    let before = tokens(&w);
    let e = request(
        &mut agent,
        "DELETE",
        "WITH d AS (DELETE FROM ft WHERE id > 15 RETURNING id) DELETE FROM ft WHERE id IN (SELECT id FROM d)",
        None,
    )
    .unwrap_err();
    assert!(
        describe(&e)
            .contains("wrote public.ft, whose rows are another server's (a foreign or distributed table), in a way whose rows cannot be counted"),
        "{}",
        describe(&e)
    );
    assert_eq!(tokens(&w), before);
    assert_eq!(remote(), 18);
}

/// Protects UPDATE too in the world's protected database; a new agent
/// session sees it.
fn protect_update(w: &World) -> Client {
    admin(&w.protected)
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE'",
            w.protected
        ))
        .unwrap();
    w.agent_in(&w.protected)
}

/// Sorted by table, without the oids, for comparing.
fn by_table(preview: &Value) -> Vec<Value> {
    let mut v = preview.as_array().unwrap().clone();
    v.sort_by_key(|e| e["table"].as_str().unwrap().to_string());
    v
}

/// A MERGE that deletes, updates and inserts is previewed (its cascades
/// and triggers too), bound to its text, and then, run with its token,
/// changes exactly what the preview said: one token approves the whole
/// statement, both its protected classes.
#[test]
fn a_merge_is_previewed_bound_and_does_what_its_preview_said() {
    let w = world("pv_merge");
    let approver = new_approver("pv_merge");
    let mut agent = protect_update(&w);
    let merge =
        "MERGE INTO orders o USING (SELECT g AS id FROM generate_series(1, 12) g) s ON o.id = s.id
                 WHEN MATCHED AND o.id <= 3 THEN DELETE
                 WHEN MATCHED AND o.id > 8 THEN UPDATE SET note = 'merged'
                 WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'new')";
    // Unprotected by a token, the MERGE is refused (both its classes).
    let e = assert_guard_refused(agent.batch_execute(merge));
    assert!(e.contains("MERGE ... THEN DELETE on public.orders, MERGE ... THEN UPDATE on public.orders refused") && e.contains("statement => '<this statement>'"), "{e}");
    let token =
        request(&mut agent, "DELETE", merge, None).unwrap_or_else(|e| panic!("{}", describe(&e)));
    // The dry run kept nothing.
    assert_eq!(
        (
            rows(&w, "orders"),
            rows(&w, "order_lines"),
            rows(&w, "deleted_log")
        ),
        (10, 30, 0)
    );
    let (preview, total, cap) = pending(&approver, &w, &token);
    assert_eq!(
        by_table(&preview),
        vec![
            json!({"table": "public.deleted_log", "rows": 3, "inserted": 3, "via": "trigger or rule"}),
            json!({"table": "public.order_lines", "rows": 9, "deleted": 9, "via": "ON DELETE CASCADE"}),
            json!({"table": "public.orders", "rows": 7, "deleted": 3, "updated": 2, "inserted": 2, "via": "statement"}),
        ],
        "{preview}"
    );
    assert_eq!((total, cap), (Some(19), Some(19)));
    // Another MERGE (one more order deleted) is not covered.
    w.grant(&approver, &token);
    let wider = merge.replace("o.id <= 3", "o.id <= 4");
    let e = assert_refused(agent.batch_execute(&with_token(&wider, &token)));
    assert!(e.contains("was granted for another statement"), "{e}");
    nothing_changed(&w, &token);
    agent
        .batch_execute(&with_token(merge, &token))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        (
            rows(&w, "orders"),
            rows(&w, "order_lines"),
            rows(&w, "deleted_log")
        ),
        (9, 21, 3)
    );
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE note IN ('merged', 'new')"
        ),
        4
    );
    assert_eq!(w.token_status(&token), "used");
    // A MERGE must perform the requested class; one that only inserts
    // needs no token.
    let e = request(
        &mut agent,
        "UPDATE",
        "MERGE INTO orders o USING (SELECT 5 AS id) s ON o.id = s.id WHEN MATCHED THEN DELETE",
        None,
    )
    .unwrap_err();
    assert!(
        describe(&e).contains("the statement is a DELETE, but the request is for UPDATE"),
        "{}",
        describe(&e)
    );
    let e = request(
        &mut agent,
        "DELETE",
        "MERGE INTO orders o USING (SELECT 50 AS id) s ON o.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'x')",
        None,
    )
    .unwrap_err();
    assert!(
        describe(&e).contains("a MERGE that only inserts needs no token"),
        "{}",
        describe(&e)
    );
}

/// INSERT ... ON CONFLICT DO UPDATE (UPDATE protected) is previewed with
/// the rows it would update and insert, bound, and held to its cap.
#[test]
fn an_upsert_is_previewed_bound_and_capped() {
    let w = world("pv_upsert");
    let approver = new_approver("pv_upsert");
    let mut agent = protect_update(&w);
    let upsert = "INSERT INTO orders VALUES (5, 'up'), (6, 'up'), (11, 'new') ON CONFLICT (id) DO UPDATE SET note = excluded.note";
    let e = assert_guard_refused(agent.batch_execute(upsert));
    assert!(
        e.contains("INSERT ... ON CONFLICT DO UPDATE on public.orders refused"),
        "{e}"
    );
    let token =
        request(&mut agent, "UPDATE", upsert, None).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(rows(&w, "orders"), 10);
    let (preview, total, _) = pending(&approver, &w, &token);
    assert_eq!(
        preview,
        json!([{"table": "public.orders", "rows": 3, "updated": 2, "inserted": 1, "via": "statement"}])
    );
    assert_eq!(total, Some(3));
    // The approver allows two rows: the three-row upsert is refused, and
    // nothing changes; the token stays usable.
    connect(&approver, &w.protected)
        .batch_execute(&format!(
            "SELECT ai_agent_safety.grant_approval_token('{token}', 'two rows at most', max_rows => 2)"
        ))
        .unwrap();
    let e = assert_refused(agent.batch_execute(&with_token(upsert, &token)));
    assert!(
        e.contains("it changed 3 rows, over the cap of 2 rows"),
        "{e}"
    );
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE note IN ('up', 'new')"
        ),
        0
    );
    assert_eq!(w.token_status(&token), "granted");
    // A two-row upsert is another statement.
    let e = assert_refused(agent.batch_execute(&with_token(
        "INSERT INTO orders VALUES (5, 'up'), (6, 'up') ON CONFLICT (id) DO UPDATE SET note = excluded.note",
        &token,
    )));
    assert!(e.contains("was granted for another statement"), "{e}");
    // Approved as previewed, it runs.
    let token = request(&mut agent, "UPDATE", upsert, None).unwrap();
    w.grant(&approver, &token);
    agent
        .batch_execute(&with_token(upsert, &token))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE note IN ('up', 'new')"
        ),
        3
    );
    // What is not an upsert is said so; the class must match.
    for (op, sql, says) in [
        (
            "UPDATE",
            "INSERT INTO orders VALUES (12, 'x')",
            "an INSERT needs no token unless it is INSERT ... ON CONFLICT DO UPDATE",
        ),
        (
            "UPDATE",
            "INSERT INTO orders VALUES (12, 'x') ON CONFLICT DO NOTHING",
            "an INSERT needs no token unless it is INSERT ... ON CONFLICT DO UPDATE",
        ),
        (
            "DELETE",
            upsert,
            "the statement is a UPDATE, but the request is for DELETE",
        ),
    ] {
        let e = request(&mut agent, op, sql, None).unwrap_err();
        assert!(describe(&e).contains(says), "{sql}: {}", describe(&e));
    }
}

/// A trigger added after the approval can redirect an upsert to another row
/// (a BEFORE INSERT trigger changes the conflict key): where nothing is
/// protected it does; under a bound token the statement is refused, since
/// the table's code is part of what was approved.
#[test]
fn a_trigger_added_after_the_approval_voids_a_bound_token() {
    let w = world("pv_trigger");
    let approver = new_approver("pv_trigger");
    let mut agent = protect_update(&w);
    let swap = "CREATE FUNCTION public.swap() RETURNS trigger LANGUAGE plpgsql AS
                  $$ BEGIN NEW.id := 2; NEW.note := 'wiped'; RETURN NEW; END $$;
                CREATE TRIGGER swap BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION public.swap();";
    let upsert =
        "INSERT INTO orders VALUES (1, 'new') ON CONFLICT (id) DO UPDATE SET note = excluded.note";
    // Unprotected: the trigger redirects the upsert to order 2.
    let mut open = w.agent_in(&w.open);
    admin(&w.open)
        .batch_execute(&format!("ALTER TABLE public.orders OWNER TO {}", w.agent))
        .unwrap();
    open.batch_execute(swap).unwrap();
    open.batch_execute(upsert).unwrap();
    assert_eq!(
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM orders WHERE id = 2 AND note = 'wiped'"
        ),
        1
    );
    // Protected: approved as previewed (order 1 updated), then the trigger.
    admin(&w.protected)
        .batch_execute(&format!("ALTER TABLE public.orders OWNER TO {}", w.agent))
        .unwrap();
    let token =
        request(&mut agent, "UPDATE", upsert, None).unwrap_or_else(|e| panic!("{}", describe(&e)));
    w.grant(&approver, &token);
    agent.batch_execute(swap).unwrap();
    let e = assert_refused(agent.batch_execute(&with_token(upsert, &token)));
    assert!(
        e.contains("was granted while the table's own code was different"),
        "{e}"
    );
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE note = 'wiped'"
        ),
        0
    );
    assert_eq!(w.token_status(&token), "granted");
}

/// The internal request function cannot make a token for one class that a
/// MERGE then uses for its DELETE and UPDATE unpreviewed: a MERGE is
/// approved whole only by a previewed DELETE or UPDATE token.
#[test]
fn a_merge_is_not_approved_by_a_token_for_another_class() {
    let w = world("pv_mergeclass");
    let approver = new_approver("pv_mergeclass");
    let mut agent = protect_update(&w);
    let merge = "MERGE INTO orders o USING (SELECT g AS id FROM generate_series(1, 3) g) s ON o.id = s.id WHEN MATCHED THEN DELETE";
    let token: String = agent
        .query_one(
            "SELECT ai_agent_safety._request_token('ALTER', 't', 'pg_class'::regclass, 'public.orders'::regclass, NULL, NULL, $1, 'public', NULL)::text",
            &[&merge],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    w.grant(&approver, &token);
    let e = assert_refused(agent.batch_execute(&with_token(merge, &token)));
    assert!(e.contains("was granted for ALTER"), "{e}");
    nothing_changed(&w, &token);
}

/// What decides which rows a bound statement reaches, or what its
/// trigger's names mean, is bound too: row security switched off (or not
/// forced) after the approval, or a search_path that makes the trigger
/// function call another function, voids the token.
#[test]
fn row_security_and_a_triggers_search_path_are_bound_too() {
    let w = world("pv_rls");
    let approver = new_approver("pv_rls");
    let mut agent = protect_update(&w);
    admin(&w.protected)
        .batch_execute(&format!(
            "ALTER TABLE public.orders OWNER TO {agent};
             GRANT CREATE ON DATABASE {db} TO {agent};",
            agent = w.agent,
            db = w.protected
        ))
        .unwrap();
    agent
        .batch_execute(
            "ALTER TABLE orders ENABLE ROW LEVEL SECURITY; ALTER TABLE orders FORCE ROW LEVEL SECURITY;
             CREATE POLICY low ON orders USING (id <= 5);
             CREATE FUNCTION public.stamp(t text) RETURNS text LANGUAGE sql AS 'SELECT t';
             CREATE FUNCTION public.stamp_note() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.note := stamp(NEW.note); RETURN NEW; END $$;
             CREATE TRIGGER stamp BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION public.stamp_note();",
        )
        .unwrap();
    let update = "UPDATE orders SET note = 'checked' WHERE id IN (SELECT id FROM orders ORDER BY id DESC LIMIT 2)";
    for (change, undo) in [
        ("ALTER TABLE orders NO FORCE ROW LEVEL SECURITY", "ALTER TABLE orders FORCE ROW LEVEL SECURITY"),
        (
            "CREATE SCHEMA IF NOT EXISTS evil; CREATE OR REPLACE FUNCTION evil.stamp(t text) RETURNS text LANGUAGE sql AS 'SELECT ''wiped''';
             SET search_path = evil, public",
            "RESET search_path",
        ),
    ] {
        let token = request(&mut agent, "UPDATE", update, None)
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        w.grant(&approver, &token);
        agent.batch_execute(change).unwrap();
        let e = assert_refused(agent.batch_execute(&with_token(update, &token)));
        assert!(
            e.contains("was granted while the table's own code was different"),
            "{change}: {e}"
        );
        agent.batch_execute(undo).unwrap();
        // As approved, it runs.
        agent
            .batch_execute(&with_token(update, &token))
            .unwrap_or_else(|e| panic!("{change}: {}", describe(&e)));
        agent.batch_execute("ROLLBACK").ok();
    }
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE note = 'wiped'"
        ),
        0
    );
}
