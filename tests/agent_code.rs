//! Code an agent wrote is the agent's, whoever runs it (issue 10, class 1).
//! An agent plants a rule, a trigger, a function, a column default or a
//! view; a human's ordinary statement then runs it, with the human's
//! privileges. In the database without require_approval the planted code
//! destroys `orders`; in the protected one the statement is judged as the
//! agent's and refused, and `orders` is intact.

use aas_integration::postgres::Client;
use aas_integration::*;

/// Each plant: the agent's SQL, then the human's innocent statement.
const PLANTS: [(&str, &str, &str); 6] = [
    (
        "rule",
        "CREATE TABLE public.inbox (x int); GRANT ALL ON public.inbox TO PUBLIC;
         CREATE RULE r AS ON INSERT TO public.inbox DO ALSO DELETE FROM public.orders;",
        "INSERT INTO public.inbox VALUES (1)",
    ),
    (
        "trigger",
        "CREATE TABLE public.feed (x int); GRANT ALL ON public.feed TO PUBLIC;
         CREATE FUNCTION public.on_feed() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN DELETE FROM public.orders; RETURN NEW; END $$;
         CREATE TRIGGER t AFTER INSERT ON public.feed FOR EACH ROW EXECUTE FUNCTION public.on_feed();",
        "INSERT INTO public.feed VALUES (1)",
    ),
    (
        "function",
        "CREATE FUNCTION public.monthly_report() RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN DELETE FROM public.orders; RETURN 1; END $$;",
        "SELECT public.monthly_report()",
    ),
    (
        "sql function",
        "CREATE FUNCTION public.tidy() RETURNS bigint LANGUAGE sql AS
           $$ WITH d AS (DELETE FROM public.orders RETURNING 1) SELECT count(*) FROM d $$;",
        "SELECT public.tidy()",
    ),
    (
        "column default",
        "CREATE FUNCTION public.next_id() RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN TRUNCATE public.orders; RETURN 1; END $$;
         CREATE TABLE public.events (id int DEFAULT public.next_id(), note text);
         GRANT ALL ON public.events TO PUBLIC;",
        "INSERT INTO public.events (note) VALUES ('hello')",
    ),
    (
        "view",
        "CREATE VIEW public.recent_orders AS SELECT * FROM public.orders;
         GRANT ALL ON public.recent_orders TO PUBLIC;",
        "DELETE FROM public.recent_orders",
    ),
];

fn orders(c: &mut Client) -> i64 {
    count(c, "SELECT count(*) FROM public.orders")
}

fn restore(c: &mut Client) {
    c.batch_execute(
        "INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 10) g
         ON CONFLICT DO NOTHING",
    )
    .unwrap();
}

#[test]
fn planted_code_runs_as_the_agents_whoever_runs_it() {
    let w = World::new("planted");
    for db in [&w.open, &w.protected] {
        let mut agent = w.agent_in(db);
        for (what, plant, _) in PLANTS {
            agent
                .batch_execute(plant)
                .unwrap_or_else(|e| panic!("{db}: planting the {what}: {}", describe(&e)));
        }
    }
    // Without require_approval, the human's statement destroys orders.
    let mut human = w.owner_in(&w.open);
    for (what, _, innocent) in PLANTS {
        restore(&mut human);
        human
            .batch_execute(innocent)
            .unwrap_or_else(|e| panic!("open: {what}: {}", describe(&e)));
        assert_eq!(orders(&mut human), 0, "open: the {what} destroys orders");
    }
    // With it, the statement is the agent's and is refused; orders stay.
    let mut human = w.owner_in(&w.protected);
    for (what, _, innocent) in PLANTS {
        let msg = assert_refused(human.batch_execute(innocent));
        assert!(
            msg.contains(&format!(
                "refused: agent role \"{}\" needs an approval token in database \"{}\" (its code, run by \"{}\")",
                w.agent, w.protected, w.owner
            )) && msg.contains(&format!("code that agent role \"{}\" owns", w.agent)),
            "{what}: {msg}"
        );
        assert_eq!(orders(&mut human), 10, "protected: the {what}");
    }
    // The human's own statements are not the agent's.
    human
        .batch_execute("DELETE FROM public.orders WHERE id = 10")
        .unwrap();
    assert_eq!(orders(&mut human), 9);
}

/// The answer follows the role graph: once the owner is no longer an agent
/// its code is the owner's like any other role's, and the same session sees
/// that at once (the caches are dropped on the change).
#[test]
fn the_owner_stops_being_an_agent() {
    let w = World::new("plantrev");
    w.agent_in(&w.protected).batch_execute(PLANTS[2].1).unwrap();
    let mut human = w.owner_in(&w.protected);
    assert_refused(human.batch_execute(PLANTS[2].2));
    assert_eq!(orders(&mut human), 10);
    admin("postgres")
        .batch_execute(&format!("REVOKE ai_agent FROM {}", w.agent))
        .unwrap();
    human.batch_execute(PLANTS[2].2).unwrap();
    assert_eq!(orders(&mut human), 0);
}

