//! The API cannot be shadowed (issue 10, class 3). Whoever may create
//! functions in `public` can define a look-alike of an API function that
//! takes the call of a person who runs the name unqualified, with untyped
//! literals. So the API lives in schema `ai_agent_safety`, where only the
//! extension creates functions; everything a person is told to run is
//! schema-qualified and typed; and agents may not take an API name for a
//! function, procedure, aggregate or schema in any schema of any database.

use aas_integration::postgres::Client;
use aas_integration::*;

/// A look-alike `public.grant_approval_token(text, text)` that records the
/// token it was given and approves nothing.
const LOOK_ALIKE: &str = "
    CREATE TABLE public.taken (token text);
    GRANT ALL ON public.taken TO PUBLIC;
    CREATE FUNCTION public.grant_approval_token(token text, comment text DEFAULT NULL)
      RETURNS timestamptz LANGUAGE sql AS
      $$ INSERT INTO public.taken VALUES (token) RETURNING now() $$;";

fn status(c: &mut Client, token: &str) -> String {
    c.query_one(
        "SELECT status FROM ai_agent_safety.approval_token_status($1::text::uuid)",
        &[&token],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_look_alike_takes_unqualified_calls_but_never_the_qualified_typed_one() {
    let w = World::new("shadow");
    let dba = new_approver("shadow");
    let human = unique("shadow_human");
    admin("postgres")
        .batch_execute(&format!("CREATE ROLE {human} LOGIN"))
        .unwrap();
    admin(&w.protected)
        .batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {human}"))
        .unwrap();
    // A role that is not an agent (here, nothing stops it) plants the look-alike.
    connect(&human, &w.protected)
        .batch_execute(LOOK_ALIKE)
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let token: String = w
        .agent_in(&w.protected)
        .query_one(
            "SELECT request_approval_token('delete_operation', 'task-1', 'public.orders')::text",
            &[],
        )
        .unwrap()
        .get(0);
    let mut d = connect(&dba, &w.protected);
    // The attack works on an unqualified, untyped call: the look-alike took
    // it, and the request is still pending.
    d.batch_execute(&format!("SELECT grant_approval_token('{token}')"))
        .unwrap();
    assert_eq!(
        count(
            &mut d,
            &format!("SELECT count(*) FROM public.taken WHERE token = '{token}'")
        ),
        1
    );
    assert_eq!(status(&mut d, &token), "pending");
    // Nobody but the extension creates functions in its schema.
    let e = connect(&human, &w.protected)
        .batch_execute("CREATE FUNCTION ai_agent_safety.grant_approval_token(text) RETURNS int LANGUAGE sql AS 'SELECT 1'")
        .expect_err("the extension's schema is its own");
    assert!(
        describe(&e).contains("permission denied for schema ai_agent_safety"),
        "{}",
        describe(&e)
    );
    // What the approver is told to run reaches the real function.
    let grant_sql: String = d
        .query_one(
            "SELECT grant_sql FROM ai_agent_safety.pending_requests WHERE token = $1::text::uuid",
            &[&token],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        grant_sql,
        format!("SELECT ai_agent_safety.grant_approval_token('{token}'::uuid);")
    );
    d.batch_execute(&grant_sql).unwrap();
    assert_eq!(status(&mut d, &token), "granted");
    assert_eq!(
        count(
            &mut d,
            &format!("SELECT count(*) FROM public.taken WHERE token = '{token}'")
        ),
        1
    );
}

/// Each way an agent could take an API name, and a neighbour it may use.
fn takings() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "CREATE FUNCTION public.grant_approval_token(token text, comment text) RETURNS timestamptz LANGUAGE sql AS 'SELECT now()'",
            "may not name a function grant_approval_token",
        ),
        (
            "CREATE OR REPLACE FUNCTION public.approval_token_status(token text) RETURNS text LANGUAGE sql AS 'SELECT ''granted'''",
            "may not name a function approval_token_status",
        ),
        (
            "CREATE PROCEDURE public.revoke_agent_credentials(role text) LANGUAGE sql AS 'SELECT 1'",
            "CREATE PROCEDURE refused",
        ),
        (
            "CREATE AGGREGATE public.request_approval_token(text) (sfunc = textcat, stype = text)",
            "CREATE AGGREGATE refused",
        ),
        (
            "ALTER FUNCTION public.helper() RENAME TO deny_approval_token",
            "ALTER FUNCTION ... RENAME refused",
        ),
        (
            "ALTER ROUTINE public.helper() RENAME TO issue_agent_credentials",
            "ALTER ROUTINE ... RENAME refused",
        ),
        (
            "CREATE SCHEMA ai_agent_safety",
            "may not name a schema ai_agent_safety",
        ),
        (
            "ALTER SCHEMA mine RENAME TO ai_agent_safety",
            "ALTER SCHEMA ... RENAME refused",
        ),
    ]
}

