//! Hardening: the extension trusts only its own objects. A role that can
//! create a schema in a database where the extension is not created can name
//! it `ai_agent_safety` and fill it with look-alike tables and views whose
//! triggers and functions would run as whoever reads or writes them. An
//! agent may not take that name at all (tests/api.rs); whoever else made
//! such a schema, the extension's token lookup and its superuser audit
//! writer must never touch it, and CREATE EXTENSION must not adopt it.

use aas_integration::postgres::Client;
use aas_integration::*;
use std::time::{Duration, Instant};

/// A database without the extension in which the agent may create schemas.
fn agent_playground(w: &World, tag: &str) -> String {
    let db = unique(tag);
    let mut su = admin("postgres");
    for sql in [
        format!("CREATE DATABASE {db} OWNER {}", w.owner),
        format!("ALTER DATABASE {db} SET ai_agent_safety.require_approval = on"),
        format!("GRANT CREATE ON DATABASE {db} TO {}, {}", w.agent, w.owner),
    ] {
        su.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }
    admin(&db)
        .batch_execute(&format!(
            "CREATE TABLE public.orders (id int); INSERT INTO public.orders VALUES (1), (2);
             GRANT ALL ON public.orders TO {agent}; GRANT ALL ON SCHEMA public TO {agent};",
            agent = w.agent
        ))
        .unwrap();
    db
}

/// The trap: a schema named like the extension's, whose `tokens` is a view
/// over a function and whose `audit_spool_done` has a trigger; each records
/// the user it ran as in `public.ran_as`, which anyone may write.
const TRAP: &str = "
    CREATE TABLE public.ran_as (who name, via text);
    GRANT ALL ON public.ran_as TO PUBLIC;
    CREATE SCHEMA ai_agent_safety;
    CREATE FUNCTION ai_agent_safety.trap(via text) RETURNS boolean LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO public.ran_as VALUES (current_user, via); RETURN true; END $$;
    CREATE VIEW ai_agent_safety.tokens AS
      SELECT NULL::uuid AS id, 'granted'::text AS state WHERE ai_agent_safety.trap('token lookup');
    GRANT SELECT ON ai_agent_safety.tokens TO PUBLIC;
    GRANT USAGE ON SCHEMA ai_agent_safety TO PUBLIC;
    CREATE TABLE ai_agent_safety.audit_spool_done (file text PRIMARY KEY, done_at timestamptz DEFAULT now());
    CREATE TABLE ai_agent_safety.audit_log (LIKE public.ran_as);
    CREATE FUNCTION ai_agent_safety.on_load() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN PERFORM ai_agent_safety.trap('audit writer'); RETURN NEW; END $$;
    CREATE TRIGGER on_load BEFORE INSERT ON ai_agent_safety.audit_spool_done
      FOR EACH ROW EXECUTE FUNCTION ai_agent_safety.on_load();";