/// A function of the agent that only reads changes nothing for the human,
/// and a human's function called by the agent is judged as the agent's
/// statement, as before.
#[test]
fn reading_agent_code_is_allowed_and_agents_stay_judged() {
    let w = World::new("plantread");
    w.agent_in(&w.protected)
        .batch_execute(
            "CREATE FUNCTION public.order_count() RETURNS bigint LANGUAGE plpgsql AS
               $$ BEGIN RETURN (SELECT count(*) FROM public.orders); END $$;
             CREATE VIEW public.order_ids AS SELECT id FROM public.orders;
             GRANT SELECT ON public.order_ids TO PUBLIC;",
        )
        .unwrap();
    let mut human = w.owner_in(&w.protected);
    let n: i64 = human
        .query_one("SELECT public.order_count()", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    assert_eq!(
        count(&mut human, "SELECT count(*) FROM public.order_ids"),
        10
    );
    human
        .batch_execute(
            "CREATE FUNCTION public.purge() RETURNS void LANGUAGE sql AS 'DELETE FROM public.orders';
             GRANT EXECUTE ON FUNCTION public.purge() TO PUBLIC;",
        )
        .unwrap();
    assert_guard_refused(
        w.agent_in(&w.protected)
            .batch_execute("SELECT public.purge()"),
    );
    assert_eq!(orders(&mut human), 10);
}

/// Code laundered through ownership would run unjudged: a role that is not
/// an agent, with the agent's memberships, shows it; the agent is refused
/// every way to leave its code with a role that is not an agent.
#[test]
fn agent_code_cannot_be_laundered_through_ownership() {
    let w = World::new("launder");
    let group = unique("launder_app");
    let twin = unique("launder_twin");
    let mut su = admin("postgres");
    su.batch_execute(&format!(
        "CREATE ROLE {group} NOLOGIN; CREATE ROLE {twin} LOGIN;
         GRANT {group} TO {agent}, {twin};",
        agent = w.agent
    ))
    .unwrap();
    admin(&w.protected)
        .batch_execute(&format!(
            "GRANT ALL ON SCHEMA public TO {group}, {twin}; GRANT ALL ON public.orders TO {group};"
        ))
        .unwrap();
    let mut human = w.owner_in(&w.protected);
    // The mechanism: code owned by a role that is not an agent runs unjudged.
    let mut t = connect(&twin, &w.protected);
    t.batch_execute(&format!(
        "SET ROLE {group};
         CREATE FUNCTION public.tidy_up() RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN DELETE FROM public.orders; RETURN 1; END $$;
         CREATE TABLE public.inbox2 (x int); GRANT ALL ON public.inbox2 TO PUBLIC;"
    ))
    .unwrap();
    human.batch_execute("SELECT public.tidy_up()").unwrap();
    assert_eq!(orders(&mut human), 0);
    restore(&mut human);
    // The agent: every way is refused, in this database and the open one.
    let mut a = w.agent_in(&w.protected);
    a.batch_execute(
        "CREATE FUNCTION public.mine() RETURNS int LANGUAGE sql AS 'SELECT 1';
         CREATE TABLE public.mine_t (x int);",
    )
    .unwrap();
    let agent = w.agent.clone();
    let attempts = [
        (
            format!("SET ROLE {group}; CREATE FUNCTION public.f2() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
            format!("CREATE FUNCTION refused: agent role \"{agent}\" may not create code owned by role \"{group}\""),
        ),
        (
            format!("SET ROLE {group}; CREATE VIEW public.v2 AS SELECT 1 AS x"),
            "CREATE VIEW refused".to_string(),
        ),
        (
            format!("ALTER FUNCTION public.mine() OWNER TO {group}"),
            format!("may not give objects to role \"{group}\", which is not an agent"),
        ),
        (
            format!("ALTER TABLE public.mine_t OWNER TO {group}"),
            "ALTER ... OWNER TO refused".to_string(),
        ),
        (
            format!("REASSIGN OWNED BY {agent} TO {group}"),
            "REASSIGN OWNED refused".to_string(),
        ),
        (
            "CREATE RULE r AS ON INSERT TO public.inbox2 DO ALSO DELETE FROM public.orders".to_string(),
            format!("may not create a rule on a table owned by role \"{group}\""),
        ),
    ];
    for (sql, expect) in &attempts {
        let msg = assert_refused(a.batch_execute(sql));
        assert!(msg.contains(expect.as_str()), "{sql}: {msg}");
        a.batch_execute("RESET ROLE").unwrap();
    }
    // What the agent makes as itself stays allowed, and stays its own.
    a.batch_execute("CREATE FUNCTION public.mine2() RETURNS int LANGUAGE sql AS 'SELECT 2'")
        .unwrap();
    assert_eq!(
        count(
            &mut human,
            &format!(
                "SELECT count(*) FROM pg_proc WHERE proname IN ('mine', 'mine2', 'f2')
                   AND proowner = '{agent}'::regrole"
            )
        ),
        2
    );
    assert_eq!(orders(&mut human), 10);
}

/// What an adversarial review found around the first version: agent code
/// run by a superuser switching the guard off, run by an approver deciding
/// the agent's own request, a security_invoker view redirecting a write;
/// and a human statement that only reads an agent's view is the human's.
#[test]
fn agent_code_cannot_switch_the_guard_off_or_decide_or_redirect() {
    let w = World::new("plantadv");
    let dba = new_approver("plantadv");
    let mut a = w.agent_in(&w.protected);
    let token: String = a
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('TRUNCATE', 'cleanup', 'public.orders')::text",
            &[],
        )
        .unwrap()
        .get(0);
    a.batch_execute(&format!(
        "CREATE FUNCTION public.stats() RETURNS int LANGUAGE plpgsql AS $$ BEGIN
           PERFORM set_config('ai_agent_safety.require_approval', 'off', true);
           DELETE FROM public.orders; RETURN 0; END $$;
         CREATE FUNCTION public.nice_stats() RETURNS text LANGUAGE plpgsql AS $$ BEGIN
           PERFORM ai_agent_safety.grant_approval_token('{token}'::uuid, 'ok'); RETURN 'ok'; END $$;
         CREATE VIEW public.stats_v AS SELECT public.nice_stats();
         GRANT SELECT ON public.stats_v TO PUBLIC;
         CREATE VIEW public.archive WITH (security_invoker = true) AS SELECT * FROM public.orders;
         GRANT ALL ON public.archive TO PUBLIC;
         CREATE VIEW public.recent AS SELECT id FROM public.orders WHERE id > 5;
         GRANT SELECT ON public.recent TO PUBLIC;"
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // A function's SET clause of a guard setting is refused at creation.
    let msg = assert_refused(a.batch_execute(
        "CREATE FUNCTION public.quiet() RETURNS int LANGUAGE sql
           SET ai_agent_safety.require_approval = off AS 'SELECT 1'",
    ));
    assert!(
        msg.contains("may not change ai_agent_safety.require_approval"),
        "{msg}"
    );
    // A superuser running the agent's function: the guard stays on.
    let mut su = admin(&w.protected);
    let msg = assert_refused(su.batch_execute("SELECT public.stats()"));
    assert!(
        msg.contains("may not change ai_agent_safety.require_approval"),
        "{msg}"
    );
    assert_eq!(orders(&mut su), 10);
    // An approver reading the agent's view does not grant its request.
    let mut d = connect(&dba, &w.protected);
    let msg = assert_refused(d.batch_execute("SELECT * FROM public.stats_v"));
    assert!(msg.contains("from code an agent owns"), "{msg}");
    let status: String = d
        .query_one(
            "SELECT status FROM ai_agent_safety.approval_token_status($1::text::uuid)",
            &[&token],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "pending");
    // A write through the agent's security_invoker view is the agent's.
    let mut human = w.owner_in(&w.protected);
    let msg = assert_refused(human.batch_execute("DELETE FROM public.archive"));
    assert!(msg.contains("(its code, run by"), "{msg}");
    assert_eq!(orders(&mut human), 10);
    // Reading the agent's view in the human's own DELETE is the human's.
    human
        .batch_execute("DELETE FROM public.orders WHERE id IN (SELECT id FROM public.recent)")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(orders(&mut human), 5);
}

/// A look-alike of a pg_catalog function, made in the install schema before
/// CREATE EXTENSION, does not bind into the extension's views.
#[test]
fn install_binds_only_pg_catalog_functions() {
    let db = unique("preinstall");
    let mut su = admin("postgres");
    su.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut c = admin(&db);
    c.batch_execute(
        "CREATE FUNCTION public.format(fmt text, id uuid) RETURNS text LANGUAGE sql AS $$ SELECT 'taken' $$;
         CREATE EXTENSION ai_agent_safety;",
    )
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let bound: i64 = count(
        &mut c,
        "SELECT count(*) FROM pg_depend d
          WHERE d.refobjid = 'public.format(text, uuid)'::regprocedure AND d.deptype = 'n'",
    );
    assert_eq!(bound, 0);
    let v: String = c
        .query_one(
            "SELECT pg_get_viewdef('ai_agent_safety.pending_requests'::regclass)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!v.contains("public.format"), "{v}");
}

/// The second adversarial review: a cursor over a DELETE that an agent's
/// function opens and another role reads after the function returned; a
/// program run from an agent's function by a superuser; and a human's
/// DELETE whose foreign-key cascade into an agent's table runs as the agent.
#[test]
fn cursors_programs_and_cascades() {
    let w = World::new("plantcur");
    let plant = "
        CREATE FUNCTION public.open_q(q text) RETURNS refcursor LANGUAGE plpgsql AS
          $$ DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE q; RETURN c; END $$;
        CREATE VIEW public.order_summary AS SELECT 1 AS x
          WHERE cursor_to_xml(public.open_q('DELETE FROM public.orders RETURNING 1'), 1, false, false, '') IS NOT NULL;
        GRANT SELECT ON public.order_summary TO PUBLIC;";
    for db in [&w.open, &w.protected] {
        w.agent_in(db)
            .batch_execute(plant)
            .unwrap_or_else(|e| panic!("{db}: {}", describe(&e)));
    }
    let mut open = w.owner_in(&w.open);
    open.batch_execute("SELECT * FROM public.order_summary")
        .unwrap();
    assert_eq!(orders(&mut open), 0, "open: the cursor deleted");
    let mut human = w.owner_in(&w.protected);
    let msg = assert_refused(human.batch_execute("SELECT * FROM public.order_summary"));
    assert!(msg.contains("(its code, run by"), "{msg}");
    let msg = assert_refused(
        human
            .batch_execute("BEGIN; SELECT public.open_q('DELETE FROM public.orders RETURNING 1');"),
    );
    assert!(msg.contains("DELETE on public.orders refused"), "{msg}");
    human.batch_execute("ROLLBACK").unwrap();
    assert_eq!(orders(&mut human), 10);

    // A program from the agent's function, run by a superuser.
    let mut su = admin(&w.protected);
    let prog = "CREATE FUNCTION public.{f}() RETURNS int LANGUAGE plpgsql AS
          $$ BEGIN COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'; RETURN 1; END $$;";
    su.batch_execute(&prog.replace("{f}", "dba_health"))
        .unwrap();
    su.batch_execute("SELECT public.dba_health()").unwrap();
    w.agent_in(&w.protected)
        .batch_execute(&prog.replace("{f}", "health"))
        .unwrap();
    let msg = assert_refused(su.batch_execute("SELECT public.health()"));
    assert!(
        msg.contains("COPY ... TO PROGRAM refused") && msg.contains("may not run programs"),
        "{msg}"
    );

    // The human's DELETE cascades into the agent's table: the human's.
    w.agent_in(&w.protected)
        .batch_execute(
            "CREATE TABLE public.bot_notes (order_id int REFERENCES public.orders ON DELETE CASCADE);
             INSERT INTO public.bot_notes VALUES (1), (2);",
        )
        .unwrap();
    human
        .batch_execute("DELETE FROM public.orders WHERE id IN (1, 3)")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(orders(&mut human), 8);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.bot_notes"), 1);
}

#[test]
fn range_types_cannot_bring_api_names() {
    let w = World::new("apirange");
    let mut a = w.agent_in(&w.open);
    for sql in [
        "CREATE TYPE public.request_approval_token AS RANGE (subtype = text)",
        "CREATE TYPE public.textrange2 AS RANGE (subtype = text, multirange_type_name = grant_approval_token)",
    ] {
        let msg = assert_refused(a.batch_execute(sql));
        assert!(msg.contains("CREATE TYPE ... AS RANGE refused"), "{sql}: {msg}");
    }
    a.batch_execute("CREATE TYPE public.textrange3 AS RANGE (subtype = text)")
        .unwrap();
}

/// An ERROR raised while PostgreSQL plans or runs a query (here division by
/// zero, folded at planning or met at execution) passes through the
/// extension's hooks as an ordinary error, for every kind of session, and
/// the session goes on.
#[test]
fn ordinary_errors_pass_through_the_hooks() {
    let w = World::new("plainerr");
    for mut c in [
        w.owner_in(&w.protected),
        w.agent_in(&w.protected),
        admin(&w.protected),
    ] {
        for sql in [
            "SELECT 1/0",
            "SELECT x/0 FROM (VALUES (1)) v(x)",
            "SELECT * FROM no_such_table",
        ] {
            let e = c.batch_execute(sql).expect_err(sql);
            assert!(e.as_db_error().is_some(), "{sql}: {}", describe(&e));
        }
        assert_eq!(count(&mut c, "SELECT 1::bigint"), 1);
    }
}

/// The third adversarial review. Agent code in a superuser's session may
/// not write what the guard decides from (catalogs, the extension's tables
/// and objects) nor read server files; an approver reading an agent's view
/// or writing its table runs the agent's code (it cannot decide or issue
/// credentials from there); an agent may not put a trigger on a human's
/// table, nor prepare a statement in a human's session.
#[test]
fn agent_code_and_what_the_guard_decides_from() {
    let w = World::new("guardstate");
    let dba = new_approver("guardstate");
    let mut a = w.agent_in(&w.protected);
    let token: String = a
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 't', 'public.orders')::text",
            &[],
        )
        .unwrap()
        .get(0);
    a.batch_execute(&format!(
        "CREATE FUNCTION public.run(q text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; RETURN 1; END $$;
         CREATE FUNCTION public.prep() RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN EXECUTE 'PREPARE cleanup AS DELETE FROM public.orders'; RETURN 1; END $$;
         CREATE VIEW public.order_stats AS
           SELECT count(*) AS n, ai_agent_safety.grant_approval_token('{token}'::uuid, 'auto') AS g FROM public.orders;
         GRANT SELECT ON public.order_stats TO PUBLIC;
         CREATE TABLE public.task_queue (what text,
           meta text DEFAULT ai_agent_safety.issue_agent_credentials('{agent}', '20 hours'));
         GRANT ALL ON public.task_queue TO PUBLIC;",
        agent = w.agent
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut su = admin(&w.protected);
    let mut attempts = vec![
        "UPDATE pg_catalog.pg_db_role_setting SET setconfig = setconfig",
        "UPDATE ai_agent_safety.tokens SET state = ''granted''",
        "ALTER TABLE ai_agent_safety.audit_log DISABLE TRIGGER USER",
        "TRUNCATE ai_agent_safety.tokens",
        "SELECT pg_read_file(''postgresql.conf'')",
    ];
    if server_major(&mut su) >= 16 {
        // Entry points PostgreSQL 16 added.
        attempts.push("SELECT pg_read_file(''postgresql.conf'', true)");
        attempts.push("SELECT pg_read_binary_file(''postgresql.conf'', true)");
    }
    for q in attempts {
        let msg = assert_refused(su.batch_execute(&format!("SELECT public.run('{q}')")));
        assert!(
            msg.contains("may not write the system catalogs")
                || msg.contains("may not run programs or read or write the server's files"),
            "{q}: {msg}"
        );
    }
    // The approver reads the agent's view: nothing granted.
    let mut d = connect(&dba, &w.protected);
    let msg = assert_refused(d.batch_execute("SELECT * FROM public.order_stats"));
    assert!(msg.contains("from code an agent owns"), "{msg}");
    let status: String = d
        .query_one(
            "SELECT status FROM ai_agent_safety.approval_token_status($1::text::uuid)",
            &[&token],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "pending");
    // Writing the agent's table runs its column default: no credentials.
    let msg = assert_refused(d.batch_execute("INSERT INTO public.task_queue (what) VALUES ('x')"));
    assert!(msg.contains("from code an agent owns"), "{msg}");
    // A trigger on a human's table is the agent's to make no more.
    let msg = assert_refused(a.batch_execute(
        "CREATE TRIGGER tidy BEFORE INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    ));
    assert!(
        msg.contains("may not create a trigger on a table owned by role"),
        "{msg}"
    );
    // A statement prepared in the owner's session by the agent's code.
    let mut o = w.owner_in(&w.protected);
    let msg = assert_refused(o.batch_execute("SELECT public.prep()"));
    assert!(msg.contains("may not prepare statements"), "{msg}");
    assert_eq!(orders(&mut o), 10);
}

/// A foreign key whose action writes is a trigger in all but name: it
/// deletes or changes the referencing table's rows whenever the referenced
/// rows go (and on a Citus worker, a key planted there is unseen by the
/// node that previewed the statement). An agent may not add one to a
/// human's table, as it may not add a trigger.
#[test]
fn a_foreign_key_that_writes_is_not_the_agents_to_add_to_a_humans_table() {
    let w = World::new("fkaction");
    let mut su = connect("postgres", &w.protected);
    su.batch_execute(&format!("GRANT {} TO {}", w.owner, w.agent))
        .unwrap();
    let mut o = w.owner_in(&w.protected);
    o.batch_execute(
        "CREATE TABLE public.ledger (order_id int, amount int);
         INSERT INTO public.ledger SELECT g, g FROM generate_series(1, 10) g;",
    )
    .unwrap();
    // Where nothing judges it (the owner, a human): once the key is there,
    // an order's DELETE takes the owner's ledger rows with it.
    o.batch_execute(
        "BEGIN;
         ALTER TABLE public.ledger ADD FOREIGN KEY (order_id) REFERENCES public.orders ON DELETE CASCADE;
         DELETE FROM public.orders WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(count(&mut o, "SELECT count(*) FROM public.ledger"), 9);
    o.batch_execute("ROLLBACK").unwrap();
    // The agent, a member of the owner's role (so it may alter the table):
    // refused for each action that writes.
    let mut a = w.agent_in(&w.protected);
    for action in [
        "ON DELETE CASCADE",
        "ON DELETE SET NULL",
        "ON DELETE SET DEFAULT",
        "ON UPDATE CASCADE",
    ] {
        let msg = assert_refused(a.batch_execute(&format!(
            "ALTER TABLE public.ledger ADD FOREIGN KEY (order_id) REFERENCES public.orders {action}"
        )));
        assert!(
            msg.contains("ALTER TABLE ... ADD FOREIGN KEY refused: agent role")
                && msg.contains("may not add a foreign key that deletes or changes rows")
                && msg.contains(&format!("to a table owned by role \"{}\"", w.owner)),
            "{action}: {msg}"
        );
    }
    // Nor as a new column's REFERENCES (its DEFAULT fills every row).
    let msg = assert_refused(a.batch_execute(
        "ALTER TABLE public.ledger ADD COLUMN ref int DEFAULT 2 REFERENCES public.orders ON DELETE CASCADE",
    ));
    assert!(
        msg.contains("may not add a foreign key that deletes or changes rows"),
        "{msg}"
    );
    // Nor on a table of its own whose partition the owner owns (the key
    // goes on every partition), nor by making the owner's table a
    // partition or child of one of its own (the parent's keys are cloned
    // onto it, its rows written through the parent).
    a.batch_execute(
        "CREATE TABLE public.agent_parted (order_id int, amount int) PARTITION BY RANGE (order_id);
         CREATE TABLE public.agent_parted_keyed (order_id int, amount int) PARTITION BY RANGE (order_id);
         ALTER TABLE public.agent_parted_keyed ADD FOREIGN KEY (order_id) REFERENCES public.orders ON DELETE CASCADE;
         CREATE TABLE public.agent_plain (order_id int, amount int);",
    )
    .unwrap();
    o.batch_execute(
        "CREATE TABLE public.owner_part (order_id int, amount int);
         INSERT INTO public.owner_part VALUES (3, 3);
         CREATE TABLE public.owner_child (order_id int, amount int);",
    )
    .unwrap();
    su.batch_execute(&format!(
        "ALTER TABLE public.agent_parted ATTACH PARTITION public.owner_part FOR VALUES FROM (0) TO (100);
         ALTER TABLE public.owner_part OWNER TO {owner};",
        owner = w.owner
    ))
    .unwrap();
    for (sql, verb) in [
        (
            "ALTER TABLE public.agent_parted ADD FOREIGN KEY (order_id) REFERENCES public.orders ON DELETE CASCADE",
            "ALTER TABLE ... ADD FOREIGN KEY refused",
        ),
        (
            "ALTER TABLE public.agent_parted_keyed ATTACH PARTITION public.owner_child FOR VALUES FROM (0) TO (100)",
            "ALTER TABLE ... ATTACH PARTITION refused",
        ),
        (
            "ALTER TABLE public.owner_child INHERIT public.agent_plain",
            "ALTER TABLE ... INHERIT refused",
        ),
    ] {
        let msg = assert_refused(a.batch_execute(sql));
        assert!(
            msg.contains(verb) && msg.contains(&format!("role \"{}\"", w.owner)),
            "{sql}: {msg}"
        );
    }
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'public.owner_child'::regclass"
        ),
        0
    );
    // A key that only checks is the agent's to add.
    a.batch_execute(
        "ALTER TABLE public.ledger ADD FOREIGN KEY (order_id) REFERENCES public.orders",
    )
    .unwrap();
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.ledger'::regclass AND contype = 'f'"
        ),
        1
    );
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.ledger"), 10);
}

/// An approved DELETE's foreign-key cascade runs a trigger the agent put
/// on a referencing table: the trigger's own DELETE is not part of the
/// approved cascade.
#[test]
fn a_trigger_inside_an_approved_cascade_is_judged() {
    let w = World::new("cascadetrg");
    let dba = new_approver("cascadetrg");
    w.owner_in(&w.protected)
        .batch_execute(&format!(
            "CREATE TABLE public.cust (id int PRIMARY KEY);
             INSERT INTO public.cust SELECT generate_series(1, 5);
             CREATE TABLE public.invoices (cid int REFERENCES public.cust ON DELETE CASCADE);
             INSERT INTO public.invoices SELECT g % 5 + 1 FROM generate_series(1, 15) g;
             GRANT ALL ON public.cust, public.invoices TO {};",
            w.agent
        ))
        .unwrap();
    let mut a = w.agent_in(&w.protected);
    a.batch_execute(
        "CREATE TABLE public.bot_notes (cid int REFERENCES public.cust ON DELETE CASCADE);
         INSERT INTO public.bot_notes VALUES (1);
         CREATE FUNCTION public.wipe() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN DELETE FROM public.invoices; RETURN OLD; END $$;
         CREATE TRIGGER wipe BEFORE DELETE ON public.bot_notes FOR EACH ROW EXECUTE FUNCTION public.wipe();",
    )
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let token: String = a
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 't', 'public.cust')::text",
            &[],
        )
        .unwrap()
        .get(0);
    connect(&dba, &w.protected)
        .batch_execute(&format!(
            "SELECT ai_agent_safety.grant_approval_token('{token}'::uuid)"
        ))
        .unwrap();
    a.batch_execute(&format!("SET ai_agent_safety.approval_token = '{token}'"))
        .unwrap();
    let msg = assert_refused(a.batch_execute("DELETE FROM public.cust WHERE id = 1"));
    assert!(msg.contains("DELETE on public.invoices"), "{msg}");
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM public.invoices"
        ),
        15
    );
}

