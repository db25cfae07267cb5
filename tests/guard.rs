//! The guard (issue: agents cannot DROP, DELETE or TRUNCATE in a database that
//! requires approval). Each statement form: refused for the agent in the
//! protected database with nothing changed, allowed in the open database, never
//! refused for a non-agent.

use aas_integration::postgres::Client;
use aas_integration::*;

#[test]
fn plain_delete() {
    let w = World::new("del");
    let mut a = w.agent_in(&w.protected);
    let msg = assert_refused(a.execute("DELETE FROM orders WHERE id = 1", &[]));
    assert!(msg.contains("DELETE on public.orders"), "{msg}");
    assert!(
        msg.contains(&w.agent) && msg.contains(&w.protected),
        "{msg}"
    );
    assert!(msg.contains("require_approval"), "{msg}");
    assert!(msg.contains("request_approval_token('DELETE'"), "{msg}");
    assert_eq!(
        count(&mut admin(&w.protected), "SELECT count(*) FROM orders"),
        10
    );

    let mut d = w.agent_in(&w.open);
    assert_eq!(
        d.execute("DELETE FROM orders WHERE id = 1", &[]).unwrap(),
        1
    );

    let mut o = w.owner_in(&w.protected);
    assert_eq!(
        o.execute("DELETE FROM orders WHERE id = 1", &[]).unwrap(),
        1
    );
}

// ---------------------------------------------------------------------------
// The shared shape of a statement-form test.
// ---------------------------------------------------------------------------

const ALTER_LISTED: &[(&str, &str)] = &[(
    "ai_agent_safety.protected_operations",
    "DROP, DELETE, TRUNCATE, UPDATE, ALTER",
)];
const UPDATE_LISTED: &[(&str, &str)] = &[(
    "ai_agent_safety.protected_operations",
    "DROP, DELETE, TRUNCATE, UPDATE",
)];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Owner,
    Agent,
}

/// One statement form. `{agent}` and `{owner}` in any SQL text are replaced by
/// the world's role names.
struct Form {
    tag: &'static str,
    settings: &'static [(&'static str, &'static str)],
    /// Makes the agent a member of the owner role, so it may drop and alter the
    /// owner's objects (the agent stays an agent: it is still in ai_agent).
    agent_acts_for_owner: bool,
    /// Run first in both databases, by `setup_as`. Must succeed, also in the
    /// protected database (creating things is not destructive).
    setup: &'static str,
    setup_as: Who,
    /// Run in the same session just before `stmt`; must succeed.
    prelude: &'static str,
    /// The statement form under test.
    stmt: &'static str,
    /// Run as superuser; returns a bigint that is `intact` before and after the
    /// refusal and `done` once the statement ran.
    probe: &'static str,
    intact: i64,
    done: i64,
    /// Texts the refusal must contain.
    says: &'static [&'static str],
}

impl Default for Form {
    fn default() -> Self {
        Form {
            tag: "form",
            settings: &[],
            agent_acts_for_owner: false,
            setup: "",
            setup_as: Who::Owner,
            prelude: "",
            stmt: "",
            probe: "SELECT count(*) FROM public.orders",
            intact: 10,
            done: 9,
            says: &[],
        }
    }
}

fn sql(w: &World, text: &str) -> String {
    text.replace("{agent}", &w.agent)
        .replace("{owner}", &w.owner)
}

fn run_ok(c: &mut Client, what: &str, text: &str) {
    c.batch_execute(text)
        .unwrap_or_else(|e| panic!("{what}: {text}: {}", describe(&e)));
}

fn probe(w: &World, db: &str, text: &str) -> i64 {
    count(&mut admin(db), &sql(w, text))
}

fn orders_rows(db: &str) -> i64 {
    count(&mut admin(db), "SELECT count(*) FROM public.orders")
}

/// GRANT owner TO agent.
fn agent_acts_for_owner(w: &World) {
    run_ok(
        &mut admin("postgres"),
        "grant",
        &format!("GRANT {} TO {}", w.owner, w.agent),
    );
}

impl Form {
    /// (a) refused for the agent in the protected database, nothing changed;
    /// (b) the same statement works for the agent in the open database;
    /// (c) the owner (not an agent) is not refused in the protected database.
    /// Returns the world and the refusal text.
    fn check(&self) -> (World, String) {
        let w = World::with_settings(self.tag, self.settings);
        if self.agent_acts_for_owner {
            agent_acts_for_owner(&w);
        }
        for db in [&w.protected, &w.open] {
            if !self.setup.is_empty() {
                let mut c = match self.setup_as {
                    Who::Owner => w.owner_in(db),
                    Who::Agent => w.agent_in(db),
                };
                run_ok(&mut c, &format!("setup in {db}"), &sql(&w, self.setup));
            }
            assert_eq!(
                probe(&w, db, self.probe),
                self.intact,
                "probe before the statement in {db}: {}",
                self.probe
            );
        }
        let stmt = sql(&w, self.stmt);
        let prelude = sql(&w, self.prelude);

        // (a) refused, nothing changed, the session still usable.
        let mut a = w.agent_in(&w.protected);
        if !prelude.is_empty() {
            run_ok(&mut a, "prelude (agent, protected)", &prelude);
        }
        let msg = assert_guard_refused(a.batch_execute(&stmt));
        assert!(msg.contains(&w.agent), "{msg}");
        for s in self.says {
            assert!(msg.contains(&sql(&w, s)), "expected {s:?} in: {msg}");
        }
        assert_eq!(
            probe(&w, &w.protected, self.probe),
            self.intact,
            "after the refusal of {stmt}: {msg}"
        );
        assert_eq!(orders_rows(&w.protected), 10, "orders after refusal");
        assert_eq!(count(&mut a, "SELECT 1::bigint"), 1);
        drop(a);

        // (b) the open database: the same statement works for the agent.
        let mut d = w.agent_in(&w.open);
        if !prelude.is_empty() {
            run_ok(&mut d, "prelude (agent, open)", &prelude);
        }
        run_ok(&mut d, "agent in the open database", &stmt);
        assert_eq!(
            probe(&w, &w.open, self.probe),
            self.done,
            "after {stmt} in the open database"
        );
        drop(d);

        // (c) a non-agent is never refused its own statement; one that
        // runs code the agent planted (set up as the agent) is judged as
        // the agent's (tests/agent_code.rs).
        let mut o = w.owner_in(&w.protected);
        if !prelude.is_empty() {
            run_ok(&mut o, "prelude (owner, protected)", &prelude);
        }
        if self.setup_as == Who::Agent {
            let m = assert_refused(o.batch_execute(&stmt));
            assert!(
                m.contains(&format!("(its code, run by \"{}\")", w.owner)),
                "{m}"
            );
            assert_eq!(
                orders_rows(&w.protected),
                10,
                "orders after the owner's refusal"
            );
            return (w, msg);
        }
        run_ok(&mut o, "owner in the protected database", &stmt);
        assert_eq!(
            probe(&w, &w.protected, self.probe),
            self.done,
            "after {stmt} by the owner in the protected database"
        );
        (w, msg)
    }
}

const TABLE_EXISTS: &str = "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.orders')";

// ---------------------------------------------------------------------------
// DROP
// ---------------------------------------------------------------------------

