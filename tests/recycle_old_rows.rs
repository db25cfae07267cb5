//! The recycle bin keeps the rows an agent's DELETE removes: the rows it
//! names and the ones its foreign keys' ON DELETE CASCADE and its triggers
//! remove, in writable CTEs, MERGE and functions too; and, when UPDATE is
//! protected, the old versions of the rows its UPDATE changes. An approver
//! puts them back with one restore_dropped. Sessions that are not agents,
//! and statements that roll back, keep nothing.

use aas_integration::*;

/// A world whose open database has orders, their lines (ON DELETE
/// CASCADE) and a trigger that deletes an order's notes when the order
/// goes, all the agent's to delete from.
fn world(tag: &str) -> World {
    let w = World::new(tag);
    admin(&w.open)
        .batch_execute(&format!(
            "ALTER TABLE public.orders OWNER TO {agent};
             CREATE TABLE public.order_lines (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 order_id int NOT NULL REFERENCES public.orders ON DELETE CASCADE, qty int,
                 total int GENERATED ALWAYS AS (qty * 10) STORED, gone int);
             ALTER TABLE public.order_lines DROP COLUMN gone;
             INSERT INTO public.order_lines (order_id, qty) SELECT 1 + g % 10, g FROM generate_series(1, 30) g;
             ALTER TABLE public.order_lines ADD COLUMN checked bool NOT NULL DEFAULT true;
             CREATE TABLE public.notes (order_id int, body text);
             INSERT INTO public.notes SELECT g, repeat('n', 3000) || g FROM generate_series(1, 10) g;
             ALTER TABLE public.notes ALTER body SET STORAGE EXTERNAL;
             UPDATE public.notes SET body = repeat('x', 5000) || order_id WHERE order_id = 2;
             CREATE FUNCTION public.drop_notes() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN DELETE FROM public.notes WHERE order_id = OLD.id; RETURN OLD; END$$;
             CREATE TRIGGER drop_notes AFTER DELETE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.drop_notes();
             ALTER TABLE public.order_lines OWNER TO {agent};
             ALTER TABLE public.notes OWNER TO {agent};
             ALTER FUNCTION public.drop_notes() OWNER TO {agent};",
            agent = w.agent
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    w
}

/// Everything in the three tables, as text.
fn all_rows(db: &str) -> String {
    admin(db)
        .query_one(
            "SELECT md5(COALESCE((SELECT string_agg(o::text, ',' ORDER BY id) FROM orders o), '') || '|' ||
                        COALESCE((SELECT string_agg(l::text, ',' ORDER BY id) FROM order_lines l), '') || '|' ||
                        COALESCE((SELECT string_agg(n::text, ',' ORDER BY order_id) FROM notes n), ''))",
            &[],
        )
        .unwrap()
        .get(0)
}

type Listed = (i64, String, i64, String, Option<String>, Option<String>);

/// The entries of kind `delete`, as an approver reads them: (id, object,
/// rows, dropped_by, token, task).
fn deletes(approver: &str, db: &str) -> Vec<Listed> {
    listed(approver, db, "delete")
}

fn listed(approver: &str, db: &str, kind: &str) -> Vec<Listed> {
    connect(approver, db)
        .query(
            "SELECT id, object, rows, dropped_by, token::text, task_id FROM ai_agent_safety.recycle_bin
              WHERE kind = $1 ORDER BY id",
            &[&kind],
        )
        .unwrap_or_else(|e| panic!("recycle_bin: {}", describe(&e)))
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

fn restore(approver: &str, db: &str, id: i64) -> Result<String, postgres::Error> {
    connect(approver, db)
        .query_one("SELECT ai_agent_safety.restore_dropped($1)", &[&id])
        .map(|r| r.get(0))
}

/// Without the bin an agent's cascading DELETE is for good; with it, every
/// row the DELETE removed (the cascade's, the trigger's, toasted values,
/// a table with a dropped and an added column) is kept, and one restore
/// brings them all back, equal to before. The agent can neither read the
/// kept rows nor stop the keeping by disabling its tables' triggers.
#[test]
fn a_cascading_delete_is_kept_and_one_restore_brings_every_row_back() {
    let w = world("rbd_cascade");
    let approver = new_approver("rbd_cascade");
    let before = all_rows(&w.open);
    // Without the bin: gone for good.
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.recycle_retention = 0",
            w.open
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute("BEGIN; DELETE FROM orders WHERE id <= 3")
        .unwrap();
    assert_eq!(count(&mut agent, "SELECT count(*) FROM order_lines"), 21);
    agent.batch_execute("ROLLBACK").unwrap();
    assert!(deletes(&approver, &w.open).is_empty());
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} RESET ai_agent_safety.recycle_retention",
            w.open
        ))
        .unwrap();
    // Rolled back: nothing kept, nothing lost.
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute("BEGIN; DELETE FROM orders WHERE id <= 3; ROLLBACK")
        .unwrap();
    assert!(deletes(&approver, &w.open).is_empty());
    assert_eq!(all_rows(&w.open), before);
    // Disabling its tables' triggers does not stop the keeping.
    let (mut agent, notices) = connect_with_notices(&w.agent, &w.open);
    agent
        .batch_execute(
            "ALTER TABLE order_lines DISABLE TRIGGER USER; DELETE FROM orders WHERE id <= 3",
        )
        .unwrap();
    assert!(
        notices.lock().unwrap().iter().any(|n| n.starts_with(
            "the 15 deleted rows of public.orders, public.order_lines, public.notes were kept in the recycle bin as entry "
        )),
        "{notices:?}"
    );
    let d = deletes(&approver, &w.open);
    assert_eq!(d.len(), 1, "{d:?}");
    let (id, object, rows, by, _, _) = d[0].clone();
    assert_eq!(
        (object.as_str(), rows, by.as_str()),
        (
            "public.orders, public.order_lines, public.notes",
            15,
            w.agent.as_str()
        )
    );
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM order_lines"),
        21
    );
    // The agent cannot read the kept rows.
    let copy: String = admin(&w.open)
        .query_one(
            "SELECT tables->0->>'copy' FROM ai_agent_safety.recycled_rows WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    let e = agent
        .batch_execute(&format!("SELECT * FROM {copy}"))
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501", "{}", describe(&e));
    // Every keep is an audit event.
    wait_for_count(
        &mut admin(&w.open),
        &format!("SELECT count(*) FROM ai_agent_safety.audit_log WHERE source = 'recycle' AND event = 'kept' AND operation = 'DELETE' AND reason LIKE '%entry {id}'"),
        1,
    );
    let said = restore(&approver, &w.open, id).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(said.contains("15 rows back"), "{said}");
    assert_eq!(all_rows(&w.open), before);
    assert!(deletes(&approver, &w.open).is_empty());
    // A DBA's DELETE keeps nothing ...
    admin(&w.open)
        .batch_execute("DELETE FROM order_lines WHERE order_id = 10")
        .unwrap();
    assert!(deletes(&approver, &w.open).is_empty());
    // ... but what the agent's trigger deletes inside it is the agent's
    // code's doing, and kept (the foreign key's cascade is not).
    admin(&w.open)
        .batch_execute("DELETE FROM orders WHERE id = 9")
        .unwrap();
    let d = deletes(&approver, &w.open);
    assert_eq!(
        d.iter().map(|e| (e.1.as_str(), e.2)).collect::<Vec<_>>(),
        vec![("public.notes", 1)],
        "{d:?}"
    );
}