/// The third adversarial review. A cursor on an agent's view runs the
/// agent's code only while it fetches: the owner's statements between
/// fetches, and after a failed fetch rolled back to a savepoint, are the
/// owner's; the foreign-key cascade of the owner's DELETE that reads an
/// agent's view is the owner's. COPY ... FROM into an agent's table runs
/// the agent's column defaults as the agent's code.
#[test]
fn cursors_cascades_and_copy_around_agent_code() {
    let w = World::new("round3");
    w.owner_in(&w.protected)
        .batch_execute(&format!(
            "CREATE TABLE public.lines (oid int REFERENCES public.orders ON DELETE CASCADE);
             INSERT INTO public.lines VALUES (9), (10);
             GRANT ALL ON public.lines TO {};",
            w.agent
        ))
        .unwrap();
    w.agent_in(&w.protected)
        .batch_execute(
            "CREATE VIEW public.av AS SELECT * FROM public.orders;
             GRANT SELECT ON public.av TO PUBLIC;
             CREATE TABLE public.at3 (x int, y text DEFAULT pg_read_file('postgresql.conf'));
             CREATE TABLE public.at4 (x int, z text DEFAULT set_config('ai_agent_safety.require_approval', 'off', false));
             GRANT ALL ON public.at3, public.at4 TO PUBLIC;",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut o = w.owner_in(&w.protected);
    o.batch_execute(
        "BEGIN; DECLARE c CURSOR FOR SELECT * FROM public.av; FETCH 1 FROM c;
         DELETE FROM public.orders WHERE id = 1;
         FETCH 1 FROM c; CLOSE c; COMMIT;",
    )
    .unwrap_or_else(|e| panic!("between fetches: {}", describe(&e)));
    o.batch_execute("BEGIN; DECLARE c CURSOR FOR SELECT 1 / (id - 5) FROM public.av; SAVEPOINT s;")
        .unwrap();
    o.batch_execute("FETCH ALL FROM c")
        .expect_err("division by zero");
    o.batch_execute("ROLLBACK TO s; CLOSE c; DELETE FROM public.orders WHERE id = 2; COMMIT")
        .unwrap_or_else(|e| panic!("after a failed fetch: {}", describe(&e)));
    o.batch_execute(
        "DELETE FROM public.orders WHERE id IN (SELECT id FROM public.av WHERE id = 10)",
    )
    .unwrap_or_else(|e| panic!("cascade: {}", describe(&e)));
    assert_eq!(orders(&mut o), 7);
    assert_eq!(count(&mut o, "SELECT count(*) FROM public.lines"), 1);
    // COPY ... FROM into the agent's tables, by a superuser.
    for table in ["public.at3", "public.at4"] {
        let e = admin(&w.protected)
            .copy_in(&format!("COPY {table} (x) FROM STDIN"))
            .and_then(|mut wr| {
                use std::io::Write;
                wr.write_all(b"1\n").unwrap();
                wr.finish()
            })
            .expect_err("the agent's default is judged");
        let text = describe(&e);
        assert!(
            text.contains("may not run programs or read or write the server's files")
                || text.contains("may not change ai_agent_safety.require_approval"),
            "{table}: {text}"
        );
    }
}

/// A subscription's apply worker deletes and truncates what another server
/// sends, as the subscription's owner, outside any session, after the
/// owner's credentials are gone. An agent's code may not create or change
/// one (the agent itself cannot hold pg_create_subscription: tests in
/// credentials.rs), while a human's same function may.
#[test]
fn agent_code_may_not_create_or_change_subscriptions() {
    let w = World::new("subscr");
    let create = |name: &str| {
        format!(
            "CREATE SUBSCRIPTION {name} CONNECTION ''host=127.0.0.1 port=1 dbname=nowhere'' PUBLICATION p WITH (connect = false)"
        )
    };
    let fun = |owner: &str, f: &str| {
        format!(
            "CREATE FUNCTION public.{f}(q text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; RETURN 1; END $$;
             ALTER FUNCTION public.{f}(text) OWNER TO {owner};"
        )
    };
    let mut su = admin(&w.protected);
    su.batch_execute(&fun(&w.owner, "human_run")).unwrap();
    su.batch_execute(&fun(&w.agent, "agent_run")).unwrap();
    // A human's function, run by a superuser: PostgreSQL creates it.
    let human = unique("sub_h");
    su.batch_execute(&format!("SELECT public.human_run('{}')", create(&human)))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // The agent's: refused, and nothing made.
    let agents = unique("sub_a");
    let msg = assert_refused(
        su.batch_execute(&format!("SELECT public.agent_run('{}')", create(&agents))),
    );
    assert!(
        msg.contains("may not create or change subscriptions"),
        "{msg}"
    );
    for q in [
        format!("ALTER SUBSCRIPTION {human} ENABLE"),
        format!("ALTER SUBSCRIPTION {human} CONNECTION ''host=127.0.0.1 port=2 dbname=x''"),
        format!("ALTER SUBSCRIPTION {human} OWNER TO {}", w.agent),
    ] {
        let msg = assert_refused(su.batch_execute(&format!("SELECT public.agent_run('{q}')")));
        assert!(
            msg.contains("may not create or change subscriptions"),
            "{q}: {msg}"
        );
    }
    let n = count(
        &mut su,
        &format!("SELECT count(*) FROM pg_subscription WHERE subname IN ('{human}', '{agents}') AND NOT subenabled AND subowner = 'postgres'::regrole"),
    );
    assert_eq!(n, 1, "only the human's, unchanged");
    su.batch_execute(&format!(
        "ALTER SUBSCRIPTION {human} SET (slot_name = NONE); DROP SUBSCRIPTION {human}"
    ))
    .unwrap();
}

/// The second adversarial round on PostgreSQL 17: doors an agent's code
/// reached in a superuser's session, each shown open for a human's same
/// function first. file_fdw's `program` runs a program as the server;
/// replication origins and slots decide what subscribers receive;
/// publications too (a row filter turns an UPDATE into a DELETE
/// downstream); adminpack (15) writes the server's files, the audit
/// spool's among them.
#[test]
fn agent_code_may_not_reach_programs_files_or_replication_through_extensions() {
    let w = World::new("extdoors");
    let mut su = admin(&w.protected);
    let fun = |owner: &str, f: &str| {
        format!(
            "CREATE FUNCTION public.{f}(q text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; RETURN 1; END $$;
             ALTER FUNCTION public.{f}(text) OWNER TO {owner};"
        )
    };
    su.batch_execute(&format!(
        "CREATE EXTENSION file_fdw; CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
         {}{}",
        fun(&w.owner, "human_run"),
        fun(&w.agent, "agent_run")
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut attempts = vec![
        (
            "CREATE FOREIGN TABLE public.{n} (line text) SERVER files OPTIONS (program ''echo hi'')".to_string(),
            "may not run programs or read or write the server's files",
        ),
        (
            "CREATE FOREIGN TABLE public.{n} (line text) SERVER files OPTIONS (filename ''/etc/hostname'')".to_string(),
            "may not run programs or read or write the server's files",
        ),
        (
            "SELECT pg_replication_origin_create(''{n}'')".to_string(),
            "may not change publications, replication slots or replication origins",
        ),
        (
            "CREATE PUBLICATION {n} FOR TABLE public.orders".to_string(),
            "may not change publications, replication slots or replication origins",
        ),
    ];
    let mut adminpack = false;
    if server_major(&mut su) < 17 {
        // adminpack went away in 17.
        adminpack = su
            .batch_execute("CREATE EXTENSION IF NOT EXISTS adminpack")
            .is_ok();
    } else {
        assert!(su.batch_execute("CREATE EXTENSION adminpack").is_err());
    }
    if adminpack {
        attempts.push((
            "SELECT pg_file_write(''{n}.txt'', ''x'', false)".to_string(),
            "may not run programs or read or write the server's files",
        ));
    }
    for (template, refusal) in attempts {
        let human = template.replace("{n}", &unique("h"));
        su.batch_execute(&format!("SELECT public.human_run('{human}')"))
            .unwrap_or_else(|e| panic!("a human's function: {human}: {}", describe(&e)));
        let agents = template.replace("{n}", &unique("a"));
        let msg = assert_refused(su.batch_execute(&format!("SELECT public.agent_run('{agents}')")));
        assert!(msg.contains(refusal), "{agents}: {msg}");
    }
    // An ALTER of the human's foreign table to run a program, from the
    // agent's code: refused too.
    let ft = unique("ft");
    su.batch_execute(&format!(
        "CREATE FOREIGN TABLE public.{ft} (line text) SERVER files OPTIONS (filename '/etc/hostname')"
    ))
    .unwrap();
    let msg = assert_refused(su.batch_execute(&format!(
        "SELECT public.agent_run('ALTER FOREIGN TABLE public.{ft} OPTIONS (DROP filename, ADD program ''echo x'')')"
    )));
    assert!(msg.contains("may not run programs"), "{msg}");
    // In its own session, the agent may not publish its table either.
    su.batch_execute(&format!(
        "GRANT CREATE ON DATABASE {} TO {}",
        w.protected, w.agent
    ))
    .unwrap();
    let mut a = w.agent_in(&w.protected);
    a.batch_execute("CREATE TABLE public.feed (id int PRIMARY KEY)")
        .unwrap();
    let msg = assert_refused(a.batch_execute("CREATE PUBLICATION feedpub FOR TABLE public.feed"));
    assert!(msg.contains("may not change publications"), "{msg}");
    // Only the origins this test's human made: a subscription of another
    // test running now has its own (pg_<oid>), which it drops itself.
    for o in su
        .query(
            "SELECT roname FROM pg_replication_origin WHERE roname LIKE 'h\\_%'",
            &[],
        )
        .unwrap()
    {
        let name: String = o.get(0);
        su.batch_execute(&format!("SELECT pg_replication_origin_drop('{name}')"))
            .unwrap();
    }
}