#[test]
fn drop_table() {
    Form {
        tag: "droptab",
        agent_acts_for_owner: true,
        stmt: "DROP TABLE orders",
        probe: TABLE_EXISTS,
        intact: 1,
        done: 0,
        says: &["DROP TABLE public.orders", "request_approval_token('DROP'"],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_table_if_exists_existing() {
    Form {
        tag: "dropife",
        agent_acts_for_owner: true,
        stmt: "DROP TABLE IF EXISTS orders",
        probe: TABLE_EXISTS,
        intact: 1,
        done: 0,
        says: &["DROP TABLE public.orders"],
        ..Form::default()
    }
    .check();
}

/// IF EXISTS on a missing table is still a DROP: refused in the protected
/// database (the policy does not guess what the agent meant to remove), a no-op
/// elsewhere.
#[test]
fn drop_table_if_exists_missing() {
    Form {
        tag: "dropifm",
        agent_acts_for_owner: true,
        stmt: "DROP TABLE IF EXISTS no_such_table",
        probe: TABLE_EXISTS,
        intact: 1,
        done: 1,
        says: &["DROP TABLE no_such_table"],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_table_cascade() {
    Form {
        tag: "dropcasc",
        agent_acts_for_owner: true,
        setup: "CREATE VIEW recent_orders AS SELECT * FROM orders WHERE id > 5",
        stmt: "DROP TABLE orders CASCADE",
        probe: "SELECT count(*) FROM pg_class WHERE relname IN ('orders', 'recent_orders') \
                AND relnamespace = 'public'::regnamespace",
        intact: 2,
        done: 0,
        says: &["DROP TABLE public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_several_tables() {
    Form {
        tag: "dropmulti",
        agent_acts_for_owner: true,
        setup: "CREATE TABLE customers (id int PRIMARY KEY);
                INSERT INTO customers SELECT generate_series(1, 5)",
        stmt: "DROP TABLE orders, customers",
        probe: "SELECT count(*) FROM pg_class WHERE relname IN ('orders', 'customers') \
                AND relnamespace = 'public'::regnamespace",
        intact: 2,
        done: 0,
        says: &[
            "DROP TABLE public.orders",
            "DROP TABLE public.customers",
            "one statement at a time",
        ],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_view() {
    Form {
        tag: "dropview",
        agent_acts_for_owner: true,
        setup: "CREATE VIEW recent_orders AS SELECT * FROM orders WHERE id > 5",
        stmt: "DROP VIEW recent_orders",
        probe: "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.recent_orders')",
        intact: 1,
        done: 0,
        says: &["DROP VIEW public.recent_orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_index() {
    Form {
        tag: "dropidx",
        agent_acts_for_owner: true,
        setup: "CREATE INDEX orders_note_idx ON orders (note)",
        stmt: "DROP INDEX orders_note_idx",
        probe: "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.orders_note_idx')",
        intact: 1,
        done: 0,
        says: &["DROP INDEX public.orders_note_idx"],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_function() {
    Form {
        tag: "dropfn",
        agent_acts_for_owner: true,
        setup: "CREATE FUNCTION order_total(i int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'",
        stmt: "DROP FUNCTION order_total(int)",
        probe: "SELECT count(*) FROM pg_proc WHERE proname = 'order_total'",
        intact: 1,
        done: 0,
        says: &["DROP FUNCTION public.order_total(integer)"],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_schema_cascade() {
    Form {
        tag: "dropschema",
        agent_acts_for_owner: true,
        setup: "CREATE SCHEMA archive;
                CREATE TABLE archive.old_orders AS SELECT * FROM public.orders",
        stmt: "DROP SCHEMA archive CASCADE",
        probe: "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'archive')
                     + (SELECT count(*) FROM pg_class WHERE oid = to_regclass('archive.old_orders'))",
        intact: 2,
        done: 0,
        says: &["DROP SCHEMA archive"],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_sequence() {
    Form {
        tag: "dropseq",
        agent_acts_for_owner: true,
        setup: "CREATE SEQUENCE order_numbers",
        stmt: "DROP SEQUENCE order_numbers",
        probe: "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.order_numbers')",
        intact: 1,
        done: 0,
        says: &["DROP SEQUENCE public.order_numbers"],
        ..Form::default()
    }
    .check();
}

#[test]
fn drop_type() {
    Form {
        tag: "droptype",
        agent_acts_for_owner: true,
        setup: "CREATE TYPE order_state AS ENUM ('open', 'shipped')",
        stmt: "DROP TYPE order_state",
        probe: "SELECT count(*) FROM pg_type WHERE typname = 'order_state'",
        intact: 1,
        done: 0,
        says: &["DROP TYPE public.order_state"],
        ..Form::default()
    }
    .check();
}

/// DROP OWNED BY the agent itself. The owner cannot drop what the agent owns, so
/// the non-agent check is the owner's own DROP OWNED BY.
#[test]
fn drop_owned_by_agent() {
    let w = World::new("dropowned");
    // Without the recycle bin: with it, a DROP OWNED BY that would remove
    // tables is refused (tests/recycle_objects.rs).
    admin("postgres")
        .batch_execute(&format!(
            "ALTER ROLE {} SET ai_agent_safety.recycle_retention = 0",
            w.agent
        ))
        .unwrap();
    let probe_sql = "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.agent_notes')";
    for db in [&w.protected, &w.open] {
        run_ok(
            &mut w.agent_in(db),
            "agent creates a table",
            "CREATE TABLE agent_notes (t text); INSERT INTO agent_notes VALUES ('keep me')",
        );
    }
    let stmt = format!("DROP OWNED BY {}", w.agent);

    let mut a = w.agent_in(&w.protected);
    let msg = assert_guard_refused(a.batch_execute(&stmt));
    assert!(msg.contains(&format!("DROP OWNED BY {}", w.agent)), "{msg}");
    assert_eq!(probe(&w, &w.protected, probe_sql), 1);
    assert_eq!(
        count(&mut admin(&w.protected), "SELECT count(*) FROM agent_notes"),
        1
    );
    // The agent's privileges on orders survive too.
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM orders"),
        10,
        "the agent still reads orders"
    );

    run_ok(
        &mut w.agent_in(&w.open),
        "agent in the open database",
        &stmt,
    );
    assert_eq!(probe(&w, &w.open, probe_sql), 0);

    let mut o = w.owner_in(&w.protected);
    run_ok(
        &mut o,
        "owner creates a table",
        "CREATE TABLE owner_scratch (t text)",
    );
    run_ok(
        &mut o,
        "owner drops what it owns",
        &format!("DROP OWNED BY {}", w.owner),
    );
    assert_eq!(
        probe(
            &w,
            &w.protected,
            "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.owner_scratch')"
        ),
        0
    );
}

// ---------------------------------------------------------------------------
// TRUNCATE
// ---------------------------------------------------------------------------

#[test]
fn truncate_plain() {
    Form {
        tag: "trunc",
        stmt: "TRUNCATE orders",
        done: 0,
        says: &[
            "TRUNCATE public.orders",
            "request_approval_token('TRUNCATE'",
        ],
        ..Form::default()
    }
    .check();
}

#[test]
fn truncate_only() {
    Form {
        tag: "trunconly",
        stmt: "TRUNCATE ONLY orders",
        done: 0,
        says: &["TRUNCATE public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn truncate_cascade() {
    Form {
        tag: "trunccasc",
        setup: "CREATE TABLE order_lines (order_id int REFERENCES orders (id), qty int);
                INSERT INTO order_lines SELECT g, 1 FROM generate_series(1, 10) g;
                GRANT ALL ON order_lines TO {agent}",
        stmt: "TRUNCATE orders CASCADE",
        probe: "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_lines)",
        intact: 20,
        done: 0,
        says: &["TRUNCATE public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn truncate_several_tables() {
    Form {
        tag: "truncmulti",
        setup: "CREATE TABLE customers (id int PRIMARY KEY);
                INSERT INTO customers SELECT generate_series(1, 5);
                GRANT ALL ON customers TO {agent}",
        stmt: "TRUNCATE orders, customers",
        probe: "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM customers)",
        intact: 15,
        done: 0,
        says: &["TRUNCATE public.orders", "TRUNCATE public.customers"],
        ..Form::default()
    }
    .check();
}

const EVENTS_SETUP: &str = "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
     CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
     CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
     INSERT INTO events SELECT g, date '2024-06-01' + g * 30 FROM generate_series(1, 10) g;
     GRANT ALL ON events, events_2024, events_2025 TO {agent}";

#[test]
fn truncate_partitioned_table() {
    Form {
        tag: "truncpart",
        setup: EVENTS_SETUP,
        stmt: "TRUNCATE events",
        probe: "SELECT count(*) FROM events",
        intact: 10,
        done: 0,
        says: &["TRUNCATE public.events"],
        ..Form::default()
    }
    .check();
}

// ---------------------------------------------------------------------------
// DELETE, wherever it runs
// ---------------------------------------------------------------------------

#[test]
fn delete_in_writable_cte() {
    Form {
        tag: "delcte",
        stmt: "WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT count(*) FROM d",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn merge_then_delete() {
    Form {
        tag: "delmerge",
        stmt: "MERGE INTO orders o USING (VALUES (1)) AS s(id) ON o.id = s.id \
               WHEN MATCHED THEN DELETE",
        says: &["MERGE ... THEN DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn delete_in_plpgsql_function() {
    Form {
        tag: "delplpgsql",
        setup_as: Who::Agent,
        setup: "CREATE FUNCTION purge_order(i int) RETURNS void LANGUAGE plpgsql
                AS $$ BEGIN DELETE FROM orders WHERE id = i; END $$",
        stmt: "SELECT purge_order(1)",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn delete_in_procedure() {
    Form {
        tag: "delproc",
        setup_as: Who::Agent,
        setup: "CREATE PROCEDURE purge_order_proc(i int) LANGUAGE plpgsql
                AS $$ BEGIN DELETE FROM orders WHERE id = i; END $$",
        stmt: "CALL purge_order_proc(1)",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn delete_in_do_block() {
    Form {
        tag: "deldo",
        stmt: "DO $$ BEGIN DELETE FROM orders WHERE id = 1; END $$",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn delete_by_dynamic_execute_in_do_block() {
    Form {
        tag: "deldyn",
        stmt: "DO $$ BEGIN EXECUTE format('DELETE FROM %I WHERE id = %s', 'orders', 1); END $$",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

/// A SECURITY DEFINER function owned by the non-agent owner: inside it
/// current_user is the owner, but session_user is still the agent. The agent's
/// own DELETE privilege is revoked, so the definer's rights are the only route.
#[test]
fn delete_through_security_definer_function_of_owner() {
    let (w, msg) = Form {
        tag: "deldefiner",
        setup: "CREATE FUNCTION owner_purge(i int) RETURNS void
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
                AS $$ BEGIN DELETE FROM orders WHERE id = i; END $$;
                REVOKE DELETE ON orders FROM {agent}",
        stmt: "SELECT owner_purge(1)",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
    assert!(
        msg.contains(&format!("acting as \"{}\"", w.owner)),
        "the refusal names the definer the agent acted as: {msg}"
    );
    // Without the function the agent could not delete at all.
    let mut a = w.agent_in(&w.open);
    let e = assert_refused(a.batch_execute("DELETE FROM orders WHERE id = 2"));
    assert!(e.contains("permission denied"), "{e}");
}

#[test]
fn delete_in_sql_function() {
    Form {
        tag: "delsqlfn",
        setup_as: Who::Agent,
        setup: "CREATE FUNCTION purge_order_sql(i int) RETURNS void LANGUAGE sql
                AS 'DELETE FROM orders WHERE id = $1'",
        stmt: "SELECT purge_order_sql(1)",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

/// PREPARE is not refused (it deletes nothing); EXECUTE is.
#[test]
fn delete_by_prepare_execute() {
    Form {
        tag: "delprep",
        prelude: "PREPARE purge(int) AS DELETE FROM orders WHERE id = $1",
        stmt: "EXECUTE purge(1)",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

/// A rule the agent creates on its own table: creating it is allowed, the
/// DELETE it sets off is not (and the INSERT that fired it is rolled back).
#[test]
fn delete_by_rule_created_by_agent() {
    let (w, _) = Form {
        tag: "delrule",
        setup_as: Who::Agent,
        setup: "CREATE TABLE order_log (x int);
                GRANT ALL ON order_log TO {owner};
                CREATE RULE purge_on_log AS ON INSERT TO order_log
                    DO ALSO DELETE FROM orders WHERE id = NEW.x",
        stmt: "INSERT INTO order_log VALUES (1)",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
    assert_eq!(
        count(&mut admin(&w.open), "SELECT count(*) FROM order_log"),
        1
    );
    // Both refused INSERTs rolled back: the agent's, and the owner's that
    // ran the agent's rule.
    assert_eq!(
        count(&mut admin(&w.protected), "SELECT count(*) FROM order_log"),
        0
    );
}

/// A trigger the agent creates, whose function deletes.
#[test]
fn delete_by_trigger_created_by_agent() {
    let (w, _) = Form {
        tag: "deltrig",
        setup_as: Who::Agent,
        setup: "CREATE TABLE order_log (x int);
                GRANT ALL ON order_log TO {owner};
                CREATE FUNCTION purge_from_log() RETURNS trigger LANGUAGE plpgsql
                    AS $$ BEGIN DELETE FROM orders WHERE id = NEW.x; RETURN NEW; END $$;
                CREATE TRIGGER purge_after_log AFTER INSERT ON order_log
                    FOR EACH ROW EXECUTE FUNCTION purge_from_log()",
        stmt: "INSERT INTO order_log VALUES (1)",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
    assert_eq!(
        count(&mut admin(&w.protected), "SELECT count(*) FROM order_log"),
        0,
        "both INSERTs rolled back: the agent's, and the owner's that ran the agent's trigger"
    );
}

/// SET ROLE to a non-agent role the agent is a member of changes current_user
/// only; session_user is still the agent.
#[test]
fn set_role_to_non_agent_does_not_escape() {
    let (w, msg) = Form {
        tag: "setrole",
        agent_acts_for_owner: true,
        prelude: "SET ROLE {owner}",
        stmt: "DELETE FROM orders WHERE id = 1",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
    assert!(msg.contains(&format!("acting as \"{}\"", w.owner)), "{msg}");
    // The utility path too: DROP TABLE after SET ROLE.
    let mut a = w.agent_in(&w.protected);
    run_ok(&mut a, "set role", &format!("SET ROLE {}", w.owner));
    assert_eq!(count(&mut a, "SELECT count(*) FROM orders"), 9);
    assert_guard_refused(a.batch_execute("DROP TABLE orders"));
    assert_guard_refused(a.batch_execute("TRUNCATE orders"));
    assert_eq!(orders_rows(&w.protected), 9);
}

// ---------------------------------------------------------------------------
// UPDATE: protected only when listed
// ---------------------------------------------------------------------------

const CHANGED: &str = "SELECT count(*) FROM orders WHERE note = 'changed'";

#[test]
fn update_refused_when_listed() {
    Form {
        tag: "updlisted",
        settings: UPDATE_LISTED,
        stmt: "UPDATE orders SET note = 'changed' WHERE id = 1",
        probe: CHANGED,
        intact: 0,
        done: 1,
        says: &["UPDATE on public.orders", "request_approval_token('UPDATE'"],
        ..Form::default()
    }
    .check();
}

#[test]
fn upsert_do_update_refused_when_update_listed() {
    let (w, _) = Form {
        tag: "upsert",
        settings: UPDATE_LISTED,
        stmt: "INSERT INTO orders VALUES (1, 'changed') \
               ON CONFLICT (id) DO UPDATE SET note = excluded.note",
        probe: CHANGED,
        intact: 0,
        done: 1,
        says: &["INSERT ... ON CONFLICT DO UPDATE on public.orders"],
        ..Form::default()
    }
    .check();
    // DO NOTHING changes no row: allowed.
    let mut a = w.agent_in(&w.protected);
    run_ok(
        &mut a,
        "upsert do nothing",
        "INSERT INTO orders VALUES (2, 'changed') ON CONFLICT (id) DO NOTHING;
         INSERT INTO orders VALUES (11, 'new') ON CONFLICT (id) DO NOTHING",
    );
    assert_eq!(orders_rows(&w.protected), 11);
}

#[test]
fn merge_then_update_refused_when_update_listed() {
    Form {
        tag: "mergeupd",
        settings: UPDATE_LISTED,
        stmt: "MERGE INTO orders o USING (VALUES (1)) AS s(id) ON o.id = s.id \
               WHEN MATCHED THEN UPDATE SET note = 'changed'",
        probe: CHANGED,
        intact: 0,
        done: 1,
        says: &["MERGE ... THEN UPDATE on public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn update_allowed_when_not_listed() {
    let w = World::new("updopen");
    let mut a = w.agent_in(&w.protected);
    assert_eq!(
        a.execute("UPDATE orders SET note = 'changed' WHERE id = 1", &[])
            .unwrap(),
        1
    );
    run_ok(
        &mut a,
        "upsert",
        "INSERT INTO orders VALUES (2, 'changed') ON CONFLICT (id) DO UPDATE SET note = excluded.note",
    );
    assert_eq!(count(&mut admin(&w.protected), CHANGED), 2);
}

// ---------------------------------------------------------------------------
// ALTER: protected only when listed
// ---------------------------------------------------------------------------

const NOTE_IS_TEXT: &str =
    "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.orders'::regclass \
     AND attname = 'note' AND atttypid = 'text'::regtype AND NOT attisdropped";

#[test]
fn alter_drop_column_refused_when_listed() {
    Form {
        tag: "altdropcol",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        stmt: "ALTER TABLE orders DROP COLUMN note",
        probe: NOTE_IS_TEXT,
        intact: 1,
        done: 0,
        says: &[
            "DROP COLUMN note",
            "public.orders",
            "request_approval_token('ALTER'",
        ],
        ..Form::default()
    }
    .check();
}

#[test]
fn alter_column_type_refused_when_listed() {
    Form {
        tag: "alttype",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        stmt: "ALTER TABLE orders ALTER COLUMN note TYPE varchar(50)",
        probe: NOTE_IS_TEXT,
        intact: 1,
        done: 0,
        says: &["ALTER COLUMN note TYPE", "public.orders"],
        ..Form::default()
    }
    .check();
}

/// PostgreSQL 17's ALTER COLUMN ... SET EXPRESSION recomputes every stored
/// value of a generated column.
#[test]
fn alter_column_set_expression_refused_when_listed() {
    let mut su = admin("postgres");
    if server_major(&mut su) < 17 {
        assert_not_a_statement_here(
            &mut su,
            "CREATE TEMP TABLE g (a int, b int GENERATED ALWAYS AS (a) STORED); ALTER TABLE g ALTER COLUMN b SET EXPRESSION AS (a + 1)",
        );
        return;
    }
    Form {
        tag: "altsetexpr",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        setup: "CREATE TABLE public.gen (a int, b int GENERATED ALWAYS AS (a * 2) STORED);
                INSERT INTO public.gen (a) SELECT g FROM generate_series(1, 10) g;",
        stmt: "ALTER TABLE gen ALTER COLUMN b SET EXPRESSION AS (a * 3)",
        probe: "SELECT sum(b)::bigint FROM public.gen",
        intact: 110,
        done: 165,
        says: &["ALTER COLUMN b SET EXPRESSION", "public.gen"],
        ..Form::default()
    }
    .check();
}

#[test]
fn alter_detach_partition_refused_when_listed() {
    Form {
        tag: "altdetach",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        setup: EVENTS_SETUP,
        stmt: "ALTER TABLE events DETACH PARTITION events_2024",
        probe: "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.events'::regclass",
        intact: 2,
        done: 1,
        says: &["DETACH PARTITION", "public.events"],
        ..Form::default()
    }
    .check();
}

#[test]
fn alter_rename_table_refused_when_listed() {
    Form {
        tag: "altrentab",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        stmt: "ALTER TABLE orders RENAME TO orders_old",
        probe: TABLE_EXISTS,
        intact: 1,
        done: 0,
        says: &["RENAME TO orders_old", "public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn alter_rename_column_refused_when_listed() {
    Form {
        tag: "altrencol",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        stmt: "ALTER TABLE orders RENAME COLUMN note TO remark",
        probe: NOTE_IS_TEXT,
        intact: 1,
        done: 0,
        says: &["RENAME COLUMN note TO remark", "public.orders"],
        ..Form::default()
    }
    .check();
}

/// Renaming a schema hides every table in it from its readers' queries.
#[test]
fn alter_rename_schema_refused_when_listed() {
    Form {
        tag: "altrenschema",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        setup: "CREATE SCHEMA ledger",
        stmt: "ALTER SCHEMA ledger RENAME TO ledger_old",
        probe: "SELECT count(*) FROM pg_namespace WHERE nspname = 'ledger'",
        intact: 1,
        done: 0,
        says: &["ALTER SCHEMA ledger RENAME TO ledger_old"],
        ..Form::default()
    }
    .check();
}

/// Moving a table to another schema hides it from its readers like RENAME does.
#[test]
fn alter_set_schema_refused_when_listed() {
    Form {
        tag: "altsetschema",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        setup: "CREATE SCHEMA attic",
        stmt: "ALTER TABLE orders SET SCHEMA attic",
        probe: TABLE_EXISTS,
        intact: 1,
        done: 0,
        says: &["SET SCHEMA attic", "public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn alter_add_column_allowed_when_listed() {
    let w = World::with_settings("altadd", ALTER_LISTED);
    agent_acts_for_owner(&w);
    let mut a = w.agent_in(&w.protected);
    run_ok(
        &mut a,
        "add column",
        "ALTER TABLE orders ADD COLUMN shipped boolean DEFAULT false",
    );
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders WHERE NOT shipped"
        ),
        10
    );
}

#[test]
fn alter_drop_column_allowed_when_not_listed() {
    let w = World::new("altopen");
    agent_acts_for_owner(&w);
    let mut a = w.agent_in(&w.protected);
    run_ok(
        &mut a,
        "drop column",
        "ALTER TABLE orders DROP COLUMN note; ALTER TABLE orders RENAME TO orders_renamed;
         CREATE SCHEMA attic; ALTER TABLE orders_renamed SET SCHEMA attic;
         ALTER TABLE attic.orders_renamed SET SCHEMA public",
    );
    assert_eq!(
        count(
            &mut admin(&w.protected),
            "SELECT count(*) FROM orders_renamed"
        ),
        10
    );
}

// ---------------------------------------------------------------------------
// DROP DATABASE: decided by the target database's own settings
// ---------------------------------------------------------------------------

/// Creates a database owned by `owner`, with require_approval on when asked.
fn make_database(owner: &str, require_approval: bool) -> String {
    let name = unique("victimdb");
    let mut a = admin("postgres");
    run_ok(
        &mut a,
        "create database",
        &format!("CREATE DATABASE {name} OWNER {owner}"),
    );
    if require_approval {
        run_ok(
            &mut a,
            "protect database",
            &format!("ALTER DATABASE {name} SET ai_agent_safety.require_approval = on"),
        );
    }
    name
}

fn database_exists(name: &str) -> bool {
    count(
        &mut admin("postgres"),
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    ) == 1
}

#[test]
fn drop_database_protected_target_refused_from_open_database() {
    let w = World::new("dropdb");
    let x = make_database(&w.agent, true);
    // The current database does not require approval; the target does.
    let mut a = w.agent_in(&w.open);
    for stmt in [
        format!("DROP DATABASE {x}"),
        format!("DROP DATABASE {x} WITH (FORCE)"),
        format!("DROP DATABASE IF EXISTS {x}"),
    ] {
        let msg = assert_guard_refused(a.batch_execute(&stmt));
        assert!(msg.contains(&format!("DROP DATABASE {x}")), "{msg}");
        assert!(msg.contains(&format!("Database \"{x}\"")), "{msg}");
        assert!(database_exists(&x), "{x} survived {stmt}");
    }
    // From the protected database as well.
    let mut p = w.agent_in(&w.protected);
    assert_guard_refused(p.batch_execute(&format!("DROP DATABASE {x} WITH (FORCE)")));
    assert!(database_exists(&x));

    // A non-agent dropping its own protected database is not refused.
    let y = make_database(&w.owner, true);
    run_ok(
        &mut w.owner_in(&w.open),
        "owner drops its database",
        &format!("DROP DATABASE {y} WITH (FORCE)"),
    );
    assert!(!database_exists(&y));
}

#[test]
fn drop_database_unprotected_target_allowed_from_protected_database() {
    let w = World::new("dropdbok");
    let x = make_database(&w.agent, false);
    let y = make_database(&w.agent, false);
    let mut a = w.agent_in(&w.protected);
    run_ok(&mut a, "drop database", &format!("DROP DATABASE {x}"));
    assert!(!database_exists(&x));
    run_ok(
        &mut a,
        "drop database with force",
        &format!("DROP DATABASE {y} WITH (FORCE)"),
    );
    assert!(!database_exists(&y));
    // A missing database is nothing to protect.
    run_ok(
        &mut a,
        "drop missing database",
        &format!("DROP DATABASE IF EXISTS {x}"),
    );
}

// ---------------------------------------------------------------------------
// The agent cannot switch the guard off
// ---------------------------------------------------------------------------

#[test]
fn agent_cannot_change_guard_settings() {
    let w = World::new("settings");
    let mut a = w.agent_in(&w.protected);
    let attempts = [
        "SET ai_agent_safety.require_approval = off".to_string(),
        "SET LOCAL ai_agent_safety.require_approval = off".to_string(),
        "RESET ai_agent_safety.require_approval".to_string(),
        "SELECT set_config('ai_agent_safety.require_approval', 'off', false)".to_string(),
        "SET ai_agent_safety.protected_operations = ''".to_string(),
        "SELECT set_config('ai_agent_safety.protected_operations', '', false)".to_string(),
        "SET ai_agent_safety.agent_role = 'nobody'".to_string(),
        format!(
            "ALTER ROLE {} SET ai_agent_safety.require_approval = off",
            w.agent
        ),
        format!(
            "ALTER ROLE {} IN DATABASE {} SET ai_agent_safety.require_approval = off",
            w.agent, w.protected
        ),
        format!(
            "ALTER DATABASE {} SET ai_agent_safety.require_approval = off",
            w.protected
        ),
        format!(
            "ALTER DATABASE {} RESET ai_agent_safety.require_approval",
            w.protected
        ),
    ];
    for stmt in &attempts {
        let msg = assert_refused(a.batch_execute(stmt));
        // PostgreSQL's own refusal, or (for ALTER ROLE) the guard's rule on
        // role changes, which runs first.
        assert!(
            msg.contains("permission denied")
                || msg.contains("must be owner")
                || msg.contains("may not create, alter, drop or grant roles")
                || msg.contains("may not change ai_agent_safety."),
            "{stmt}: {msg}"
        );
    }
    // Even as a member of the database owner's role, database settings stay out
    // of reach.
    agent_acts_for_owner(&w);
    for stmt in [
        format!(
            "ALTER DATABASE {} SET ai_agent_safety.require_approval = off",
            w.protected
        ),
        format!(
            "ALTER DATABASE {} SET ai_agent_safety.protected_operations = ''",
            w.protected
        ),
    ] {
        assert_refused(w.agent_in(&w.protected).batch_execute(&stmt));
    }
    // Nothing changed: in this session and in a new one the guard still refuses.
    assert_eq!(
        count(
            &mut a,
            "SELECT (current_setting('ai_agent_safety.require_approval') = 'on')::int::bigint"
        ),
        1
    );
    assert_guard_refused(a.batch_execute("DELETE FROM orders WHERE id = 1"));
    let mut fresh = w.agent_in(&w.protected);
    assert_guard_refused(fresh.batch_execute("DELETE FROM orders WHERE id = 1"));
    assert_eq!(
        count(
            &mut admin("postgres"),
            &format!(
                "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
                 WHERE d.datname = '{}' AND 'ai_agent_safety.require_approval=on' = ANY (s.setconfig)",
                w.protected
            )
        ),
        1
    );
    assert_eq!(orders_rows(&w.protected), 10);
}

#[test]
fn invalid_protected_operations_rejected_for_superuser() {
    let w = World::new("badops");
    let mut s = admin(&w.protected);
    let msg = assert_sqlstate(
        s.batch_execute("SET ai_agent_safety.protected_operations = 'DROP, EXPLODE'"),
        "22023",
    );
    assert!(msg.contains("EXPLODE"), "{msg}");
    assert!(
        msg.contains("DROP, DELETE, TRUNCATE, UPDATE, ALTER"),
        "the error lists the accepted words: {msg}"
    );
    let msg = assert_sqlstate(
        s.batch_execute(&format!(
            "ALTER DATABASE {} SET ai_agent_safety.protected_operations = 'DROP, NUKE'",
            w.protected
        )),
        "22023",
    );
    assert!(msg.contains("NUKE"), "{msg}");
    assert!(
        msg.contains("DROP, DELETE, TRUNCATE, UPDATE, ALTER"),
        "{msg}"
    );
    let msg = assert_sqlstate(
        s.batch_execute(&format!(
            "ALTER ROLE {} SET ai_agent_safety.protected_operations = 'DROP,,DELETE'",
            w.agent
        )),
        "22023",
    );
    assert!(msg.contains("empty entry"), "{msg}");
    // The setting was not changed: still the default.
    assert_eq!(
        count(
            &mut s,
            "SELECT (current_setting('ai_agent_safety.protected_operations') = 'DROP, DELETE, TRUNCATE')::int::bigint"
        ),
        1
    );
    // A valid list is accepted, in any case and spacing.
    run_ok(
        &mut s,
        "valid list",
        "SET ai_agent_safety.protected_operations = 'drop,Delete , TRUNCATE, update, ALTER'",
    );
}

// ---------------------------------------------------------------------------
// CREATE EXTENSION without the library preloaded
// ---------------------------------------------------------------------------

const NOPRELOAD_PORT: u16 = 55441;

#[test]
fn create_extension_requires_preload() {
    let _stop = StopCluster("nopreload");
    run_lib_sh(&format!(
        "cluster_start nopreload {NOPRELOAD_PORT} --no-preload"
    ));
    let mut c = connect_port(NOPRELOAD_PORT, "postgres", "postgres");
    let msg = assert_sqlstate(c.batch_execute("CREATE EXTENSION ai_agent_safety"), "55000");
    assert!(msg.contains("shared_preload_libraries"), "{msg}");
    for probe_sql in [
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'ai_agent_safety'",
        "SELECT count(*) FROM pg_extension WHERE extname = 'ai_agent_safety'",
        "SELECT count(*) FROM pg_roles WHERE rolname IN ('ai_agent', 'ai_agent_approver')",
    ] {
        assert_eq!(count(&mut c, probe_sql), 0, "{probe_sql}");
    }
}

// ---------------------------------------------------------------------------
// What agents may do
// ---------------------------------------------------------------------------

#[test]
fn select_and_insert_allowed_in_protected_database() {
    let w = World::new("readwrite");
    let mut a = w.agent_in(&w.protected);
    assert_eq!(count(&mut a, "SELECT count(*) FROM orders"), 10);
    assert_eq!(
        a.execute("INSERT INTO orders VALUES (11, 'new')", &[])
            .unwrap(),
        1
    );
    run_ok(
        &mut a,
        "insert select, create, select for update",
        "INSERT INTO orders SELECT g, 'bulk' FROM generate_series(12, 20) g;
         CREATE TABLE agent_scratch AS SELECT * FROM orders;
         BEGIN; SELECT * FROM orders WHERE id = 1 FOR UPDATE; COMMIT;
         EXPLAIN DELETE FROM orders",
    );
    assert_eq!(orders_rows(&w.protected), 20);
}

// ---------------------------------------------------------------------------
// More routes to the same operations
// ---------------------------------------------------------------------------

/// Utility statements run from PL/pgSQL reach the guard too.
#[test]
fn drop_and_truncate_inside_do_block() {
    Form {
        tag: "dodrop",
        agent_acts_for_owner: true,
        stmt: "DO $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$",
        probe: TABLE_EXISTS,
        intact: 1,
        done: 0,
        says: &["DROP TABLE public.orders"],
        ..Form::default()
    }
    .check();
    Form {
        tag: "dotrunc",
        stmt: "DO $$ BEGIN TRUNCATE orders; END $$",
        done: 0,
        says: &["TRUNCATE public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn explain_analyze_delete() {
    Form {
        tag: "explain",
        stmt: "EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

fn copy_out(c: &mut Client, stmt: &str) -> Result<Vec<u8>, postgres::Error> {
    use std::io::Read;
    let mut out = Vec::new();
    c.copy_out(stmt)?
        .read_to_end(&mut out)
        .expect("read COPY data");
    Ok(out)
}

#[test]
fn copy_of_delete_returning() {
    let w = World::new("copydel");
    let stmt = "COPY (DELETE FROM orders WHERE id = 1 RETURNING id) TO STDOUT";
    let msg = assert_guard_refused(copy_out(&mut w.agent_in(&w.protected), stmt));
    assert!(msg.contains("DELETE on public.orders"), "{msg}");
    assert_eq!(orders_rows(&w.protected), 10);
    let rows = copy_out(&mut w.agent_in(&w.open), stmt).unwrap();
    assert_eq!(rows, b"1\n");
    assert_eq!(orders_rows(&w.open), 9);
    copy_out(&mut w.owner_in(&w.protected), stmt).unwrap();
    assert_eq!(orders_rows(&w.protected), 9);
}

#[test]
fn delete_in_cte_of_insert() {
    Form {
        tag: "ctein",
        setup: "CREATE TABLE order_archive (LIKE orders); GRANT ALL ON order_archive TO {agent}",
        stmt: "WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) \
               INSERT INTO order_archive SELECT * FROM d",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn delete_through_updatable_view() {
    Form {
        tag: "delview",
        setup: "CREATE VIEW all_orders AS SELECT * FROM orders; GRANT ALL ON all_orders TO {agent}",
        stmt: "DELETE FROM all_orders WHERE id = 1",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

#[test]
fn delete_from_partitioned_table() {
    for (tag, stmt, done) in [
        ("delpart", "DELETE FROM events WHERE id = 1", 9),
        // Every partition pruned: deletes nothing, but it is a DELETE.
        (
            "delpruned",
            "DELETE FROM events WHERE at = date '1999-01-01'",
            10,
        ),
    ] {
        Form {
            tag,
            setup: EVENTS_SETUP,
            stmt,
            probe: "SELECT count(*) FROM events",
            intact: 10,
            done,
            says: &["DELETE on public.events"],
            ..Form::default()
        }
        .check();
    }
}

#[test]
fn drop_materialized_view() {
    Form {
        tag: "dropmv",
        agent_acts_for_owner: true,
        setup: "CREATE MATERIALIZED VIEW order_stats AS SELECT count(*) AS n FROM orders",
        stmt: "DROP MATERIALIZED VIEW order_stats",
        probe: "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.order_stats')",
        intact: 1,
        done: 0,
        says: &["DROP MATERIALIZED VIEW public.order_stats"],
        ..Form::default()
    }
    .check();
}

/// The destructive statement is the second of a multi-statement query string.
#[test]
fn delete_after_select_in_one_query_string() {
    Form {
        tag: "multistmt",
        stmt: "SELECT 1; DELETE FROM orders WHERE id = 1",
        says: &["DELETE on public.orders"],
        ..Form::default()
    }
    .check();
}

/// A role that becomes an agent while its session is open is refused from its
/// next statement on (the identity cache is invalidated).
#[test]
fn role_made_agent_mid_session_is_refused() {
    let w = World::new("midsession");
    let mut o = w.owner_in(&w.protected);
    assert_eq!(
        o.execute("DELETE FROM orders WHERE id = 1", &[]).unwrap(),
        1
    );
    run_ok(
        &mut admin("postgres"),
        "make the owner an agent",
        &format!("GRANT ai_agent TO {}", w.owner),
    );
    assert_guard_refused(o.batch_execute("DELETE FROM orders WHERE id = 2"));
    run_ok(
        &mut admin("postgres"),
        "and no longer",
        &format!("REVOKE ai_agent FROM {}", w.owner),
    );
    assert_eq!(
        o.execute("DELETE FROM orders WHERE id = 2", &[]).unwrap(),
        1
    );
    assert_eq!(orders_rows(&w.protected), 8);
}

/// An agent that is a member of ai_agent only through another group is an agent.
#[test]
fn indirect_member_of_agent_group_is_refused() {
    let w = World::new("indirect");
    let team = unique("agent_team");
    let bot = unique("indirect_bot");
    let mut s = admin("postgres");
    let until = in_one_hour(&mut s);
    run_ok(
        &mut s,
        "roles",
        &format!(
            "CREATE ROLE {team} NOLOGIN IN ROLE ai_agent;
             CREATE ROLE {bot} LOGIN IN ROLE {team} VALID UNTIL '{until}'"
        ),
    );
    run_ok(
        &mut admin(&w.protected),
        "grant",
        &format!("GRANT ALL ON orders TO {bot}"),
    );
    let mut b = connect(&bot, &w.protected);
    assert_guard_refused(b.batch_execute("DELETE FROM orders WHERE id = 1"));
    assert_eq!(orders_rows(&w.protected), 10);
}

/// A non-agent that takes on an agent role (here a superuser with SET ROLE) is
/// judged as the agent: current_user counts as well as session_user.
#[test]
fn superuser_acting_as_agent_is_refused() {
    let w = World::new("suasagent");
    let mut s = admin(&w.protected);
    run_ok(&mut s, "set role", &format!("SET ROLE {}", w.agent));
    let msg = assert_guard_refused(s.batch_execute("DELETE FROM orders WHERE id = 1"));
    assert!(msg.contains("DELETE on public.orders"), "{msg}");
    run_ok(&mut s, "reset role", "RESET ROLE");
    assert_eq!(orders_rows(&w.protected), 10);
    assert_eq!(
        s.execute("DELETE FROM orders WHERE id = 1", &[]).unwrap(),
        1
    );
}

// ---------------------------------------------------------------------------
// Roles are cluster-wide: an agent may not change them, in any database.
// ---------------------------------------------------------------------------

/// Each role change an agent can make without CREATEROLE (which it may not
/// hold at all: see tests/credentials.rs): with ADMIN OPTION on a group it
/// can grant and revoke it, and any role can change its own password and
/// per-role settings. A human with the same grants makes every one of them;
/// the agent is refused in the protected database, in the open one (in
/// shadow mode), and nothing changes. CREATE ROLE is refused by the guard
/// before PostgreSQL's own privilege check.
#[test]
fn role_changes_refused_for_agents_in_every_database() {
    let w = World::new("roles");
    let mut su = admin("postgres");
    let human = unique("roles_human");
    let group = unique("roles_group");
    let member = unique("roles_member");
    let fresh = unique("roles_fresh");
    for sql in [
        format!("CREATE ROLE {human} LOGIN PASSWORD 'before'"),
        format!("CREATE ROLE {group} NOLOGIN"),
        format!("CREATE ROLE {member} NOLOGIN"),
        format!("GRANT {group} TO {}, {human} WITH ADMIN OPTION", w.agent),
        // Recorded as the human's grant: from PostgreSQL 16 on, a REVOKE
        // removes only the grants its role made, and the human's control
        // run below must be able to revoke it.
        format!("GRANT {group} TO {member} GRANTED BY {human}"),
    ] {
        su.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }
    // The open database in shadow mode: refusals are only recorded there,
    // but not for a rule about the cluster-wide role graph.
    su.batch_execute(&format!(
        "ALTER DATABASE {} SET ai_agent_safety.mode = 'audit'",
        w.open
    ))
    .unwrap();
    let attacks = |actor: &str| {
        vec![
            format!("GRANT {group} TO {fresh}_target"),
            format!("REVOKE {group} FROM {member}"),
            format!("ALTER ROLE {actor} PASSWORD 'after'"),
            format!("ALTER ROLE {actor} SET work_mem = '1MB'"),
        ]
    };
    su.batch_execute(&format!("CREATE ROLE {fresh}_target NOLOGIN"))
        .unwrap();
    let state = |c: &mut Client, actor: &str| -> (bool, bool, bool) {
        let r = c
            .query_one(
                &format!(
                    "SELECT pg_has_role('{member}', '{group}', 'MEMBER'),
                            pg_has_role('{fresh}_target', '{group}', 'MEMBER'),
                            EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                                     WHERE r.rolname = '{actor}')"
                ),
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    for db in [&w.protected, &w.open] {
        let mut a = w.agent_in(db);
        for stmt in attacks(&w.agent)
            .into_iter()
            .chain([format!("CREATE ROLE {fresh}_agent")])
        {
            let msg = assert_refused(a.batch_execute(&stmt));
            assert!(
                msg.contains("may not create, alter, drop or grant roles")
                    && msg.contains("refused in every database"),
                "{stmt} in {db}: {msg}"
            );
        }
        assert_eq!(
            state(&mut su, &w.agent),
            (true, false, false),
            "nothing changed"
        );
    }
    // The refusals are in the audit log as refusals, shadow mode included.
    let mut audit = admin(&w.open);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = count(
            &mut audit,
            &format!(
                "SELECT count(*) FROM ai_agent_safety.audit_log
                  WHERE session_user_name = '{}' AND decision = 'refuse'
                    AND reason LIKE '%may not create, alter, drop or grant roles%'",
                w.agent
            ),
        );
        if n == 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "5 refusals audited, found {n}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A human with the same grants: PostgreSQL allows every one.
    let mut h = connect(&human, &w.open);
    for stmt in attacks(&human) {
        h.batch_execute(&stmt)
            .unwrap_or_else(|e| panic!("human: {stmt}: {}", describe(&e)));
    }
    assert_eq!(state(&mut su, &human), (false, true, true));
}

/// The agent group and the approver group cannot be renamed or dropped by
/// anyone, superusers included, while the library is loaded: a group under
/// another name switches the guard off for all its members.
#[test]
fn the_agent_and_approver_groups_cannot_be_renamed_or_dropped() {
    let mut su = admin("postgres");
    let group = unique("groups_team");
    let bot = unique("groups_bot");
    let until = in_one_hour(&mut su);
    su.batch_execute(&format!(
        "CREATE ROLE {group} NOLOGIN; CREATE ROLE {bot} LOGIN IN ROLE {group} VALID UNTIL '{until}'"
    ))
    .unwrap();
    // In this session the agent group is {group}. The attack's effect: the
    // same members, looked up under another name, are no agents at all.
    su.batch_execute(&format!("SET ai_agent_safety.agent_role = '{group}'"))
        .unwrap();
    let is_agent = |c: &mut Client| -> bool {
        c.query_one(
            &format!("SELECT ai_agent_safety.role_is_agent('{bot}'::regrole)"),
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert!(is_agent(&mut su));
    su.batch_execute(&format!(
        "SET ai_agent_safety.agent_role = '{group}_renamed'"
    ))
    .unwrap();
    assert!(
        !is_agent(&mut su),
        "under another name the group makes no agents"
    );
    su.batch_execute(&format!("SET ai_agent_safety.agent_role = '{group}'"))
        .unwrap();
    // So renaming or dropping it is refused, for a superuser too.
    for stmt in [
        format!("ALTER ROLE {group} RENAME TO {group}_renamed"),
        format!("DROP ROLE {group}"),
        format!("DROP ROLE IF EXISTS {group}"),
    ] {
        let msg = assert_refused(su.batch_execute(&stmt));
        assert!(
            msg.contains(&format!(
                "{group} is the agent group (ai_agent_safety.agent_role)"
            )) && msg.contains("ALTER SYSTEM SET ai_agent_safety.agent_role"),
            "{stmt}: {msg}"
        );
    }
    for stmt in [
        "ALTER ROLE ai_agent_approver RENAME TO approvers",
        "DROP ROLE ai_agent_approver",
    ] {
        let msg = assert_refused(su.batch_execute(stmt));
        assert!(
            msg.contains("ai_agent_approver is the approver group"),
            "{stmt}: {msg}"
        );
    }
    assert!(is_agent(&mut su));
    // Once another group is the agent group, this one is an ordinary role.
    su.batch_execute("RESET ai_agent_safety.agent_role")
        .unwrap();
    su.batch_execute(&format!(
        "ALTER ROLE {group} RENAME TO {group}_renamed; DROP ROLE {bot}; DROP ROLE {group}_renamed"
    ))
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
}

// ---------------------------------------------------------------------------
// Destruction not spelled DROP, DELETE or TRUNCATE (classified by effect).
// Each form: it destroys or hides data in the open database, and is refused
// in the protected one (ALTER forms when ALTER is listed, as for the other
// ALTER forms).
// ---------------------------------------------------------------------------

#[test]
fn set_unlogged_refused_when_alter_listed() {
    Form {
        tag: "unlogged",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        stmt: "ALTER TABLE orders SET UNLOGGED",
        probe: "SELECT count(*) FROM pg_class WHERE relname = 'orders' AND relpersistence = 'u'",
        intact: 0,
        done: 1,
        says: &["ALTER TABLE public.orders SET UNLOGGED"],
        ..Form::default()
    }
    .check();
}

#[test]
fn no_inherit_refused_when_alter_listed() {
    Form {
        tag: "noinherit",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        setup: "CREATE TABLE parent_t (id int); CREATE TABLE child_t () INHERITS (parent_t);
                INSERT INTO child_t VALUES (1), (2);",
        stmt: "ALTER TABLE child_t NO INHERIT parent_t",
        probe: "SELECT count(*) FROM parent_t",
        intact: 2,
        done: 0,
        says: &["ALTER TABLE public.child_t NO INHERIT"],
        ..Form::default()
    }
    .check();
}

#[test]
fn enable_row_level_security_refused_when_alter_listed() {
    Form {
        tag: "rls",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        stmt: "ALTER TABLE orders ENABLE ROW LEVEL SECURITY",
        probe: "SELECT count(*) FROM pg_class WHERE relname = 'orders' AND relrowsecurity",
        intact: 0,
        done: 1,
        says: &["ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY"],
        ..Form::default()
    }
    .check();
}

/// ALTER INDEX (or SEQUENCE) on a table renames the table.
#[test]
fn alter_index_rename_of_a_table_refused_when_alter_listed() {
    Form {
        tag: "idxren",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        stmt: "ALTER INDEX orders RENAME TO orders_old",
        probe: TABLE_EXISTS,
        intact: 1,
        done: 0,
        says: &["ALTER INDEX public.orders RENAME TO orders_old"],
        ..Form::default()
    }
    .check();
}

#[test]
fn alter_type_rename_attribute_refused_when_alter_listed() {
    Form {
        tag: "attren",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        setup: "CREATE TYPE pair AS (a int, b int)",
        stmt: "ALTER TYPE pair RENAME ATTRIBUTE a TO x",
        probe:
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'pair'::regclass AND attname = 'a'",
        intact: 1,
        done: 0,
        says: &["ALTER TYPE public.pair RENAME ATTRIBUTE a TO x"],
        ..Form::default()
    }
    .check();
}

#[test]
fn alter_type_rename_value_refused_when_alter_listed() {
    Form {
        tag: "enumren",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        setup: "CREATE TYPE mood AS ENUM ('ok', 'bad')",
        stmt: "ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'",
        probe: "SELECT count(*) FROM pg_enum WHERE enumlabel = 'ok'",
        intact: 1,
        done: 0,
        says: &["ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'"],
        ..Form::default()
    }
    .check();
}

#[test]
fn alter_sequence_restart_refused_when_alter_listed() {
    Form {
        tag: "seqrestart",
        settings: ALTER_LISTED,
        agent_acts_for_owner: true,
        setup: "CREATE SEQUENCE ids; SELECT nextval('ids'); SELECT nextval('ids');",
        stmt: "ALTER SEQUENCE ids RESTART",
        probe: "SELECT last_value FROM ids",
        intact: 2,
        done: 1,
        says: &["ALTER SEQUENCE public.ids RESTART"],
        ..Form::default()
    }
    .check();
}

/// A DO INSTEAD NOTHING rule loses every future write.
#[test]
fn create_rule_do_instead_refused_when_alter_listed() {
    // On its own table: a rule on a table a role that is not an agent owns
    // is refused everywhere (tests/agent_code.rs).
    let w = World::with_settings("instead", ALTER_LISTED);
    let stmt = "CREATE RULE swallow AS ON INSERT TO public.inbox DO INSTEAD NOTHING";
    let rules = "SELECT count(*) FROM pg_rules WHERE tablename = 'inbox'";
    for db in [&w.protected, &w.open] {
        run_ok(
            &mut w.agent_in(db),
            "setup",
            "CREATE TABLE public.inbox (x int)",
        );
    }
    let msg = assert_guard_refused(w.agent_in(&w.protected).batch_execute(stmt));
    assert!(
        msg.contains("CREATE RULE DO INSTEAD ON public.inbox"),
        "{msg}"
    );
    assert_eq!(probe(&w, &w.protected, rules), 0);
    run_ok(&mut w.agent_in(&w.open), "open", stmt);
    assert_eq!(probe(&w, &w.open, rules), 1);
}

/// CREATE OR REPLACE over an existing view or function is a DROP in all but
/// name: the old definition is gone.
#[test]
fn create_or_replace_view_refused() {
    Form {
        tag: "replview",
        agent_acts_for_owner: true,
        setup: "CREATE VIEW v AS SELECT id FROM orders",
        stmt: "CREATE OR REPLACE VIEW v AS SELECT id FROM orders WHERE false",
        probe: "SELECT count(*) FROM v",
        intact: 10,
        done: 0,
        says: &[
            "CREATE OR REPLACE VIEW public.v",
            "request_approval_token('DROP'",
        ],
        ..Form::default()
    }
    .check();
}

#[test]
fn create_or_replace_function_refused() {
    Form {
        tag: "replfunc",
        agent_acts_for_owner: true,
        setup: "CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT $1'",
        stmt: "CREATE OR REPLACE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT 0'",
        probe: "SELECT f(5)::bigint",
        intact: 5,
        done: 0,
        says: &["CREATE OR REPLACE FUNCTION public.f(integer)"],
        ..Form::default()
    }
    .check();
}

#[test]
fn refresh_materialized_view_with_no_data_refused() {
    Form {
        tag: "nodata",
        agent_acts_for_owner: true,
        setup: "CREATE MATERIALIZED VIEW mv AS SELECT id FROM orders",
        stmt: "REFRESH MATERIALIZED VIEW mv WITH NO DATA",
        probe: "SELECT count(*) FROM pg_matviews WHERE matviewname = 'mv' AND ispopulated",
        intact: 1,
        done: 0,
        says: &["REFRESH MATERIALIZED VIEW public.mv WITH NO DATA"],
        ..Form::default()
    }
    .check();
}

/// Switching a database's connections off or renaming it puts it out of
/// reach as surely as dropping it: decided like DROP DATABASE, by that
/// database's own settings, from wherever the agent runs it.
#[test]
fn making_a_database_unreachable_is_decided_like_drop_database() {
    let w = World::new("unreach");
    agent_acts_for_owner(&w);
    let mut a = w.agent_in(&w.open);
    for stmt in [
        format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", w.protected),
        format!("ALTER DATABASE {} CONNECTION LIMIT 0", w.protected),
        format!(
            "ALTER DATABASE {} RENAME TO {}_gone",
            w.protected, w.protected
        ),
    ] {
        let msg = assert_guard_refused(a.batch_execute(&stmt));
        assert!(
            msg.contains(&format!("ALTER DATABASE {}", w.protected))
                && msg.contains(&format!("'DATABASE {}'", w.protected)),
            "{stmt}: {msg}"
        );
    }
    assert!(
        try_connect(&w.owner, &w.protected).is_ok(),
        "still reachable"
    );
    // The open database protects nothing: there it works.
    let mut p = w.agent_in(&w.protected);
    run_ok(
        &mut p,
        "limit the open database",
        &format!("ALTER DATABASE {} CONNECTION LIMIT 0", w.open),
    );
    assert_eq!(
        count(
            &mut admin("postgres"),
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{}' AND datconnlimit = 0",
                w.open
            )
        ),
        1
    );
}

/// COPY ... FROM is a write: the task-environment rule refuses it outside
/// the task's environment, like INSERT.
#[test]
fn copy_from_is_a_write() {
    let w = World::with_settings("copyfrom", &[("ai_agent_safety.environment", "production")]);
    run_ok(
        &mut admin("postgres"),
        "scope",
        &format!(
            "ALTER ROLE {} SET ai_agent_safety.allowed_environments = 'production'",
            w.agent
        ),
    );
    let mut a = try_connect_with(
        &w.agent,
        &w.protected,
        "-c ai_agent_safety.task_environment=development",
    )
    .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let e = match a.copy_in("COPY orders (id, note) FROM STDIN") {
        Ok(_) => panic!("COPY FROM must be refused"),
        Err(e) => e,
    };
    let msg = describe(&e);
    assert!(
        msg.contains("COPY ... FROM refused") && msg.contains("declared environment development"),
        "{msg}"
    );
    assert_eq!(orders_rows(&w.protected), 10);
}

/// A procedure's OUT arguments are part of its signature: CREATE OR REPLACE
/// over one with OUT arguments replaces it, a DROP in all but name.
#[test]
fn create_or_replace_procedure_with_out_arguments_refused() {
    Form {
        tag: "replproc",
        agent_acts_for_owner: true,
        setup: "CREATE PROCEDURE p(OUT x int) LANGUAGE plpgsql AS $$ BEGIN x := 5; END $$",
        stmt:
            "CREATE OR REPLACE PROCEDURE p(OUT x int) LANGUAGE plpgsql AS $$ BEGIN x := 0; END $$",
        probe: "SELECT count(*) FROM pg_proc WHERE proname = 'p' AND prosrc LIKE '%x := 5%'",
        intact: 1,
        done: 0,
        says: &["CREATE OR REPLACE PROCEDURE public.p"],
        ..Form::default()
    }
    .check();
}

/// Destructive forms PostgreSQL 17 and 18 added: MERGE's `WHEN NOT MATCHED
/// BY SOURCE THEN DELETE`, MERGE with RETURNING, MERGE in a WITH (17),
/// `RETURNING old.*` (18), and a MAINTAIN grant's `REFRESH MATERIALIZED
/// VIEW ... WITH NO DATA` (17). Each deletes where nothing is protected,
/// and is refused where DELETE (or TRUNCATE) is.
#[test]
fn destructive_forms_new_in_postgresql_17_and_18_are_refused() {
    let w = World::new("newforms");
    let major = server_major(&mut admin("postgres"));
    if major < 17 {
        assert_not_a_statement_here(
            &mut w.agent_in(&w.open),
            "MERGE INTO public.orders o USING (SELECT 1 AS id) s ON o.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
        );
        return;
    }
    let mut forms = vec![
        "MERGE INTO public.orders o USING (SELECT 1 AS id) s ON o.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
        "MERGE INTO public.orders o USING (SELECT 2 AS id) s ON o.id = s.id WHEN MATCHED THEN DELETE RETURNING merge_action(), o.id",
        "WITH m AS (MERGE INTO public.orders o USING (SELECT 3 AS id) s ON o.id = s.id WHEN MATCHED THEN DELETE RETURNING o.id) SELECT * FROM m",
    ];
    if major >= 18 {
        forms.push("DELETE FROM public.orders WHERE id = 4 RETURNING old.id, old.note");
    }
    let rows = |db: &str| count(&mut admin(db), "SELECT count(*) FROM public.orders");
    for form in forms {
        for db in [&w.protected, &w.open] {
            admin(db)
                .batch_execute(
                    "TRUNCATE public.orders; INSERT INTO public.orders SELECT g, 'order ' || g FROM generate_series(1, 10) g",
                )
                .unwrap();
        }
        w.agent_in(&w.open)
            .batch_execute(form)
            .unwrap_or_else(|e| panic!("{form}: {}", describe(&e)));
        assert!(
            rows(&w.open) < 10,
            "{form} deletes where nothing is protected"
        );
        let msg = assert_refused(w.agent_in(&w.protected).batch_execute(form));
        assert!(
            msg.contains("DELETE") && msg.contains("public.orders"),
            "{form}: {msg}"
        );
        assert_eq!(rows(&w.protected), 10, "{form}");
    }
    // MAINTAIN (17): the owner lets the agent maintain a materialized view.
    let populated = |db: &str| {
        count(
            &mut admin(db),
            "SELECT count(*) FROM pg_class WHERE relname = 'order_totals' AND relispopulated",
        )
    };
    for db in [&w.protected, &w.open] {
        w.owner_in(db)
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW public.order_totals AS SELECT count(*) AS n FROM public.orders;
                 GRANT MAINTAIN ON public.order_totals TO {}",
                w.agent
            ))
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
    }
    let empty_it = "REFRESH MATERIALIZED VIEW public.order_totals WITH NO DATA";
    w.agent_in(&w.open)
        .batch_execute(empty_it)
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(populated(&w.open), 0, "emptied where nothing is protected");
    assert_refused(w.agent_in(&w.protected).batch_execute(empty_it));
    assert_eq!(populated(&w.protected), 1);
}