/// Writable CTEs, MERGE ... THEN DELETE and functions keep what they
/// delete; a row whose restore would clash refuses the restore whole and
/// says which; what a savepoint rolled back is not kept; an approved
/// DELETE's entry names its token and task; a purge lets the rows go.
#[test]
fn ctes_merge_functions_and_approved_deletes_are_kept() {
    let w = world("rbd_forms");
    let approver = new_approver("rbd_forms");
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            "WITH d AS (DELETE FROM order_lines WHERE order_id = 4 RETURNING *) SELECT count(*) FROM d;
             MERGE INTO order_lines l USING (SELECT 5 AS o) s ON l.order_id = s.o WHEN MATCHED THEN DELETE;
             CREATE FUNCTION purge_six() RETURNS bigint LANGUAGE sql AS
               $$WITH d AS (DELETE FROM order_lines WHERE order_id = 6 RETURNING 1) SELECT count(*) FROM d$$;
             SELECT purge_six();",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let d = deletes(&approver, &w.open);
    assert_eq!(
        d.iter().map(|e| (e.1.as_str(), e.2)).collect::<Vec<_>>(),
        vec![
            ("public.order_lines", 3),
            ("public.order_lines", 3),
            ("public.order_lines", 3)
        ],
        "{d:?}"
    );
    // A savepoint rolled back inside the statement (a trigger's exception
    // block) takes what it kept with it; the statement's own rows stay.
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE FUNCTION public.try_notes() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN
                   BEGIN DELETE FROM public.notes WHERE order_id = OLD.order_id; RAISE EXCEPTION 'undo';
                   EXCEPTION WHEN raise_exception THEN NULL; END;
                   RETURN OLD;
                 END$$;
             ALTER FUNCTION public.try_notes() OWNER TO {};
             CREATE TRIGGER try_notes AFTER DELETE ON public.order_lines FOR EACH ROW EXECUTE FUNCTION public.try_notes();",
            w.agent
        ))
        .unwrap();
    agent
        .batch_execute("DELETE FROM order_lines WHERE order_id = 7")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let last = deletes(&approver, &w.open).pop().unwrap();
    assert_eq!((last.1.as_str(), last.2), ("public.order_lines", 3));
    assert_eq!(
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM notes WHERE order_id = 7"
        ),
        1
    );
    // A clash: the restore is refused whole and says which row.
    admin(&w.open)
        .batch_execute(
            "INSERT INTO order_lines (id, order_id, qty) OVERRIDING SYSTEM VALUE VALUES (6, 1, 1)",
        )
        .unwrap();
    let e = restore(&approver, &w.open, last.0).unwrap_err();
    assert!(
        describe(&e).contains("Key (id)=(6) already exists"),
        "{}",
        describe(&e)
    );
    assert_eq!(deletes(&approver, &w.open).len(), 4);
    // Purged: gone for good.
    let said: String = connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&last.0])
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert!(said.contains("(deleted by"), "{said}");
    assert_eq!(deletes(&approver, &w.open).len(), 3);
    // Approved, in the protected database: the entry names the token and
    // its task.
    let mut agent = w.agent_in(&w.protected);
    let token: String = agent
        .query_one(
            "SELECT ai_agent_safety.request_approval_token('DELETE', 'tidy-orders', 'public.orders')::text",
            &[],
        )
        .unwrap_or_else(|e| panic!("request: {}", describe(&e)))
        .get(0);
    w.grant(&approver, &token);
    agent
        .batch_execute(&format!(
            "SET ai_agent_safety.approval_token = '{token}'; DELETE FROM orders WHERE id > 8"
        ))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let d = deletes(&approver, &w.protected);
    assert_eq!(
        d.iter()
            .map(|e| (e.1.as_str(), e.2, e.4.as_deref(), e.5.as_deref()))
            .collect::<Vec<_>>(),
        vec![(
            "public.orders",
            2,
            Some(token.as_str()),
            Some("tidy-orders")
        )]
    );
}