#[test]
fn agents_may_not_take_api_names_in_any_database() {
    let w = World::new("apinames");
    let nowhere = unique("apinames_plain");
    let mut su = admin("postgres");
    su.batch_execute(&format!("CREATE DATABASE {nowhere} OWNER {}", w.owner))
        .unwrap();
    // Databases with the extension (protected or not), and one without it.
    for db in [&w.protected, &w.open, &nowhere] {
        admin(db)
            .batch_execute(&format!(
                "GRANT ALL ON SCHEMA public TO {a}; GRANT CREATE ON DATABASE {db} TO {a}",
                a = w.agent
            ))
            .unwrap();
        let mut a = w.agent_in(db);
        a.batch_execute(
            "CREATE FUNCTION public.helper() RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE SCHEMA mine;",
        )
        .unwrap_or_else(|e| panic!("{db}: {}", describe(&e)));
        for (sql, expect) in takings() {
            let msg = assert_refused(a.batch_execute(sql));
            assert!(
                msg.contains(expect)
                    && msg.contains(&format!("agent role \"{}\"", w.agent))
                    && msg.contains("a name of the ai_agent_safety API"),
                "{db}: {sql}: {msg}"
            );
        }
        // Other names stay the agent's to use, quoted look-alikes included.
        a.batch_execute(
            "CREATE FUNCTION public.\"Grant_Approval_Token\"(text) RETURNS int LANGUAGE sql AS 'SELECT 1';
             ALTER FUNCTION public.helper() RENAME TO helper2;
             ALTER SCHEMA mine RENAME TO mine2;",
        )
        .unwrap_or_else(|e| panic!("{db}: {}", describe(&e)));
        assert_eq!(
            count(
                &mut admin(db),
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = 'public' AND p.proname IN
                        ('grant_approval_token', 'approval_token_status', 'revoke_agent_credentials',
                         'deny_approval_token', 'issue_agent_credentials')"
            ),
            0
        );
    }
    // A role that is not an agent is not refused (the schema-qualified API is
    // what protects people from its look-alikes).
    let mut owner = w.owner_in(&nowhere);
    owner
        .batch_execute("CREATE FUNCTION public.deny_approval_token(text) RETURNS int LANGUAGE sql AS 'SELECT 1'")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
}

#[test]
fn agents_keep_the_unqualified_request_and_the_hint_runs_as_written() {
    let w = World::new("apiseed");
    let mut a = w.agent_in(&w.protected);
    a.batch_execute("SET ai_agent_safety.task_id = 'cleanup-7'")
        .unwrap();
    // The seed's call, unqualified.
    let t: String = a
        .query_one(
            "SELECT request_approval_token('delete_operation', 'database_cleanup_task_id_12345')::text",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(t.len(), 36);
    // The refusal's hint is schema-qualified and typed, and runs as written.
    let msg = assert_guard_refused(a.batch_execute("DELETE FROM public.orders WHERE id = 1"));
    let hint = msg
        .split("HINT: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no hint: {msg}"));
    let sql = hint
        .split("Request approval with ")
        .nth(1)
        .and_then(|s| s.split("; once").next())
        .unwrap_or_else(|| panic!("hint: {hint}"));
    assert_eq!(
        sql,
        "SELECT ai_agent_safety.request_approval_token('DELETE'::text, 'cleanup-7'::text, 'public.orders'::text)"
    );
    let t2: String = a.query_one(&format!("{sql}::text"), &[]).unwrap().get(0);
    assert_ne!(t, t2);
}

/// The list of names agents may not take is the extension's functions.
#[test]
fn the_api_names_are_the_installed_functions() {
    let w = World::new("apilist");
    let installed: Vec<String> = admin(&w.open)
        .query(
            "SELECT DISTINCT p.proname::text COLLATE \"C\" FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
              WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ai_agent_safety')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let listed: Vec<String> = aas_policy::api::FUNCTION_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(installed, listed);
}
