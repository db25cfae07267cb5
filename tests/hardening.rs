//! Hardening: the extension trusts only its own objects. An agent that can
//! create a schema in a database where the extension is not created can name
//! it `ai_agent_safety` and fill it with look-alike tables and views whose
//! triggers and functions would run as whoever reads or writes them. The
//! extension's token lookup and its superuser audit writer must never touch
//! them, and CREATE EXTENSION must not adopt such a schema.

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
        format!("GRANT CREATE ON DATABASE {db} TO {}", w.agent),
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
    agent
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

    // CREATE EXTENSION refuses to adopt the schema the agent made.
    let e = su
        .batch_execute("CREATE EXTENSION ai_agent_safety")
        .expect_err("CREATE EXTENSION must refuse a schema it did not make");
    let text = describe(&e);
    assert!(
        text.contains("schema ai_agent_safety already exists")
            && text.contains(&w.agent)
            && text.contains("ALTER SCHEMA ai_agent_safety RENAME TO ai_agent_safety_old;"),
        "{text}"
    );
    // Following the hint, it installs.
    su.batch_execute("ALTER SCHEMA ai_agent_safety RENAME TO ai_agent_safety_old; CREATE EXTENSION ai_agent_safety")
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(ran_as(&mut su), Vec::<(String, String)>::new());
}