/// Past recycle_max_bytes an agent's DELETE is refused, and nothing is
/// lost.
#[test]
fn a_delete_past_recycle_max_bytes_is_refused_and_nothing_is_lost() {
    let w = world("rbd_budget");
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.recycle_max_bytes = '1kB'",
            w.open
        ))
        .unwrap();
    let before = all_rows(&w.open);
    let mut agent = w.agent_in(&w.open);
    let e = assert_refused(agent.batch_execute("DELETE FROM orders"));
    assert!(
        e.contains("DELETE refused: agent role")
            && e.contains("past ai_agent_safety.recycle_max_bytes (1 kB; it holds 0 bytes now)"),
        "{e}"
    );
    assert_eq!(all_rows(&w.open), before);
}

/// When UPDATE is one of protected_operations, an agent's UPDATE keeps the
/// old versions of the rows it changes (also through INSERT ... ON
/// CONFLICT DO UPDATE and MERGE), and a restore puts them back over the
/// current rows by primary key; a row gone since refuses the restore.
/// Where UPDATE is not protected, an UPDATE's old values are gone.
#[test]
fn an_updates_old_rows_are_kept_when_update_is_protected_and_put_back() {
    let w = world("rbd_update");
    let approver = new_approver("rbd_update");
    let notes = |db: &str| -> String {
        admin(db)
            .query_one(
                "SELECT string_agg(id || '=' || note, ',' ORDER BY id) FROM orders",
                &[],
            )
            .unwrap()
            .get(0)
    };
    // Not protected: the old values are gone.
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute("UPDATE orders SET note = 'lost' WHERE id = 10")
        .unwrap();
    assert!(listed(&approver, &w.open, "update").is_empty());
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE'",
            w.open
        ))
        .unwrap();
    let before = notes(&w.open);
    let (mut agent, notices) = connect_with_notices(&w.agent, &w.open);
    agent
        .batch_execute(
            "UPDATE orders SET note = 'overwritten' WHERE id <= 5;
             INSERT INTO orders VALUES (6, 'upserted') ON CONFLICT (id) DO UPDATE SET note = excluded.note;
             MERGE INTO orders o USING (SELECT 7 AS id) s ON o.id = s.id WHEN MATCHED THEN UPDATE SET note = 'merged';",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(
        notices.lock().unwrap().iter().any(|n| n.starts_with(
            "the old versions of the 5 updated rows of public.orders were kept in the recycle bin as entry "
        )),
        "{notices:?}"
    );
    let u = listed(&approver, &w.open, "update");
    assert_eq!(
        u.iter().map(|e| (e.1.as_str(), e.2)).collect::<Vec<_>>(),
        vec![
            ("public.orders", 5),
            ("public.orders", 1),
            ("public.orders", 1)
        ],
        "{u:?}"
    );
    // A row gone since: the restore is refused, and nothing changes.
    admin(&w.open)
        .batch_execute("DELETE FROM orders WHERE id = 7")
        .unwrap();
    let e = restore(&approver, &w.open, u[2].0).unwrap_err();
    assert!(
        describe(&e).contains("1 of its 1 rows are no longer there under their primary key (id)"),
        "{}",
        describe(&e)
    );
    for (id, ..) in &u[..2] {
        let said = restore(&approver, &w.open, *id).unwrap_or_else(|e| panic!("{}", describe(&e)));
        assert!(
            said.contains("restored the old rows of public.orders"),
            "{said}"
        );
    }
    assert_eq!(notes(&w.open), before.replace(",7=order 7", ""));
    assert_eq!(listed(&approver, &w.open, "update").len(), 1);
}

