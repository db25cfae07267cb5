//! The recycle bin for an agent's DROP TABLE, VIEW, MATERIALIZED VIEW,
//! SEQUENCE and SCHEMA: what the DROP would remove is moved out of reach
//! (a rename, not a copy), its names are free at once, the links to what
//! stays are cut as the DROP would cut them, and one restore_dropped puts
//! everything back, links included. Sessions that are not agents drop.

use aas_integration::*;

/// The entry of `object` in the recycle bin, as an approver reads it:
/// (id, kind, kept_as).
fn entry(approver: &str, db: &str, object: &str) -> Option<(i64, String, String)> {
    connect(approver, db)
        .query_opt(
            "SELECT id, kind, COALESCE(kept_as, '') FROM ai_agent_safety.recycle_bin WHERE object = $1",
            &[&object],
        )
        .unwrap_or_else(|e| panic!("recycle_bin: {}", describe(&e)))
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// Schema app (the agent's) with customers, orders (a foreign key, an
/// identity and a serial), a view, a trigger function; and in public a
/// table that stays, linked to app three ways (a foreign key to
/// app.customers, a default from app's sequence, a trigger running app's
/// function), a view on app, and grants to a reader.
fn app_world(tag: &str) -> (World, String) {
    let w = World::new(tag);
    let reader = unique(&format!("{tag}_reader"));
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE ROLE {reader};
             CREATE SCHEMA app AUTHORIZATION {agent};
             GRANT USAGE ON SCHEMA app TO {reader};
             SET ROLE {agent};
             CREATE TABLE app.customers (id serial PRIMARY KEY, name text);
             CREATE TABLE app.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 customer_id int REFERENCES app.customers ON DELETE CASCADE, note text);
             CREATE VIEW app.big AS SELECT o.id, c.name FROM app.orders o JOIN app.customers c ON c.id = o.customer_id WHERE o.id > 100;
             CREATE FUNCTION app.stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
             INSERT INTO app.customers (name) SELECT 'customer ' || g FROM generate_series(1, 50) g;
             INSERT INTO app.orders (customer_id, note) SELECT 1 + g % 50, 'order ' || g FROM generate_series(1, 500) g;
             GRANT SELECT ON app.orders TO {reader};
             RESET ROLE;
             CREATE TABLE public.invoices (id int PRIMARY KEY, customer_id int REFERENCES app.customers,
                 n int DEFAULT nextval('app.customers_id_seq'));
             CREATE TRIGGER stamp BEFORE INSERT ON public.invoices FOR EACH ROW EXECUTE FUNCTION app.stamp();
             INSERT INTO public.invoices (id, customer_id) VALUES (1, 3), (2, 4);
             CREATE VIEW public.customer_names AS SELECT name FROM app.customers;",
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("app world: {}", describe(&e)));
    (w, reader)
}

/// Everything the schema held, and its grants, as one text to compare.
fn app_state(db: &str) -> String {
    admin(db)
        .query_one(
            "SELECT md5((SELECT string_agg(o::text, ',' ORDER BY id) FROM app.orders o) || '|' ||
                        (SELECT string_agg(c::text, ',' ORDER BY id) FROM app.customers c) || '|' ||
                        (SELECT relacl::text || relowner::regrole::text FROM pg_class WHERE oid = 'app.orders'::regclass) || '|' ||
                        (SELECT nspacl::text || nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app') || '|' ||
                        (SELECT pg_get_viewdef('app.big'::regclass)) || '|' ||
                        (SELECT string_agg(pg_get_constraintdef(oid), ',' ORDER BY conname) FROM pg_constraint
                          WHERE conrelid IN ('public.invoices'::regclass, 'app.orders'::regclass)) || '|' ||
                        (SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'public.invoices'::regclass) || '|' ||
                        (SELECT string_agg(pg_get_triggerdef(oid), ',') FROM pg_trigger
                          WHERE tgrelid = 'public.invoices'::regclass AND NOT tgisinternal))",
            &[],
        )
        .unwrap_or_else(|e| panic!("app state: {}", describe(&e)))
        .get(0)
}

