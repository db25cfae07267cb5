//! Upgrades in place: a database created at the released 0.1.0 keeps every
//! token and audit event through `ALTER EXTENSION ai_agent_safety UPDATE`,
//! they still work, the upgraded objects equal a fresh install's, and SQL
//! objects at a version the library does not serve are refused clearly.

use aas_integration::*;
use postgres::Client;

const RELEASED: &str = "0.1.0";

/// Everything the extension owns in this database, as text: each member
/// object with its definition and privileges, sorted. Two databases with
/// the same fingerprint have the same objects.
fn fingerprint(c: &mut Client) -> Vec<String> {
    c.query(
        "WITH members AS (
           SELECT d.classid, d.objid, pg_catalog.pg_describe_object(d.classid, d.objid, 0) AS what
             FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
            WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
              AND e.extname = 'ai_agent_safety')
         SELECT what || ' | ' || coalesce(CASE
             WHEN classid = 'pg_catalog.pg_proc'::regclass THEN
               pg_catalog.pg_get_functiondef(objid) || ' acl=' || coalesce((SELECT proacl::text FROM pg_catalog.pg_proc WHERE oid = objid), '-')
             WHEN classid = 'pg_catalog.pg_class'::regclass THEN
               (SELECT relkind::text || ' acl=' || coalesce(relacl::text, '-') || ' cols=' ||
                       coalesce((SELECT string_agg(attname || ':' || pg_catalog.format_type(atttypid, atttypmod) ||
                                 ':' || attnotnull::text || ':' || coalesce(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), ''), ',' ORDER BY attnum)
                                  FROM pg_catalog.pg_attribute a
                                  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                 WHERE a.attrelid = objid AND attnum > 0 AND NOT attisdropped), '') ||
                       ' view=' || coalesce(pg_catalog.pg_get_viewdef(objid), '') ||
                       ' cons=' || coalesce((SELECT string_agg(conname || ':' || pg_catalog.pg_get_constraintdef(oid), ',' ORDER BY conname)
                                  FROM pg_catalog.pg_constraint WHERE conrelid = objid), '') ||
                       ' idx=' || coalesce((SELECT string_agg(pg_catalog.pg_get_indexdef(indexrelid), ',' ORDER BY 1)
                                  FROM pg_catalog.pg_index WHERE indrelid = objid), '') ||
                       ' trg=' || coalesce((SELECT string_agg(pg_catalog.pg_get_triggerdef(oid), ',' ORDER BY tgname)
                                  FROM pg_catalog.pg_trigger WHERE tgrelid = objid AND NOT tgisinternal), '')
                  FROM pg_catalog.pg_class WHERE oid = objid)
             WHEN classid = 'pg_catalog.pg_namespace'::regclass THEN
               (SELECT 'acl=' || coalesce(nspacl::text, '-') FROM pg_catalog.pg_namespace WHERE oid = objid)
             ELSE '' END, '') || ' comment=' || coalesce(pg_catalog.obj_description(objid, (SELECT relname FROM pg_catalog.pg_class WHERE oid = classid)), '')
           FROM members ORDER BY 1",
        &[],
    )
    .unwrap_or_else(|e| panic!("fingerprint: {}", describe(&e)))
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

/// The tokens and audit events, row by row, as text.
fn kept_rows(c: &mut Client) -> (Vec<String>, Vec<String>) {
    let mut rows = |sql: &str| -> Vec<String> {
        c.query(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    };
    // The released version's columns; later ones are checked on their own.
    let tokens = rows(
        "SELECT ROW(t.id, t.database, t.requested_by, t.requested_at, t.operation, t.target_classid,
                    t.target_objid, t.target_text, t.verb, t.task_id, t.reason, t.state, t.decided_by,
                    t.decided_at, t.decision_comment, t.expires_at, t.used_at, t.used_by_pid,
                    t.used_statement, t.statement, t.statement_form, t.expiry_logged)::text
           FROM ai_agent_safety.tokens t ORDER BY id",
    );
    let audit = rows("SELECT a::text FROM ai_agent_safety.audit_log a ORDER BY id");
    (tokens, audit)
}

fn extversion(c: &mut Client) -> String {
    c.query_one(
        "SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = 'ai_agent_safety'",
        &[],
    )
    .unwrap()
    .get(0)
}