/// The rows of a table whose columns change while one statement runs are
/// kept with the layout they had (each store is checked against the row),
/// whatever its column names; a schema an agent names like a kept one is
/// still the agent's; out-of-line values count at their full size in the
/// budget; temporary tables keep nothing; an empty store goes with its
/// last entry.
#[test]
fn the_bin_keeps_rows_whatever_the_agent_does_to_its_tables() {
    let w = world("rbd_tricks");
    let approver = new_approver("rbd_tricks");
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            r#"CREATE TABLE shifty (a int PRIMARY KEY, b int, "p:23:-1:0,q" text);
               INSERT INTO shifty VALUES (1, 10, 'x'), (2, 20, 'y');
               CREATE FUNCTION reshape() RETURNS boolean LANGUAGE plpgsql AS $$BEGIN
                   DELETE FROM shifty WHERE a = 1;
                   ALTER TABLE shifty ALTER COLUMN b TYPE text USING 'secret-' || b;
                   DELETE FROM shifty WHERE a = 2;
                   RETURN true;
                 END$$;
               SELECT reshape();"#,
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let kept = listed(&approver, &w.open, "delete");
    assert_eq!(
        kept.iter().map(|e| (e.1.as_str(), e.2)).collect::<Vec<_>>(),
        vec![("public.shifty", 1), ("public.shifty", 1)],
        "{kept:?}"
    );
    // The second row was kept as the table was then: b is text.
    restore(&approver, &w.open, kept[1].0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    let b: String = admin(&w.open)
        .query_one("SELECT b FROM shifty WHERE a = 2", &[])
        .unwrap()
        .get(0);
    assert_eq!(b, "secret-20");
    // A column set whose signature could clash with another's takes a
    // store of its own.
    agent
        .batch_execute(
            r#"ALTER TABLE shifty DROP COLUMN "p:23:-1:0,q", ADD COLUMN p int, ADD COLUMN q text;
               INSERT INTO shifty VALUES (5, 'five', 5, 'q5');
               DELETE FROM shifty WHERE a = 5;"#,
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let last = listed(&approver, &w.open, "delete").pop().unwrap();
    restore(&approver, &w.open, last.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    let r: String = admin(&w.open)
        .query_one("SELECT s::text FROM shifty s WHERE a = 5", &[])
        .unwrap()
        .get(0);
    assert_eq!(r, "(5,five,5,q5)");
    // A schema renamed to look like a kept one is still the agent's.
    admin("postgres")
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {} TO {}",
            w.open, w.agent
        ))
        .unwrap();
    agent
        .batch_execute(
            "CREATE SCHEMA mine; CREATE TABLE mine.victim AS SELECT g AS id FROM generate_series(1, 100) g;
             ALTER SCHEMA mine RENAME TO recycled_998_mine;
             DELETE FROM recycled_998_mine.victim;",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let last = listed(&approver, &w.open, "delete").pop().unwrap();
    assert_eq!((last.1.as_str(), last.2), ("recycled_998_mine.victim", 100));
    // A temporary table's rows go with its session: nothing kept.
    let n = listed(&approver, &w.open, "delete").len();
    agent
        .batch_execute("CREATE TEMP TABLE scratch AS SELECT 1 AS x; DELETE FROM scratch;")
        .unwrap();
    assert_eq!(listed(&approver, &w.open, "delete").len(), n);
    // Values stored out of line count at their full size.
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.recycle_max_bytes = '200kB'",
            w.open
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            "CREATE TABLE blobs (id int, body text);
             ALTER TABLE blobs ALTER body SET STORAGE EXTERNAL;
             INSERT INTO blobs SELECT g, repeat(md5(g::text), 32768) FROM generate_series(1, 5) g;",
        )
        .unwrap();
    let e = assert_refused(agent.batch_execute("DELETE FROM blobs"));
    assert!(e.contains("DELETE refused: agent role"), "{e}");
    assert_eq!(count(&mut admin(&w.open), "SELECT count(*) FROM blobs"), 5);
    // Purged, the last entries of a store take the store with them.
    for (id, ..) in listed(&approver, &w.open, "delete") {
        connect(&approver, &w.open)
            .query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&id])
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
    }
    assert_eq!(
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace"
        ),
        0
    );
}

/// A store of kept rows is never analyzed, so ANALYZE cannot run an
/// agent's column type functions (a range type's subtype_diff) as the
/// store's owner, the bootstrap superuser. Shown first on a table a
/// superuser owns: ANALYZE runs the agent's function as that superuser.
#[test]
fn analyze_never_runs_an_agents_code_on_kept_rows() {
    let w = world("rbd_analyze");
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            "CREATE TABLE spied (who text);
             CREATE FUNCTION diff(a float8, b float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS
               $$BEGIN RAISE NOTICE 'diff ran as %', current_user; RETURN a - b; END$$;
             CREATE TYPE span AS RANGE (subtype = float8, subtype_diff = diff);
             CREATE TABLE spans (id int, s span);
             INSERT INTO spans SELECT g, span(g, g + 1) FROM generate_series(1, 300) g;",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // The attack, on a superuser's table: ANALYZE runs the agent's code.
    let (mut dba, notices) = connect_with_notices("postgres", &w.open);
    dba.batch_execute(
        "CREATE TABLE public.su_spans AS SELECT * FROM public.spans; ANALYZE public.su_spans",
    )
    .unwrap();
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("diff ran as postgres")),
        "{notices:?}"
    );
    dba.batch_execute("DROP TABLE public.su_spans").unwrap();
    notices.lock().unwrap().clear();
    // Kept rows: the store is never analyzed.
    agent.batch_execute("DELETE FROM spans").unwrap();
    let store: String = dba
        .query_one(
            "SELECT tables->0->>'copy' FROM ai_agent_safety.recycled_rows WHERE kind = 'delete'",
            &[],
        )
        .unwrap()
        .get(0);
    dba.batch_execute(&format!("ANALYZE {store}; ANALYZE"))
        .unwrap();
    assert!(
        notices.lock().unwrap().is_empty(),
        "{:?}",
        notices.lock().unwrap()
    );
    assert_eq!(
        count(
            &mut dba,
            &format!("SELECT count(*) FROM pg_attribute WHERE attrelid = '{store}'::regclass AND attnum > 0 AND attstattarget <> 0")
        ),
        0
    );
}