/// `DROP SCHEMA app CASCADE` by an agent (no approval needed in this
/// database): without the recycle bin it is gone for good; with it the
/// schema is kept whole, out of the agent's reach, its name free, the
/// table that stays loses its links as DROP would take them; one restore
/// brings back every row, grant, view and link.
#[test]
fn an_agents_drop_schema_cascade_is_kept_and_restored_whole() {
    // Where the bin is off, the agent's DROP destroys.
    let (w, _) = app_world("rbo_off");
    admin("postgres")
        .batch_execute(&format!(
            "ALTER ROLE {} SET ai_agent_safety.recycle_retention = 0",
            w.agent
        ))
        .unwrap();
    w.agent_in(&w.open)
        .batch_execute("DROP SCHEMA app CASCADE")
        .unwrap();
    assert_eq!(
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM pg_class WHERE relname IN ('orders', 'customers') AND relnamespace <> 'public'::regnamespace"
        ),
        0,
        "without the bin the tables are gone"
    );

    let (w, _) = app_world("rbo_schema");
    let approver = new_approver("rbo_schema");
    let before = app_state(&w.open);
    // Rolled back: nothing kept, nothing lost.
    w.agent_in(&w.open)
        .batch_execute("BEGIN; DROP SCHEMA app CASCADE; ROLLBACK;")
        .unwrap();
    assert_eq!(app_state(&w.open), before);
    assert!(entry(&approver, &w.open, "app").is_none());
    // Without CASCADE, PostgreSQL's own refusal.
    let (mut agent, notices) = connect_with_notices(&w.agent, &w.open);
    let e = agent.batch_execute("DROP SCHEMA app").unwrap_err();
    assert!(
        describe(&e).contains("cannot drop schema app because other objects depend on it"),
        "{}",
        describe(&e)
    );
    agent.batch_execute("DROP SCHEMA app CASCADE").unwrap();
    let said = notices.lock().unwrap().clone();
    assert!(
        said.iter().any(
            |n| n.starts_with("schema app was moved to the recycle bin as entry ")
                && n.contains("ai_agent_safety.restore_dropped(")
        ),
        "{said:?}"
    );
    let (id, kind, kept_as) = entry(&approver, &w.open, "app").expect("an entry");
    assert_eq!(kind, "schema");
    assert!(
        kept_as.starts_with(&format!("recycled_{id}_app")),
        "{kept_as}"
    );
    let mut a = admin(&w.open);
    // The name is free, the table that stays lost its links (as DROP takes
    // them), and its rows are untouched.
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'app'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.invoices'::regclass AND contype = 'f'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.invoices'::regclass AND NOT tgisinternal"
        ),
        0
    );
    assert_eq!(count(&mut a, "SELECT count(*) FROM public.invoices"), 2);
    // The agent reaches nothing kept: not the schema, not a sequence by its
    // oid (no grant is left, its owner's neither), not the statistics, and
    // its DROP OWNED BY would remove kept tables: refused.
    let recycled = format!("recycled_{id}_app");
    let e = agent
        .batch_execute(&format!("SELECT * FROM {recycled}.orders"))
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501", "{}", describe(&e));
    let e = agent
        .batch_execute(&format!("ALTER SCHEMA {recycled} RENAME TO app"))
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501", "{}", describe(&e));
    let seq: i64 = a
        .query_one(
            &format!("SELECT '{recycled}.customers_id_seq'::regclass::oid::bigint"),
            &[],
        )
        .unwrap()
        .get(0);
    let e = agent
        .batch_execute(&format!("SELECT setval({seq}::oid::regclass, 1)"))
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501", "{}", describe(&e));
    a.batch_execute(&format!("ANALYZE {recycled}.customers"))
        .unwrap();
    assert_eq!(
        count(
            &mut agent,
            &format!("SELECT count(*) FROM pg_stats WHERE schemaname = '{recycled}'")
        ),
        0
    );
    let e = assert_refused(agent.batch_execute("DROP OWNED BY CURRENT_USER CASCADE"));
    assert!(e.contains("DROP OWNED BY refused"), "{e}");
    assert_eq!(
        count(
            &mut a,
            &format!(
                "SELECT count(*) FROM pg_class WHERE relnamespace = '{recycled}'::regnamespace AND relkind = 'r'"
            )
        ),
        2
    );
    // The approver restores: one call, everything back.
    let said: String = connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("restore: {}", describe(&e)))
        .get(0);
    assert!(said.contains("restored schema app"), "{said}");
    assert_eq!(app_state(&w.open), before);
    assert!(entry(&approver, &w.open, "app").is_none());
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM public.customer_names"),
        50
    );
    // The restored foreign key holds: a row without its customer is refused.
    let e = a
        .batch_execute("INSERT INTO public.invoices (id, customer_id) VALUES (3, 999)")
        .unwrap_err();
    assert!(
        describe(&e).contains("invoices_customer_id_fkey"),
        "{}",
        describe(&e)
    );
    // The agent writes again as before.
    w.agent_in(&w.open)
        .batch_execute("INSERT INTO app.orders (customer_id, note) VALUES (1, 'after the restore')")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // Every step is in the audit log (the rolled-back DROP's keep too: an
    // event survives its statement's rollback), once the writer has it.
    wait_for_count(
        &mut a,
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE source = 'recycle' AND operation = 'DROP SCHEMA'
           AND object = 'app' AND event = 'kept'",
        2,
    );
    wait_for_count(
        &mut a,
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE source = 'recycle' AND operation = 'DROP SCHEMA'
           AND object = 'app' AND event = 'restored'",
        1,
    );
    // A DBA's DROP drops.
    a.batch_execute("DROP SCHEMA app CASCADE").unwrap();
    assert!(entry(&approver, &w.open, "app").is_none());
}