fn request(agent: &mut Client, task: &str) -> String {
    agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', $1, 'public.orders')::text",
            &[&task],
        )
        .unwrap_or_else(|e| panic!("request: {}", describe(&e)))
        .get(0)
}

/// Waits (bounded) until the writer has loaded at least `n` audit events.
fn audit_rows_at_least(c: &mut Client, n: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let have = count(c, "SELECT count(*) FROM ai_agent_safety.audit_log");
        if have >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{have} audit events, wanted {n}"
        );
        c.batch_execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn an_upgrade_from_the_released_version_keeps_every_token_and_event_and_they_still_work() {
    let w = World::new("upgrade");
    let approver = new_approver("upgrade");
    // The protected database again, at the released version.
    let mut su = admin(&w.protected);
    su.batch_execute(&format!(
        "DROP EXTENSION ai_agent_safety; CREATE EXTENSION ai_agent_safety VERSION '{RELEASED}';"
    ))
    .unwrap_or_else(|e| panic!("create at {RELEASED}: {}", describe(&e)));
    assert_eq!(extversion(&mut su), RELEASED);
    // Tokens in every state, and the events they made.
    let mut agent = w.agent_in(&w.protected);
    let pending = request(&mut agent, "upgrade-pending");
    let granted = request(&mut agent, "upgrade-granted");
    let used = request(&mut agent, "upgrade-used");
    w.grant(&approver, &granted);
    w.grant(&approver, &used);
    agent
        .batch_execute(&format!(
            "SET ai_agent_safety.approval_token = '{used}'; DELETE FROM public.orders WHERE id = 1; RESET ai_agent_safety.approval_token;"
        ))
        .unwrap_or_else(|e| panic!("the used token's DELETE: {}", describe(&e)));
    assert_refused(agent.batch_execute("DELETE FROM public.orders WHERE id = 2"));
    audit_rows_at_least(&mut su, 4);
    let before = kept_rows(&mut su);
    assert!(before.0.len() == 3 && before.1.len() >= 4, "{before:?}");
    // A DBA's SIEM role reads 0.1.0's table, and a view of theirs is built
    // on it.
    let siem = unique("upgrade_siem");
    su.batch_execute(&format!(
        "CREATE ROLE {siem} LOGIN;
         GRANT SELECT ON ai_agent_safety.audit_log TO {siem};
         CREATE VIEW public.siem_refusals AS
           SELECT id, ts, session_user_name, reason FROM ai_agent_safety.audit_log WHERE decision = 'refuse';"
    ))
    .unwrap();

    let (mut up, notices) = connect_with_notices("postgres", &w.protected);
    up.batch_execute("ALTER EXTENSION ai_agent_safety UPDATE")
        .unwrap_or_else(|e| panic!("ALTER EXTENSION UPDATE: {}", describe(&e)));
    assert_eq!(extversion(&mut su), env_version());
    // The view now reads the renamed table: the update says so.
    let said = notices.lock().unwrap().join("\n");
    assert!(
        said.contains("siem_refusals") && said.contains("renames to ai_agent_safety.audit_row"),
        "{said}"
    );

    // Every token and event is still there, unchanged.
    let after = kept_rows(&mut su);
    assert_eq!(after.0, before.0, "tokens kept");
    // Columns 0.2.0 added (row caps, previews) are empty for older tokens:
    // they have no cap, and were not previewed.
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM ai_agent_safety.tokens
              WHERE max_rows IS NULL AND preview IS NULL AND preview_rows IS NULL"
        ),
        3
    );
    assert_eq!(
        &after.1[..before.1.len()],
        &before.1[..],
        "audit events kept"
    );
    assert_eq!(w.token_status(&pending), "pending");
    assert_eq!(w.token_status(&used), "used");
    // The granted token still works, once.
    let mut agent = w.agent_in(&w.protected);
    agent
        .batch_execute(&format!(
            "SET ai_agent_safety.approval_token = '{granted}'; DELETE FROM public.orders WHERE id = 3;"
        ))
        .unwrap_or_else(|e| panic!("the granted token after the upgrade: {}", describe(&e)));
    let msg = assert_refused(agent.batch_execute(&format!(
        "SET ai_agent_safety.approval_token = '{granted}'; DELETE FROM public.orders WHERE id = 4;"
    )));
    assert!(msg.contains("already used"), "{msg}");
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.orders"), 8);
    // New events are stored in batches, and the SIEM role reads them, old
    // and new, through the view.
    audit_rows_at_least(&mut su, after.1.len() as i64 + 2);
    assert!(count(&mut su, "SELECT count(*) FROM ai_agent_safety.audit_batch") >= 1);
    let mut reader = connect(&siem, &w.protected);
    assert_eq!(
        count(
            &mut reader,
            "SELECT count(*) FROM ai_agent_safety.audit_log"
        ),
        count(&mut su, "SELECT count(*) FROM ai_agent_safety.audit_log")
    );
    assert!(
        count(
            &mut reader,
            "SELECT count(*) FROM ai_agent_safety.audit_log WHERE reason LIKE '%already used%'"
        ) >= 1
    );
    // The audit log is still append-only.
    assert_refused(su.batch_execute("UPDATE ai_agent_safety.audit_log SET reason = 'x'"));
    assert_refused(su.batch_execute("DELETE FROM ai_agent_safety.audit_log"));
    // What 0.2.0 added works.
    let lib: String = su
        .query_one("SELECT ai_agent_safety.library_version()", &[])
        .unwrap()
        .get(0);
    assert_eq!(lib, env_version());
    // The upgraded objects are a fresh install's (without the DBA's grants).
    su.batch_execute(&format!(
        "REVOKE ALL ON ai_agent_safety.audit_log, ai_agent_safety.audit_row, ai_agent_safety.audit_batch FROM {siem};
         REVOKE ALL ON FUNCTION ai_agent_safety._audit_events(bytea, bigint) FROM {siem};"
    ))
    .unwrap();
    let fresh = fingerprint(&mut admin(&w.open));
    assert_eq!(extversion(&mut admin(&w.open)), env_version());
    let upgraded = fingerprint(&mut su);
    assert_eq!(upgraded.len(), fresh.len(), "same number of objects");
    for (u, f) in upgraded.iter().zip(fresh.iter()) {
        assert_eq!(u, f, "an upgraded object differs from a fresh install's");
    }
}