/// Another role's statement whose delete an agent's rule decides keeps
/// what the rule deletes; a table with rules cannot be restored into (a
/// rule would rewrite the restore, unseen); two agents' first DELETEs of
/// one table do not wait for each other; a purge in a REPEATABLE READ
/// transaction leaves other entries' rows where they are.
#[test]
fn rules_concurrent_agents_and_snapshots_lose_nothing() {
    let w = world("rbd_rules");
    let approver = new_approver("rbd_rules");
    let app = unique("rbd_rules_app");
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE ROLE {app} LOGIN;
             CREATE TABLE public.victim (id int PRIMARY KEY);
             INSERT INTO public.victim SELECT generate_series(1, 20);
             ALTER TABLE public.victim OWNER TO {app};
             GRANT ALL ON public.orders TO {app};
             GRANT DELETE ON public.victim TO {agent};",
            agent = w.agent
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute("CREATE RULE sweep AS ON INSERT TO orders DO ALSO DELETE FROM victim")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    connect(&app, &w.open)
        .batch_execute("INSERT INTO orders VALUES (100, 'hundred')")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let last = deletes(&approver, &w.open)
        .pop()
        .expect("the rule's DELETE kept");
    assert_eq!((last.1.as_str(), last.2), ("public.victim", 20));
    // Restoring into a table with rules is refused; without them it works.
    agent
        .batch_execute("DELETE FROM orders WHERE id = 100")
        .unwrap();
    let del = deletes(&approver, &w.open).pop().unwrap();
    let e = restore(&approver, &w.open, del.0).unwrap_err();
    assert!(
        describe(&e).contains("the table has rules"),
        "{}",
        describe(&e)
    );
    agent.batch_execute("DROP RULE sweep ON orders").unwrap();
    restore(&approver, &w.open, del.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    restore(&approver, &w.open, last.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM victim"),
        20
    );
    // Two agents, one table, first DELETEs at once: neither waits.
    let second = unique("rbd_rules_b");
    let until = in_one_hour(&mut admin("postgres"));
    admin("postgres")
        .batch_execute(&format!(
            "CREATE ROLE {second} LOGIN IN ROLE ai_agent VALID UNTIL '{until}'"
        ))
        .unwrap();
    admin(&w.open)
        .batch_execute(&format!(
            "CREATE TABLE public.shared (id int); INSERT INTO public.shared SELECT generate_series(1, 10);
             GRANT ALL ON public.shared TO {}, {second};",
            w.agent
        ))
        .unwrap();
    let mut one = w.agent_in(&w.open);
    one.batch_execute("BEGIN; DELETE FROM shared WHERE id = 1")
        .unwrap();
    let mut two = connect(&second, &w.open);
    two.batch_execute("SET statement_timeout = '10s'; DELETE FROM shared WHERE id = 2")
        .unwrap_or_else(|e| panic!("the second agent waited: {}", describe(&e)));
    one.batch_execute("COMMIT").unwrap();
    let d = deletes(&approver, &w.open);
    let shared: Vec<Listed> = d
        .iter()
        .filter(|e| e.1 == "public.shared")
        .cloned()
        .collect();
    assert_eq!(shared.len(), 2, "{d:?}");
    // A purge under REPEATABLE READ, with an entry kept after its
    // snapshot: the other entry's rows stay restorable.
    let mut r = connect(&approver, &w.open);
    r.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .unwrap();
    two.batch_execute("DELETE FROM shared WHERE id = 3")
        .unwrap();
    let newest = deletes(&approver, &w.open).pop().unwrap();
    for e in &shared {
        r.query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&e.0])
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
    }
    r.batch_execute("COMMIT").unwrap();
    restore(&approver, &w.open, newest.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM shared WHERE id = 3"
        ),
        1
    );
}