/// `DROP TABLE ... CASCADE` by an agent: the table moves with its view,
/// sequence and indexes, the foreign key of a table that stays is cut; the
/// agent can make a table of the same name at once. The restore refuses a
/// taken name (saying what to do), refuses `new_name` while links name the
/// original, and, once the name is free, brings the rows back equal in
/// both directions with the foreign key validated again.
#[test]
fn an_agents_drop_table_cascade_frees_the_name_and_restores_with_its_links() {
    let w = World::new("rbo_table");
    let approver = new_approver("rbo_table");
    admin(&w.open)
        .batch_execute(&format!(
            "ALTER TABLE public.orders OWNER TO {agent};
             CREATE TABLE public.lines (id serial PRIMARY KEY, order_id int REFERENCES public.orders, qty int);
             INSERT INTO public.lines (order_id, qty) SELECT 1 + g % 10, g FROM generate_series(1, 30) g;
             CREATE VIEW public.order_notes AS SELECT note FROM public.orders;
             ALTER VIEW public.order_notes OWNER TO {agent};
             CREATE TABLE public.orders_before AS SELECT * FROM public.orders;",
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut agent = w.agent_in(&w.open);
    agent.batch_execute("DROP TABLE orders CASCADE").unwrap();
    let (id, kind, kept_as) = entry(&approver, &w.open, "public.orders").expect("an entry");
    assert_eq!(kind, "table");
    assert!(
        kept_as.contains("ai_agent_safety_recycle.") && kept_as.contains("order_notes"),
        "{kept_as}"
    );
    let mut a = admin(&w.open);
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.lines'::regclass AND contype = 'f'"
        ),
        0
    );
    // The name is free at once.
    agent
        .batch_execute("CREATE TABLE public.orders (id int)")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut approver_c = connect(&approver, &w.open);
    let e = approver_c
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_err();
    let d = describe(&e);
    assert!(
        d.contains("cannot be restored as table public.orders: that name is taken now")
            && d.contains("new_name =>"),
        "{d}"
    );
    let e = approver_c
        .query_one(
            "SELECT ai_agent_safety.restore_dropped($1, new_name => 'orders_old')",
            &[&id],
        )
        .unwrap_err();
    assert!(
        describe(&e).contains("cannot be restored under another name: it had links to objects that stayed (constraint lines_order_id_fkey on table public.lines)"),
        "{}",
        describe(&e)
    );
    agent.batch_execute("DROP TABLE public.orders").unwrap();
    // That table was kept too: the bin holds both.
    assert_eq!(
        count(
            &mut approver_c,
            "SELECT count(*) FROM ai_agent_safety.recycle_bin WHERE object = 'public.orders'"
        ),
        2
    );
    let said: String = approver_c
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("restore: {}", describe(&e)))
        .get(0);
    assert!(
        said.contains("as public.order_notes, public.orders") || said.contains("public.orders"),
        "{said}"
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT (SELECT count(*) FROM (SELECT * FROM public.orders EXCEPT SELECT * FROM public.orders_before) x)
                  + (SELECT count(*) FROM (SELECT * FROM public.orders_before EXCEPT SELECT * FROM public.orders) y)"
        ),
        0
    );
    assert_eq!(count(&mut a, "SELECT count(*) FROM public.order_notes"), 10);
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.lines'::regclass AND contype = 'f'"
        ),
        1
    );
    // Owned by the agent again, with its primary key's name.
    assert_eq!(
        count(
            &mut a,
            &format!(
                "SELECT count(*) FROM pg_class WHERE oid = 'public.orders'::regclass AND relowner = '{}'::regrole",
                w.agent
            )
        ),
        1
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_class WHERE relname = 'orders_pkey'"
        ),
        1
    );
}