/// The crate's version: what a fresh CREATE EXTENSION makes.
fn env_version() -> String {
    let toml = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let line = toml
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .find(|l| l.starts_with("version"))
        .unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn sql_objects_the_library_does_not_serve_are_refused_with_the_way_to_update() {
    let w = World::new("upgrade_old");
    let approver = new_approver("upgrade_old");
    let mut agent = w.agent_in(&w.protected);
    let token = request(&mut agent, "upgrade-old");
    w.grant(&approver, &token);
    // As if the objects were left at a version before the oldest this
    // library serves (a library upgraded without ALTER EXTENSION UPDATE).
    let mut su = admin(&w.protected);
    su.batch_execute(
        "UPDATE pg_catalog.pg_extension SET extversion = '0.0.9' WHERE extname = 'ai_agent_safety'",
    )
    .unwrap();
    let mut agent = w.agent_in(&w.protected);
    let e = agent
        .batch_execute(&format!(
            "SET ai_agent_safety.approval_token = '{token}'; DELETE FROM public.orders WHERE id = 1;"
        ))
        .unwrap_err();
    let msg = describe(&e);
    assert!(
        msg.contains("42501")
            && msg.contains("SQL objects in this database are at version 0.0.9")
            && msg.contains("ALTER EXTENSION ai_agent_safety UPDATE;"),
        "{msg}"
    );
    // Sessions that are not agents are not broken.
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.orders"), 10);
    su.batch_execute("DELETE FROM public.orders WHERE id = 10")
        .unwrap();
    // Put right, the token works.
    su.batch_execute(&format!(
        "UPDATE pg_catalog.pg_extension SET extversion = '{}' WHERE extname = 'ai_agent_safety'",
        env_version()
    ))
    .unwrap();
    let mut agent = w.agent_in(&w.protected);
    agent
        .batch_execute(&format!(
            "SET ai_agent_safety.approval_token = '{token}'; DELETE FROM public.orders WHERE id = 1;"
        ))
        .unwrap_or_else(|e| panic!("after the repair: {}", describe(&e)));
}