/// While UPDATE is protected: an upsert into a partitioned table (whose
/// old rows could not be kept) is refused, nothing changed; an older
/// UPDATE's old rows of a row wait for a later UPDATE's of that row.
#[test]
fn updates_the_bin_cannot_keep_are_refused_and_restores_go_newest_first() {
    let w = world("rbd_upd2");
    let approver = new_approver("rbd_upd2");
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE'",
            w.open
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            "CREATE TABLE parts (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
             CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (100);
             INSERT INTO parts VALUES (1, 'one');",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let e = assert_refused(agent.batch_execute(
        "INSERT INTO parts VALUES (1, 'clobbered') ON CONFLICT (id) DO UPDATE SET v = excluded.v",
    ));
    assert!(
        e.contains("INSERT ... ON CONFLICT DO UPDATE refused"),
        "{e}"
    );
    let v: String = admin(&w.open)
        .query_one("SELECT v FROM parts WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, "one");
    agent
        .batch_execute(
            "UPDATE orders SET note = 'b' WHERE id = 1; UPDATE orders SET note = 'c' WHERE id = 1;",
        )
        .unwrap();
    let u = listed(&approver, &w.open, "update");
    assert_eq!(u.len(), 2, "{u:?}");
    let e = restore(&approver, &w.open, u[0].0).unwrap_err();
    assert!(
        describe(&e).contains(&format!(
            "entry {} kept a later UPDATE of public.orders",
            u[1].0
        )),
        "{}",
        describe(&e)
    );
    restore(&approver, &w.open, u[1].0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    restore(&approver, &w.open, u[0].0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    let note: String = admin(&w.open)
        .query_one("SELECT note FROM orders WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(note, "order 1");
}

/// A restore is checked after it ran: a trigger of the table that writes
/// something else than the kept rows refuses it, and the rows stay kept;
/// an older UPDATE waits for a later one of the same rows even when the
/// table's columns changed between them (another store).
#[test]
fn a_restore_the_tables_triggers_spoil_is_refused_and_nothing_is_lost() {
    let w = world("rbd_spoil");
    let approver = new_approver("rbd_spoil");
    admin("postgres")
        .batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.protected_operations = 'DROP, DELETE, TRUNCATE, UPDATE'",
            w.open
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            "DELETE FROM orders WHERE id <= 3;
             UPDATE orders SET note = 'trashed' WHERE id IN (4, 5);
             CREATE FUNCTION spoil() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN IF TG_OP = 'UPDATE' THEN RETURN OLD; END IF; NEW.note := 'junk'; RETURN NEW; END$$;
             CREATE TRIGGER spoil BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION spoil();",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let (del, upd) = (
        deletes(&approver, &w.open).pop().unwrap(),
        listed(&approver, &w.open, "update").pop().unwrap(),
    );
    for id in [upd.0, del.0] {
        let e = restore(&approver, &w.open, id).unwrap_err();
        assert!(
            describe(&e).contains("are not in the table as they were kept after the restore"),
            "{}",
            describe(&e)
        );
    }
    assert_eq!(deletes(&approver, &w.open).len(), 1);
    assert_eq!(listed(&approver, &w.open, "update").len(), 1);
    agent.batch_execute("DROP TRIGGER spoil ON orders").unwrap();
    restore(&approver, &w.open, upd.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    restore(&approver, &w.open, del.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        count(
            &mut admin(&w.open),
            "SELECT count(*) FROM orders WHERE id <= 5 AND note = 'order ' || id"
        ),
        5
    );
    // Columns changed between two UPDATEs of one row.
    agent
        .batch_execute(
            "UPDATE orders SET note = 'mid' WHERE id = 6;
             ALTER TABLE orders ADD COLUMN w int;
             UPDATE orders SET note = 'final' WHERE id = 6;",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let u = listed(&approver, &w.open, "update");
    assert_eq!(u.len(), 2, "{u:?}");
    let e = restore(&approver, &w.open, u[0].0).unwrap_err();
    assert!(
        describe(&e).contains(&format!(
            "entry {} kept a later UPDATE of public.orders",
            u[1].0
        )),
        "{}",
        describe(&e)
    );
}

/// The bin's schema is there from CREATE EXTENSION on, the bootstrap
/// superuser's and no member of the extension, so an agent's first DELETE
/// in a database never makes it: one kept inside a review held open by
/// PREPARE TRANSACTION holds no other agent's DELETE back until the review
/// is decided (before: the second agent waited on the schema's name).
#[test]
fn a_prepared_reviews_kept_rows_hold_no_other_agent_back() {
    let w = World::new("rbd_prep");
    let mut a = admin(&w.protected);
    let r = a
        .query_one(
            "SELECT n.nspowner = 10,
                    EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                              AND d.objid = n.oid AND d.deptype = 'e')
               FROM pg_namespace n WHERE n.nspname = 'ai_agent_safety_recycle'",
            &[],
        )
        .unwrap_or_else(|e| panic!("the bin's schema is missing: {}", describe(&e)));
    let (bootstrap_owned, member): (bool, bool) = (r.get(0), r.get(1));
    assert!(bootstrap_owned && !member);
    let second = unique("rbd_prep_b");
    let until = in_one_hour(&mut admin("postgres"));
    admin("postgres")
        .batch_execute(&format!(
            "CREATE ROLE {second} LOGIN IN ROLE ai_agent VALID UNTIL '{until}'"
        ))
        .unwrap();
    a.batch_execute(&format!("GRANT ALL ON public.orders TO {second}"))
        .unwrap();
    let review = |who: &str, n: i32| {
        let gid = format!("review_{}_{n}", w.protected);
        let r = connect(who, &w.protected).batch_execute(&format!(
            "SET lock_timeout = '10s';
             BEGIN; SELECT ai_agent_safety.begin_review('rbd-prep-{n}', 'old orders');
             DELETE FROM orders WHERE id = {n};
             PREPARE TRANSACTION '{gid}';"
        ));
        (gid, r)
    };
    let (first, r) = review(&w.agent, 1);
    r.unwrap_or_else(|e| panic!("review: {}", describe(&e)));
    let (then, waited) = review(&second, 2);
    a.batch_execute(&format!("ROLLBACK PREPARED '{first}'"))
        .unwrap();
    waited.unwrap_or_else(|e| panic!("the second agent waited for the review: {}", describe(&e)));
    let approver = new_approver("rbd_prep");
    connect(&approver, &w.protected)
        .batch_execute(&format!("COMMIT PREPARED '{then}'"))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let d = deletes(&approver, &w.protected);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].1.as_str(), d[0].2), ("public.orders", 1));
    assert_eq!(count(&mut a, "SELECT count(*) FROM orders"), 9);
}