/// What the recycle bin cannot keep refuses the agent's DROP, and nothing
/// is dropped: a column of a table that stays, typed by the dropped
/// table's row type. An agent's temporary table drops as before.
#[test]
fn what_cannot_be_kept_refuses_the_drop_and_temporary_tables_drop() {
    let w = World::new("rbo_refuse");
    admin(&w.open)
        .batch_execute(&format!(
            "ALTER TABLE public.orders OWNER TO {agent};
             CREATE TABLE public.archive (id int, old public.orders);",
            agent = w.agent
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    let e = assert_refused(agent.batch_execute("DROP TABLE orders CASCADE"));
    assert!(
        e.contains("DROP TABLE refused: agent role")
            && e.contains("would also remove column old of table")
            && e.contains("archive")
            && e.contains("nothing was dropped"),
        "{e}"
    );
    let mut a = admin(&w.open);
    assert_eq!(count(&mut a, "SELECT count(*) FROM public.orders"), 10);
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.archive'::regclass AND attname = 'old'"
        ),
        1
    );
    agent
        .batch_execute("CREATE TEMP TABLE scratch (id int); DROP TABLE scratch; CREATE TEMP TABLE scratch (id int);")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
}

/// A purge drops a kept table for good now; the writer drops an expired
/// one, and each is an audit event.
#[test]
fn kept_tables_are_purged_or_expire() {
    let w = World::new("rbo_purge");
    let approver = new_approver("rbo_purge");
    admin(&w.open)
        .batch_execute(&format!(
            "ALTER TABLE public.orders OWNER TO {agent};
             CREATE TABLE public.spare (id int); ALTER TABLE public.spare OWNER TO {agent};",
            agent = w.agent
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent.batch_execute("DROP TABLE spare").unwrap();
    let (id, _, kept_as) = entry(&approver, &w.open, "public.spare").unwrap();
    let said: String = connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert!(said.contains("is gone for good"), "{said}");
    let mut a = admin(&w.open);
    assert_eq!(
        count(
            &mut a,
            &format!("SELECT count(*) FROM pg_class WHERE oid = to_regclass('{kept_as}')")
        ),
        0
    );
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.recycle_retention = '1s'",
            w.open
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent.batch_execute("DROP TABLE orders").unwrap();
    wait_for_expiry(&mut a, "the kept table", || {
        entry(&approver, &w.open, "public.orders").is_some()
    });
    wait_for_count(
        &mut a,
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE source = 'recycle' AND event IN ('expired', 'purged') AND operation = 'DROP TABLE'",
        2,
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace"
        ),
        0
    );
}

/// Drops of other kinds may not remove rows behind the bin's back: a DROP
/// TYPE ... CASCADE that would take a typed table with it destroys it
/// where the bin is off, and is refused where it is on (nothing dropped).
#[test]
fn a_drop_type_cascade_cannot_take_a_table_with_it() {
    let setup = |w: &World| {
        admin(&w.open)
            .batch_execute(&format!(
                "SET ROLE {agent};
                 CREATE TYPE public.row_t AS (id int, note text);
                 CREATE TABLE public.typed OF public.row_t;
                 INSERT INTO public.typed VALUES (1, 'kept');
                 RESET ROLE;",
                agent = w.agent
            ))
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
    };
    let off = World::new("rbo_type_off");
    setup(&off);
    admin("postgres")
        .batch_execute(&format!(
            "ALTER ROLE {} SET ai_agent_safety.recycle_retention = 0",
            off.agent
        ))
        .unwrap();
    off.agent_in(&off.open)
        .batch_execute("DROP TYPE row_t CASCADE")
        .unwrap();
    assert_eq!(
        count(
            &mut admin(&off.open),
            "SELECT count(*) FROM pg_class WHERE relname = 'typed'"
        ),
        0,
        "without the bin the table went with the type"
    );
    let w = World::new("rbo_type");
    setup(&w);
    let e = assert_refused(w.agent_in(&w.open).batch_execute("DROP TYPE row_t CASCADE"));
    assert!(
        e.contains("DROP TYPE refused") && e.contains("table public.typed"),
        "{e}"
    );
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM public.typed"),
        1
    );
    // A DROP that removes no rows runs as before.
    w.agent_in(&w.open)
        .batch_execute("CREATE TYPE public.spare_t AS (a int); DROP TYPE spare_t;")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
}