fn ran_as(c: &mut Client) -> Vec<(String, String)> {
    c.query("SELECT who::text, via FROM public.ran_as ORDER BY via", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn look_alike_extension_objects_are_never_used() {
    let w = World::new("lookalike");
    let db = agent_playground(&w, "lookalike_db");
    let mut agent = w.agent_in(&db);
    let msg = assert_refused(agent.batch_execute("CREATE SCHEMA ai_agent_safety"));
    assert!(
        msg.contains("may not name a schema ai_agent_safety"),
        "{msg}"
    );
    // A role that is not an agent may; the agent could persuade it to.
    w.owner_in(&db)
        .batch_execute(TRAP)
        .unwrap_or_else(|e| panic!("trap: {}", describe(&e)));
    // The trap is live: whoever reads the look-alike runs the agent's code as
    // themselves, a superuser included.
    let mut su = admin(&db);
    su.batch_execute("SELECT count(*) FROM ai_agent_safety.tokens")
        .unwrap();
    assert_eq!(
        ran_as(&mut su),
        [("postgres".into(), "token lookup".into())]
    );
    su.batch_execute("TRUNCATE public.ran_as").unwrap();

    // The agent presents a token and deletes: refused, because the tokens
    // cannot be checked here, and the look-alike view is never read.
    agent
        .batch_execute(
            "SET ai_agent_safety.approval_token = '3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f'",
        )
        .unwrap();
    let msg = assert_refused(agent.batch_execute("DELETE FROM public.orders"));
    assert!(
        msg.contains("the ai_agent_safety extension is not created in database"),
        "{msg}"
    );
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.orders"), 2);

    // That refusal is an audit event for this database: its writer starts,
    // finds no extension of its own here and waits, without loading into the
    // look-alike table.
    let mut other = admin("postgres");
    let oid: i64 = other
        .query_one(
            &format!("SELECT oid::int8 FROM pg_database WHERE datname = '{db}'"),
            &[],
        )
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let writers: String = other
            .query_one("SELECT writers FROM ai_agent_safety.audit_stats", &[])
            .unwrap()
            .get(0);
        if writers.contains(&format!("db {oid}: waiting for CREATE EXTENSION")) {
            break;
        }
        assert!(Instant::now() < deadline, "writer state: {writers}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ran_as(&mut su), Vec::<(String, String)>::new());
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM ai_agent_safety.audit_spool_done"
        ),
        0
    );

    // CREATE EXTENSION refuses to adopt the schema another role made.
    let e = su
        .batch_execute("CREATE EXTENSION ai_agent_safety")
        .expect_err("CREATE EXTENSION must refuse a schema it did not make");
    let text = describe(&e);
    assert!(
        text.contains("schema ai_agent_safety already exists")
            && text.contains(&w.owner)
            && text.contains("ALTER SCHEMA ai_agent_safety RENAME TO ai_agent_safety_old;"),
        "{text}"
    );
    // Following the hint, it installs.
    su.batch_execute("ALTER SCHEMA ai_agent_safety RENAME TO ai_agent_safety_old; CREATE EXTENSION ai_agent_safety")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(ran_as(&mut su), Vec::<(String, String)>::new());
}

/// The guard's settings are not an agent's to change, whatever GRANT SET or
/// GRANT ALTER SYSTEM ON PARAMETER a DBA gave: a human with the same grants
/// changes them; the agent is refused by every route and keeps the settings
/// it sets itself.
#[test]
fn guard_settings_cannot_be_switched_off_by_grants() {
    let w = World::new("grants");
    let human = unique("grants_human");
    let mut su = admin("postgres");
    for sql in [
        format!("CREATE ROLE {human} LOGIN"),
        format!(
            "GRANT SET ON PARAMETER ai_agent_safety.mode, ai_agent_safety.require_approval,
                   ai_agent_safety.audit_level, session_preload_libraries TO {}, {human}",
            w.agent
        ),
        format!(
            "GRANT ALTER SYSTEM ON PARAMETER ai_agent_safety.mode TO {}, {human}",
            w.agent
        ),
        format!("GRANT {} TO {}", w.owner, w.agent),
        format!("GRANT {} TO {human}", w.owner),
    ] {
        su.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }
    let routes = |db: &str| {
        vec![
            "SET ai_agent_safety.mode = 'audit'".to_string(),
            "SET LOCAL ai_agent_safety.require_approval = off".to_string(),
            "SELECT set_config('ai_agent_safety.audit_level', 'decisions', false)".to_string(),
            format!("ALTER DATABASE {db} SET session_preload_libraries = ''"),
            format!("ALTER DATABASE {db} SET ai_agent_safety.require_approval = off"),
            "ALTER SYSTEM SET ai_agent_safety.mode = 'enforce'".to_string(),
        ]
    };
    // PostgreSQL allows each route to a human with these grants.
    let mut h = connect(&human, &w.open);
    for stmt in routes(&w.open) {
        h.batch_execute(&stmt)
            .unwrap_or_else(|e| panic!("human: {stmt}: {}", describe(&e)));
    }
    su.batch_execute("ALTER SYSTEM RESET ai_agent_safety.mode")
        .unwrap();
    su.batch_execute(&format!(
        "ALTER DATABASE {} RESET session_preload_libraries",
        w.open
    ))
    .unwrap();
    su.batch_execute(&format!(
        "ALTER DATABASE {} RESET ai_agent_safety.require_approval",
        w.open
    ))
    .unwrap();
    // The agent: refused, in the protected database and the open one.
    for db in [&w.protected, &w.open] {
        let mut a = w.agent_in(db);
        for stmt in routes(db) {
            let msg = assert_refused(a.batch_execute(&stmt));
            assert!(
                msg.contains(&format!("agent role \"{}\" may not change", w.agent))
                    && msg.contains("GRANT SET or GRANT ALTER SYSTEM ON PARAMETER"),
                "{stmt} in {db}: {msg}"
            );
        }
        let mode: String = a
            .query_one("SHOW ai_agent_safety.mode", &[])
            .unwrap()
            .get(0);
        assert_eq!(mode, "enforce");
        // What an agent sets itself stays settable.
        a.batch_execute(
            "SET ai_agent_safety.task_id = 'cleanup-1';
             SET ai_agent_safety.task_environment = 'development';
             RESET ai_agent_safety.task_environment;
             SET ai_agent_safety.approval_token = '3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f';
             RESET ai_agent_safety.approval_token;",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    }
    let msg = assert_refused(w.agent_in(&w.protected).batch_execute("DELETE FROM orders"));
    assert!(msg.contains("needs an approval token"), "{msg}");
    assert_eq!(
        count(
            &mut su,
            &format!(
                "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                  WHERE d.datname IN ('{}', '{}') AND array_to_string(s.setconfig, ',') LIKE '%require_approval=off%'",
                w.protected, w.open
            )
        ),
        0
    );
}

/// A token for `op` on `target`, requested by the world's agent in the
/// protected database and granted by a new approver.
fn granted_token(w: &World, op: &str, target: &str) -> String {
    let dba = new_approver("hard");
    let t: String = w
        .agent_in(&w.protected)
        .query_one(
            "SELECT request_approval_token($1, 'task-7', $2)::text",
            &[&op, &target],
        )
        .unwrap_or_else(|e| panic!("request: {}", describe(&e)))
        .get(0);
    connect(&dba, &w.protected)
        .batch_execute(&format!(
            "SELECT ai_agent_safety.grant_approval_token('{t}'::uuid)"
        ))
        .unwrap_or_else(|e| panic!("grant: {}", describe(&e)));
    t
}

/// Only the foreign-key actions of an approved statement pass unjudged, not
/// what runs inside them: a column default evaluated by ON DELETE SET
/// DEFAULT, a trigger on the referencing table, a DO ALSO rule on it (also
/// one whose query writes another table that references the approved one,
/// and an INSTEAD rule). In
/// the open database each destroys `orders`; in the protected one, with a
/// token for the agent's own `scratch`, each is refused and the statement
/// rolls back; a plain ON DELETE CASCADE still goes through with the token.
#[test]
fn inside_a_foreign_key_action_code_is_judged_on_its_own() {
    let w = World::new("fkinside");
    let setup = "
        CREATE TABLE scratch (id int PRIMARY KEY);
        INSERT INTO scratch VALUES (0), (5), (6), (7), (8);
        CREATE FUNCTION wipe() RETURNS int LANGUAGE plpgsql AS
          $$ BEGIN DELETE FROM public.orders; RETURN 0; END $$;
        CREATE TABLE by_default (ref int DEFAULT wipe() REFERENCES scratch ON DELETE SET DEFAULT);
        INSERT INTO by_default VALUES (5);
        CREATE TABLE by_trigger (ref int REFERENCES scratch ON DELETE CASCADE);
        INSERT INTO by_trigger VALUES (6);
        CREATE FUNCTION wipe_t() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN DELETE FROM public.orders; RETURN OLD; END $$;
        CREATE TRIGGER wipe BEFORE DELETE ON by_trigger FOR EACH ROW EXECUTE FUNCTION wipe_t();
        CREATE TABLE by_rule (ref int REFERENCES scratch ON DELETE CASCADE);
        INSERT INTO by_rule VALUES (7);
        CREATE RULE wipe AS ON DELETE TO by_rule DO ALSO DELETE FROM public.orders;
        CREATE TABLE scratch2 (id int PRIMARY KEY);
        INSERT INTO scratch2 VALUES (0), (9);
        CREATE TABLE victim2 (ref int REFERENCES scratch2 ON DELETE CASCADE);
        CREATE TABLE by_rule_in_scope (ref int REFERENCES scratch2 ON DELETE CASCADE);
        INSERT INTO by_rule_in_scope VALUES (9);
        CREATE RULE wipe AS ON DELETE TO by_rule_in_scope DO ALSO DELETE FROM victim2;
        CREATE TABLE scratch3 (id int PRIMARY KEY);
        INSERT INTO scratch3 VALUES (0), (10);
        CREATE TABLE victim3 (ref int REFERENCES scratch3 ON DELETE CASCADE);
        CREATE TABLE by_instead (ref int REFERENCES scratch3 ON DELETE CASCADE);
        INSERT INTO by_instead VALUES (10);
        CREATE RULE wipe AS ON DELETE TO by_instead DO INSTEAD DELETE FROM victim3;
        CREATE TABLE clean (id int PRIMARY KEY);
        INSERT INTO clean VALUES (8), (9);
        CREATE TABLE plain_child (ref int REFERENCES clean ON DELETE CASCADE);
        INSERT INTO plain_child VALUES (8), (8), (9);
        CREATE TABLE part_child (ref int REFERENCES clean ON DELETE CASCADE) PARTITION BY RANGE (ref);
        CREATE TABLE part_child_low PARTITION OF part_child FOR VALUES FROM (0) TO (100);
        INSERT INTO part_child VALUES (8), (9);";
    for db in [&w.protected, &w.open] {
        w.agent_in(db)
            .batch_execute(setup)
            .unwrap_or_else(|e| panic!("setup in {db}: {}", describe(&e)));
    }
    let orders = |db: &str| count(&mut admin(db), "SELECT count(*) FROM public.orders");
    // Unprotected: each route empties orders.
    for id in [5, 6, 7] {
        admin(&w.open)
            .batch_execute("INSERT INTO public.orders SELECT g, 'x' FROM generate_series(1, 10) g ON CONFLICT DO NOTHING")
            .unwrap();
        w.agent_in(&w.open)
            .batch_execute(&format!("DELETE FROM scratch WHERE id = {id}"))
            .unwrap();
        assert_eq!(orders(&w.open), 0, "route {id} in the open database");
    }
    // Protected: a token for DELETE on public.scratch covers none of them.
    for id in [5, 6, 7] {
        let t = granted_token(&w, "DELETE", "public.scratch");
        let mut a = w.agent_in(&w.protected);
        a.batch_execute(&format!("SET ai_agent_safety.approval_token = '{t}'"))
            .unwrap();
        let msg = assert_refused(a.batch_execute(&format!("DELETE FROM scratch WHERE id = {id}")));
        assert!(
            msg.contains("DELETE on public.orders refused"),
            "route {id}: {msg}"
        );
        assert_eq!(orders(&w.protected), 10, "route {id}");
    }
    // A rule on the referencing table whose query writes a table that
    // references the approved one too (so it looks like a cascade of the
    // approved DELETE): DO ALSO (scratch2) or INSTEAD (scratch3), it
    // empties the victim table unjudged unless the rule's query is told
    // from PostgreSQL's own action.
    let routes = [(9, "scratch2", "victim2"), (10, "scratch3", "victim3")];
    let victims = |db: &str, v: &str| count(&mut admin(db), &format!("SELECT count(*) FROM {v}"));
    for (id, parent, victim) in routes {
        admin(&w.open)
            .batch_execute(&format!("INSERT INTO {victim} VALUES (0), (0), (0)"))
            .unwrap();
        w.agent_in(&w.open)
            .batch_execute(&format!("DELETE FROM {parent} WHERE id = {id}"))
            .unwrap();
        assert_eq!(
            victims(&w.open, victim),
            0,
            "route {id} in the open database"
        );
    }
    for (id, parent, victim) in routes {
        admin(&w.protected)
            .batch_execute(&format!("INSERT INTO {victim} VALUES (0), (0), (0)"))
            .unwrap();
        let t = granted_token(&w, "DELETE", &format!("public.{parent}"));
        let mut a = w.agent_in(&w.protected);
        a.batch_execute(&format!("SET ai_agent_safety.approval_token = '{t}'"))
            .unwrap();
        let msg = assert_refused(a.batch_execute(&format!("DELETE FROM {parent} WHERE id = {id}")));
        assert!(
            msg.contains(&format!("DELETE on public.{victim} refused")),
            "route {id}: {msg}"
        );
        assert_eq!(victims(&w.protected, victim), 3, "route {id}");
    }
    // The foreign-key action itself is what a token covers.
    let t = granted_token(&w, "DELETE", "public.clean");
    let mut a = w.agent_in(&w.protected);
    a.batch_execute(&format!("SET ai_agent_safety.approval_token = '{t}'"))
        .unwrap();
    assert_eq!(a.execute("DELETE FROM clean WHERE id = 8", &[]).unwrap(), 1);
    assert_eq!(
        count(&mut admin(&w.protected), "SELECT count(*) FROM plain_child"),
        1
    );
    // A partitioned referencing table cascades too.
    assert_eq!(
        count(&mut admin(&w.protected), "SELECT count(*) FROM part_child"),
        1
    );
}

/// PostgreSQL runs an approved statement's foreign-key actions from the
/// end of the statement, with no other query running; a query that starts
/// inside an action (while it runs) inherits the action's security context
/// but is not one. Three such routes empty `victim`, a table that references
/// the approved one (so a write to it looks like a cascade): a CHECK on the
/// agent's referencing table that fetches a cursor the agent opened on
/// `DELETE FROM victim` (core functions only), a BEFORE trigger on it
/// running a generic function a DBA owns, and a CHECK calling a DBA's
/// immutable function that runs SQL, folded while the action is planned
/// (`constraint_exclusion = on`, which any role may set; the table can be
/// empty: PostgreSQL runs the action for every deleted row it references). Each works in the open database
/// and is refused, with `victim` whole, in the protected one.
#[test]
fn queries_started_inside_a_foreign_key_action_are_not_the_action() {
    let w = World::new("fkstarted");
    let dba_fn = "CREATE FUNCTION public.generic_cleanup() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN EXECUTE TG_ARGV[0]; RETURN OLD; END $$;
        CREATE FUNCTION public.run_sql(q text) RETURNS bool LANGUAGE plpgsql AS
          $$ BEGIN EXECUTE q; RETURN true; END $$;
        CREATE FUNCTION public.pure(q text) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS
          $$ BEGIN RETURN public.run_sql(q); END $$;";
    let setup = "
        CREATE TABLE parent (id int PRIMARY KEY);
        INSERT INTO parent VALUES (0), (11), (12), (13);
        CREATE TABLE victim (ref int REFERENCES parent);
        CREATE TABLE by_check (ref int REFERENCES parent ON DELETE SET NULL);
        INSERT INTO by_check VALUES (11);
        ALTER TABLE by_check ADD CONSTRAINT k CHECK (ref IS NOT NULL
            OR cursor_to_xml('c'::refcursor, 1, false, false, '') IS NOT NULL) NOT VALID;
        CREATE TABLE by_trigger (ref int REFERENCES parent ON DELETE CASCADE);
        INSERT INTO by_trigger VALUES (12);
        CREATE TRIGGER wipe BEFORE DELETE ON by_trigger FOR EACH ROW
            EXECUTE FUNCTION public.generic_cleanup('DELETE FROM public.victim');
        CREATE TABLE by_planning (ref int REFERENCES parent ON DELETE CASCADE,
            CONSTRAINT k CHECK (public.pure('DELETE FROM public.victim')));";
    for db in [&w.protected, &w.open] {
        admin(db).batch_execute(dba_fn).unwrap();
        w.agent_in(db)
            .batch_execute(setup)
            .unwrap_or_else(|e| panic!("setup in {db}: {}", describe(&e)));
    }
    let victim = |db: &str| count(&mut admin(db), "SELECT count(*) FROM victim");
    let refill = |db: &str| {
        admin(db)
            .batch_execute("INSERT INTO victim VALUES (0), (0), (0)")
            .unwrap()
    };
    let route = |id: i32, token: Option<&str>| {
        let tag = token
            .map(|t| format!(" /*ai_agent_safety_token='{t}'*/"))
            .unwrap_or_default();
        let cursor = match id {
            11 => "DO $$ DECLARE c refcursor := 'c'; BEGIN OPEN c FOR EXECUTE 'DELETE FROM victim RETURNING ref'; END $$;",
            // The CHECK is folded while the action's DELETE is planned.
            13 => "SET LOCAL constraint_exclusion = on;",
            _ => "",
        };
        format!("BEGIN; {cursor} DELETE FROM parent WHERE id = {id}{tag}; COMMIT;")
    };
    for id in [11, 12, 13] {
        refill(&w.open);
        w.agent_in(&w.open)
            .batch_execute(&route(id, None))
            .unwrap_or_else(|e| panic!("route {id} in the open database: {}", describe(&e)));
        assert_eq!(victim(&w.open), 0, "route {id} in the open database");
    }
    refill(&w.protected);
    for id in [11, 12, 13] {
        let t = granted_token(&w, "DELETE", "public.parent");
        let msg = assert_refused(w.agent_in(&w.protected).batch_execute(&route(id, Some(&t))));
        assert!(
            msg.contains("DELETE on public.victim refused"),
            "route {id}: {msg}"
        );
        assert_eq!(victim(&w.protected), 3, "route {id}");
    }
}

/// TRUNCATE without ONLY empties the tables that inherit from the one it
/// names: a table another role owns, under the agent's, is named in the
/// decision, so a token for the agent's own table cannot reach it. (The
/// agent may not attach it itself: a DBA's INHERIT here.)
#[test]
fn truncate_names_the_inheriting_tables_of_others() {
    let w = World::new("inhtrunc");
    agent_member_of_owner(&w);
    let owner_setup =
        "CREATE TABLE public.ledger (id int); INSERT INTO public.ledger VALUES (1), (2), (3);";
    for db in [&w.protected, &w.open] {
        w.owner_in(db).batch_execute(owner_setup).unwrap();
        let mut a = w.agent_in(db);
        a.batch_execute("CREATE TABLE public.par (id int)")
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        let msg = assert_refused(a.batch_execute("ALTER TABLE public.ledger INHERIT public.par"));
        assert!(msg.contains("ALTER TABLE ... INHERIT refused"), "{msg}");
        admin(db)
            .batch_execute("ALTER TABLE public.ledger INHERIT public.par")
            .unwrap();
    }
    let ledger = |db: &str| count(&mut admin(db), "SELECT count(*) FROM public.ledger");
    w.agent_in(&w.open).batch_execute("TRUNCATE par").unwrap();
    assert_eq!(ledger(&w.open), 0, "the attack in the open database");

    let t = granted_token(&w, "TRUNCATE", "public.par");
    let mut a = w.agent_in(&w.protected);
    a.batch_execute(&format!("SET ai_agent_safety.approval_token = '{t}'"))
        .unwrap();
    let msg = assert_refused(a.batch_execute("TRUNCATE par"));
    assert!(
        msg.contains("TRUNCATE public.ledger") && msg.contains("granted for public.par"),
        "{msg}"
    );
    assert_eq!(ledger(&w.protected), 3);
    // TRUNCATE ONLY reaches nothing else: the token covers it.
    a.batch_execute("TRUNCATE ONLY par").unwrap();
}

fn agent_member_of_owner(w: &World) {
    admin("postgres")
        .batch_execute(&format!("GRANT {} TO {}", w.owner, w.agent))
        .unwrap();
}

/// More destruction by effect: sequences that hand ids out again or run
/// out, a trigger replaced, a policy that hides rows once row level
/// security is on, a database made unusable by a timeout. Each works in the
/// open database and is refused in the protected one (ALTER listed).
#[test]
fn more_destruction_by_effect() {
    let w = World::new("effect2");
    let setup = "CREATE SEQUENCE public.ids;
        CREATE TABLE public.notes (id int);
        CREATE FUNCTION public.keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER audit_notes BEFORE INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.keep();
        CREATE TABLE public.secrets (id int); ALTER TABLE public.secrets ENABLE ROW LEVEL SECURITY;
        CREATE POLICY everyone ON public.secrets USING (true);
        CREATE TABLE public.ident (id int GENERATED ALWAYS AS IDENTITY, x int);";
    for db in [&w.open, &w.protected] {
        w.agent_in(db)
            .batch_execute(setup)
            .unwrap_or_else(|e| panic!("{db}: {}", describe(&e)));
    }
    let forms = |db: &str| {
        vec![
            ("ALTER SEQUENCE public.ids MAXVALUE 2".to_string(), "ALTER SEQUENCE public.ids MAXVALUE"),
            ("ALTER SEQUENCE public.ids INCREMENT BY -1".to_string(), "ALTER SEQUENCE public.ids INCREMENT"),
            (
                "CREATE OR REPLACE TRIGGER audit_notes BEFORE INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.keep()".to_string(),
                "CREATE OR REPLACE TRIGGER audit_notes ON public.notes",
            ),
            (
                "CREATE POLICY nobody ON public.secrets AS RESTRICTIVE USING (false)".to_string(),
                "CREATE POLICY ON public.secrets",
            ),
            (
                "ALTER POLICY everyone ON public.secrets USING (false)".to_string(),
                "ALTER POLICY ON public.secrets",
            ),
            (
                "ALTER TABLE public.ident ALTER COLUMN id SET INCREMENT BY -1".to_string(),
                "ALTER TABLE public.ident ALTER COLUMN id SET INCREMENT",
            ),
            (
                "ALTER TABLE public.ident ALTER COLUMN id DROP IDENTITY".to_string(),
                "ALTER TABLE public.ident ALTER COLUMN id DROP IDENTITY",
            ),
            (
                format!("ALTER DATABASE {db} SET statement_timeout = 1"),
                "SET statement_timeout refused",
            ),
        ]
    };
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {agent}; ALTER DATABASE {} OWNER TO {agent};
             ALTER DATABASE {} SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE, ALTER'",
            w.open,
            w.protected,
            w.protected,
            agent = w.agent
        ))
        .unwrap();
    let mut a = w.agent_in(&w.protected);
    for (sql, says) in forms(&w.protected) {
        let msg = assert_guard_refused(a.batch_execute(&sql));
        assert!(msg.contains(says), "{sql}: {msg}");
    }
    let mut o = w.agent_in(&w.open);
    for (sql, _) in forms(&w.open) {
        o.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("open: {sql}: {}", describe(&e)));
    }
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} RESET statement_timeout",
            w.open
        ))
        .unwrap();
}