/// What a restore, purge or expiry does as a superuser never runs an
/// agent's code or touches a table it does not trust:
/// - a `::text` cast an agent made for its own type runs as whoever casts
///   (shown as a superuser), and the restore's check of the rows calls no
///   cast;
/// - restoring rows of a table the bootstrap superuser owns leaves the
///   bin's schema as it was (the next agent's DELETE is kept, not refused);
/// - a DBA's default privileges for the bootstrap superuser's new tables
///   never reach a store;
/// - after a DBA dropped the bin's schema and another role made one of
///   that name again, with a table named as the old store and a trigger
///   on it, a purge of the old entry leaves that table alone and a
///   restore is refused.
#[test]
fn restores_and_purges_run_no_code_but_the_tables_own() {
    let w = world("rbd_trust");
    let approver = new_approver("rbd_trust");
    let x = unique("rbd_trust_x");
    let mut a = admin(&w.open);
    let boot: String = a
        .query_one("SELECT rolname::text FROM pg_authid WHERE oid = 10", &[])
        .unwrap()
        .get(0);
    a.batch_execute(&format!(
        "CREATE ROLE {x} LOGIN;
         CREATE TABLE public.calls (who text); GRANT INSERT ON public.calls TO PUBLIC;
         ALTER DEFAULT PRIVILEGES FOR ROLE {boot} IN SCHEMA ai_agent_safety_recycle GRANT SELECT, TRIGGER ON TABLES TO {x};"
    ))
    .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            "CREATE TYPE public.mood AS ENUM ('calm', 'busy');
             CREATE FUNCTION public.mood_text(public.mood) RETURNS text LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO public.calls VALUES (current_user); RETURN pg_catalog.format('%s', $1); END $$;
             CREATE CAST (public.mood AS text) WITH FUNCTION public.mood_text(public.mood);
             CREATE TABLE public.moods (id int PRIMARY KEY, m public.mood);
             INSERT INTO public.moods SELECT g, 'calm' FROM generate_series(1, 4) g;",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // Where nothing guards it: a superuser's cast runs the agent's function.
    let superuser_calls = |a: &mut postgres::Client| {
        count(
            a,
            "SELECT count(*) FROM public.calls c JOIN pg_roles r ON r.rolname = c.who WHERE r.rolsuper",
        )
    };
    a.batch_execute("SELECT m::text FROM public.moods WHERE id = 1")
        .unwrap();
    assert_eq!(superuser_calls(&mut a), 1);
    agent
        .batch_execute("DELETE FROM moods WHERE id <= 2")
        .unwrap();
    let del = deletes(&approver, &w.open).pop().unwrap();
    assert_eq!((del.1.as_str(), del.2), ("public.moods", 2));
    // The store: no privilege from the DBA's default privileges.
    let store: String = a
        .query_one(
            "SELECT 'ai_agent_safety_recycle.' || relname FROM pg_class
              WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace AND relkind = 'r'
                AND relname LIKE 's' || 'public.moods'::regclass::oid || '\\_%'",
            &[],
        )
        .unwrap()
        .get(0);
    let reach: bool = a
        .query_one(
            "SELECT has_table_privilege($1, $2, 'SELECT') OR has_table_privilege($1, $2, 'TRIGGER')",
            &[&x, &store],
        )
        .unwrap()
        .get(0);
    assert!(!reach, "{x} reaches {store}");
    restore(&approver, &w.open, del.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(count(&mut a, "SELECT count(*) FROM moods"), 4);
    assert_eq!(
        superuser_calls(&mut a),
        1,
        "the restore ran the agent's cast as a superuser"
    );
    // A table the bootstrap superuser owns: restored, and the bin stays safe.
    a.batch_execute(&format!(
        "CREATE TABLE public.boots (id int); INSERT INTO public.boots SELECT generate_series(1, 3);
         GRANT ALL ON public.boots TO {}",
        w.agent
    ))
    .unwrap();
    agent
        .batch_execute("DELETE FROM boots WHERE id = 1")
        .unwrap();
    let boots = deletes(&approver, &w.open).pop().unwrap();
    restore(&approver, &w.open, boots.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    agent
        .batch_execute("DELETE FROM boots WHERE id = 2")
        .unwrap_or_else(|e| panic!("after a restore into a superuser's table: {}", describe(&e)));
    // The schema dropped and made again by another role, with a table of
    // the old store's name: purge and restore leave it alone.
    let old = deletes(&approver, &w.open).pop().unwrap();
    let old_store: String = a
        .query_one(
            "SELECT relname::text FROM pg_class WHERE relnamespace = 'ai_agent_safety_recycle'::regnamespace
              AND relkind = 'r' AND relname LIKE 's' || 'public.boots'::regclass::oid || '\\_%'",
            &[],
        )
        .unwrap()
        .get(0);
    a.batch_execute(&format!(
        "DROP SCHEMA ai_agent_safety_recycle CASCADE;
         GRANT CREATE ON DATABASE {db} TO {x};
         SET ROLE {x};
         CREATE SCHEMA ai_agent_safety_recycle;
         CREATE TABLE ai_agent_safety_recycle.{old_store} (ai_agent_safety_entry int8, id int);
         INSERT INTO ai_agent_safety_recycle.{old_store} VALUES ({id}, 2);
         CREATE FUNCTION ai_agent_safety_recycle.note() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.calls VALUES (current_user); RETURN OLD; END $$;
         CREATE TRIGGER note BEFORE DELETE ON ai_agent_safety_recycle.{old_store}
           FOR EACH ROW EXECUTE FUNCTION ai_agent_safety_recycle.note();
         RESET ROLE;",
        db = w.open,
        id = old.0
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let e = restore(&approver, &w.open, old.0).unwrap_err();
    assert!(
        describe(&e).contains(
            "is no longer a table of the recycle bin that only the bootstrap superuser owns"
        ),
        "{}",
        describe(&e)
    );
    connect(&approver, &w.open)
        .query_one("SELECT ai_agent_safety.purge_dropped($1)", &[&old.0])
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        superuser_calls(&mut a),
        1,
        "the purge ran a trigger as a superuser"
    );
    assert_eq!(
        count(
            &mut a,
            &format!("SELECT count(*) FROM ai_agent_safety_recycle.{old_store}")
        ),
        1
    );
}

/// PostgreSQL checks a new domain constraint against every value of the
/// domain in every table, with the constraint's code, whoever may read the
/// table: where nothing guards it, an agent's check reads a table it has no
/// privilege on. So an agent may not add or validate a constraint of a
/// domain the recycle bin keeps rows of; once those entries are restored
/// it may.
#[test]
fn a_domain_check_cannot_read_kept_rows() {
    let w = world("rbd_domain");
    let approver = new_approver("rbd_domain");
    let (mut agent, seen) = connect_with_notices(&w.agent, &w.open);
    agent
        .batch_execute(
            "CREATE DOMAIN public.secret AS text;
             CREATE FUNCTION public.peek(text) RETURNS bool LANGUAGE plpgsql AS
               $$ BEGIN RAISE NOTICE 'peek %', $1; RETURN true; END $$;
             CREATE TABLE public.vault (id int, s public.secret);
             INSERT INTO public.vault VALUES (1, 'kept-one');",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    // Where nothing guards it: a human's table of the domain, unreadable
    // to the agent, is read by the agent's check.
    admin(&w.open)
        .batch_execute("CREATE TABLE public.hidden (s public.secret); INSERT INTO public.hidden VALUES ('human-only')")
        .unwrap();
    assert!(agent.batch_execute("SELECT * FROM public.hidden").is_err());
    agent
        .batch_execute("ALTER DOMAIN public.secret ADD CONSTRAINT p1 CHECK (public.peek(VALUE))")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(seen.lock().unwrap().iter().any(|n| n == "peek human-only"));
    admin(&w.open)
        .batch_execute("DROP TABLE public.hidden")
        .unwrap();
    // Kept rows of the domain: refused, and nothing is read.
    agent.batch_execute("DELETE FROM vault").unwrap();
    seen.lock().unwrap().clear();
    for sql in [
        "ALTER DOMAIN public.secret ADD CONSTRAINT p2 CHECK (public.peek(VALUE))",
        "ALTER DOMAIN public.secret VALIDATE CONSTRAINT p1",
    ] {
        let e = assert_refused(agent.batch_execute(sql));
        assert!(
            e.contains("may not add or validate a constraint of domain public.secret: the recycle bin keeps rows of that domain"),
            "{e}"
        );
    }
    assert!(
        !seen.lock().unwrap().iter().any(|n| n.contains("kept-")),
        "{:?}",
        seen.lock().unwrap()
    );
    let del = deletes(&approver, &w.open).pop().unwrap();
    restore(&approver, &w.open, del.0).unwrap_or_else(|e| panic!("{}", describe(&e)));
    agent
        .batch_execute("ALTER DOMAIN public.secret ADD CONSTRAINT p2 CHECK (public.peek(VALUE))")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
}

/// A restore checks the rows it put back by the table's name, as a
/// superuser, after the table's triggers ran. A trigger of the agent's that
/// renames the table's schema and puts a view of the same rows under the
/// old name makes the restore refuse (before: the check read the view, as
/// a superuser, and passed), and the rows stay kept.
#[test]
fn a_table_swapped_by_its_trigger_during_a_restore_is_refused() {
    let w = world("rbd_swap");
    let approver = new_approver("rbd_swap");
    admin(&w.open)
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {} TO {}",
            w.open, w.agent
        ))
        .unwrap();
    let mut agent = w.agent_in(&w.open);
    agent
        .batch_execute(
            "CREATE SCHEMA vs; CREATE TABLE vs.t (id int); INSERT INTO vs.t SELECT generate_series(1, 3);
             DELETE FROM vs.t;
             CREATE FUNCTION public.swap() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN
                    ALTER SCHEMA vs RENAME TO vs_old;
                    CREATE SCHEMA vs;
                    CREATE VIEW vs.t AS SELECT * FROM vs_old.t;
                    RETURN NULL;
                  END $$;
             CREATE TRIGGER swap AFTER INSERT ON vs.t FOR EACH STATEMENT EXECUTE FUNCTION public.swap();",
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let del = deletes(&approver, &w.open).pop().unwrap();
    assert_eq!((del.1.as_str(), del.2), ("vs.t", 3));
    let e = restore(&approver, &w.open, del.0).unwrap_err();
    assert!(
        describe(&e).contains("the table was renamed or replaced while the restore ran"),
        "{}",
        describe(&e)
    );
    assert_eq!(deletes(&approver, &w.open).len(), 1, "the rows stay kept");
    assert_eq!(count(&mut admin(&w.open), "SELECT count(*) FROM vs.t"), 0);
}