/// A restore remakes a cut CHECK constraint without running its table's
/// code as the bootstrap superuser: the constraint is added NOT VALID and
/// validated as the table's owner. (A superuser adding it would run the
/// agent's function as superuser: shown first.)
#[test]
fn a_restore_validates_remade_constraints_as_the_tables_owner() {
    let w = World::new("rbo_check");
    let approver = new_approver("rbo_check");
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE SCHEMA rules AUTHORIZATION {agent};
             SET ROLE {agent};
             CREATE TABLE public.seen (who text);
             CREATE FUNCTION public.note_who(int) RETURNS boolean LANGUAGE plpgsql AS
               $$BEGIN INSERT INTO public.seen VALUES (current_user); RETURN true; END$$;
             CREATE FUNCTION rules.ok(int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
             CREATE TABLE public.guarded (x int CHECK (rules.ok(x) AND public.note_who(x)));
             INSERT INTO public.guarded VALUES (1);
             RESET ROLE;
             DELETE FROM public.seen;
             -- The risk: a superuser validating it runs the agent's function as itself.
             ALTER TABLE public.guarded ADD CONSTRAINT probe CHECK (public.note_who(x));
             ALTER TABLE public.guarded DROP CONSTRAINT probe;",
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut a = admin(&w.open);
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM public.seen WHERE who = current_user"
        ),
        1
    );
    a.batch_execute("DELETE FROM public.seen").unwrap();
    w.agent_in(&w.open)
        .batch_execute("DROP SCHEMA rules CASCADE")
        .unwrap();
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.guarded'::regclass"
        ),
        0
    );
    let (id, _, _) = entry(&approver, &w.open, "rules").unwrap();
    connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .unwrap_or_else(|e| panic!("restore: {}", describe(&e)));
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.guarded'::regclass AND convalidated"
        ),
        1
    );
    let who: Vec<String> = a
        .query("SELECT who FROM public.seen", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(who, vec![w.agent.clone()], "validated as the table's owner");
}

/// What the bin holds cannot be removed by an agent's later DROP: not a
/// kept schema's functions through DROP OWNED BY, not a kept view through
/// a DROP ... CASCADE of the table it reads.
#[test]
fn an_agent_cannot_remove_what_the_bin_holds() {
    let w = World::new("rbo_held");
    let approver = new_approver("rbo_held");
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE SCHEMA fx AUTHORIZATION {agent};
             SET ROLE {agent};
             CREATE FUNCTION fx.total(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2';
             CREATE TABLE public.base (id int);
             CREATE VIEW public.base_view AS SELECT id FROM public.base;
             RESET ROLE;",
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut agent = w.agent_in(&w.open);
    agent.batch_execute("DROP SCHEMA fx CASCADE").unwrap();
    agent.batch_execute("DROP VIEW base_view").unwrap();
    let e = assert_refused(agent.batch_execute("DROP OWNED BY CURRENT_USER"));
    assert!(
        e.contains("DROP OWNED BY refused") && e.contains("(held by the recycle bin)"),
        "{e}"
    );
    let e = assert_refused(agent.batch_execute("DROP TABLE base CASCADE"));
    assert!(e.contains("(held by the recycle bin)"), "{e}");
    // Both entries restore whole.
    for object in ["fx", "public.base_view"] {
        let (id, _, _) = entry(&approver, &w.open, object).unwrap();
        connect(&approver, &w.open)
            .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
            .unwrap_or_else(|e| panic!("restore {object}: {}", describe(&e)));
    }
    assert_eq!(
        count(&mut admin(&w.open), "SELECT fx.total(21)::bigint"),
        42
    );
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM public.base_view"),
        0
    );
}

/// Other statements cannot reach what the bin holds either: an ALTER TABLE
/// ... DROP COLUMN ... CASCADE that would drop a kept materialized view,
/// an ALTER TYPE ... CASCADE that would change a kept typed table.
#[test]
fn no_alter_reaches_what_the_bin_holds() {
    let w = World::new("rbo_alter");
    admin(&w.open)
        .batch_execute(&format!(
            "SET ROLE {agent};
             CREATE TABLE public.base (id int, c int);
             INSERT INTO public.base VALUES (1, 10);
             CREATE MATERIALIZED VIEW public.mv AS SELECT c FROM public.base;
             CREATE TYPE public.row_t AS (id int, amount numeric);
             CREATE TABLE public.ledger OF public.row_t;
             INSERT INTO public.ledger VALUES (1, 2.5);
             RESET ROLE;",
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute("DROP MATERIALIZED VIEW mv; DROP TABLE ledger;")
        .unwrap();
    let e = assert_refused(agent.batch_execute("ALTER TABLE base DROP COLUMN c CASCADE"));
    assert!(e.contains("which the recycle bin holds"), "{e}");
    let e = assert_refused(
        agent.batch_execute("ALTER TYPE row_t ALTER ATTRIBUTE amount TYPE int CASCADE"),
    );
    assert!(e.contains("which the recycle bin holds"), "{e}");
    let mut a = admin(&w.open);
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace AND relkind IN ('m', 'r')"
        ),
        2
    );
    // What does not reach it runs.
    agent
        .batch_execute("ALTER TABLE base ADD COLUMN d int")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
}

/// A purge or the expiry drops only what the bin holds: when something
/// outside depends on a kept table (an agent made a default that names its
/// oid), the purge is refused, the entry stays, and nothing outside goes.
#[test]
fn a_purge_never_cascades_beyond_the_bin() {
    let w = World::new("rbo_trap");
    let approver = new_approver("rbo_trap");
    admin(&w.open)
        .batch_execute(&format!(
            "SET ROLE {agent}; CREATE TABLE public.bait (id int); RESET ROLE;",
            agent = w.agent
        ))
        .unwrap();
    let mut a = admin(&w.open);
    let oid: i64 = a
        .query_one("SELECT 'public.bait'::regclass::oid::bigint", &[])
        .unwrap()
        .get(0);
    let mut agent = w.agent_in(&w.open);
    agent.batch_execute("DROP TABLE bait").unwrap();
    agent
        .batch_execute(&format!(
            "CREATE TABLE public.valuable (id int, pin oid DEFAULT '{oid}'::regclass)"
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    a.batch_execute("INSERT INTO public.valuable (id) VALUES (1)")
        .unwrap();
    let (id, _, _) = entry(&approver, &w.open, "public.bait").unwrap();
    let e = connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&id])
        .unwrap_err();
    assert!(
        describe(&e).contains("which the recycle bin does not hold for this entry (outside the bin, or kept by another entry); the entry is kept"),
        "{}",
        describe(&e)
    );
    assert!(entry(&approver, &w.open, "public.bait").is_some());
    assert_eq!(
        count(
            &mut a,
            "SELECT count(*) FROM pg_attrdef WHERE adrelid = 'public.valuable'::regclass"
        ),
        1
    );
}

/// A purge or expiry drops only its own entry's relations. An agent can
/// make a table depend on another entry's kept table (a partition key
/// naming its oid, which `'<oid>'::regclass` reads without any right on
/// the bin); once that table is kept too, the first entry's purge would
/// have cascaded into it, destroying the second entry. The purge is
/// refused instead, and the second entry restores whole.
#[test]
fn a_purge_never_removes_another_entrys_relations() {
    let w = World::new("rbo_cross");
    let approver = new_approver("rbo_cross");
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute("CREATE TABLE public.j (id int); DROP TABLE public.j;")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (a, _, _) = entry(&approver, &w.open, "public.j").expect("j kept");
    let j: u32 = admin(&w.open)
        .query_one(
            "SELECT oid FROM pg_class WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace AND relname LIKE 'd' || $1::text || '\\_%'",
            &[&a.to_string()],
        )
        .map(|r| r.get::<_, postgres::types::Oid>(0))
        .unwrap();
    agent
        .batch_execute(&format!(
            "CREATE TABLE public.p (id int) PARTITION BY RANGE ((id + ('{j}'::regclass)::oid::int8 * 0));
             CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
             INSERT INTO public.p SELECT generate_series(1, 7);
             DROP TABLE public.p;"
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (b, _, _) = entry(&approver, &w.open, "public.p").expect("p kept");
    let e = connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&a])
        .unwrap_err();
    assert!(
        describe(&e).contains("which the recycle bin does not hold for this entry (outside the bin, or kept by another entry)"),
        "{}",
        describe(&e)
    );
    connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&b])
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM public.p"),
        7
    );
}
