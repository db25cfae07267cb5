//! A connection from another node of a distributed cluster (Citus): what
//! it sends as it is was judged by the guard of the node it came from, so a
//! worker lets it through without a token of its own. A connection is a
//! node's only when its client presented the certificate
//! `ai_agent_safety.cluster_node_certificate` names, signed by the server's
//! CA: the agent's own connections, with another certificate of that CA,
//! with a look-alike from another CA, or with none, are judged as ever.
//! (Citus itself is not in CI's registries: `scripts/citus-check` runs the
//! same trust on a real three-node cluster.)

use aas_integration::*;
use std::path::Path;
use std::process::Command;

const NAME: &str = "clusternode";
const PORT: u16 = 55483;
const NODE_DN: &str = "/CN=aas-test-node";
const DIR: &str = "/tmp/aas-clusternode-certs";

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(DIR)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key and a certificate for `cn` (in DIR, `<file>.key`, `<file>.crt`),
/// signed by the CA `ca` (`<ca>.key`, `<ca>.crt`).
fn certificate(file: &str, cn: &str, ca: &str) {
    let (key, csr, crt) = (
        format!("{file}.key"),
        format!("{file}.csr"),
        format!("{file}.crt"),
    );
    let subj = format!("/CN={cn}");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        &subj,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &format!("{ca}.crt"),
        "-CAkey",
        &format!("{ca}.key"),
        "-CAcreateserial",
        "-out",
        &crt,
        "-days",
        "2",
    ]);
    std::fs::set_permissions(
        Path::new(DIR).join(&key),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
}

fn authority(file: &str, cn: &str) {
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &format!("{file}.key"),
        "-out",
        &format!("{file}.crt"),
        "-days",
        "2",
        "-subj",
        &format!("/CN={cn}"),
    ]);
}

/// The agent's statements over TCP with SSL, presenting `cert` (a file stem
/// in DIR) or no certificate: psql's output and errors, verbose.
fn as_agent(cert: Option<&str>, sql: &str) -> String {
    let mut conn = format!(
        "host=127.0.0.1 port={PORT} dbname=cn_prod user=cn_agent password=cn-secret sslmode=require"
    );
    match cert {
        Some(c) => conn += &format!(" sslcert={DIR}/{c}.crt sslkey={DIR}/{c}.key"),
        // No ~/.postgresql/postgresql.crt either.
        None => conn += " sslcert=/nonexistent sslkey=/nonexistent",
    }
    let out = Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", &conn])
        .env("PGOPTIONS", "-c ai_agent_safety.task_id=cn-task")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("\\set VERBOSITY verbose\n{sql}\n").as_bytes())?;
            child.wait_with_output()
        })
        .expect("psql");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn rows(su: &mut postgres::Client) -> i64 {
    count(su, "SELECT count(*) FROM public.orders")
}

#[test]
fn only_the_clusters_node_certificate_carries_statements_another_node_judged() {
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(DIR).unwrap();
    authority("ca", "aas test CA");
    certificate("server", "127.0.0.1", "ca");
    certificate("node", "aas-test-node", "ca");
    certificate("other", "aas-test-other", "ca");
    authority("rogue-ca", "aas rogue CA");
    certificate("rogue", "aas-test-node", "rogue-ca");
    run_lib_sh(&format!(
        "chown postgres {DIR}/server.key && cp {DIR}/ca.crt {DIR}/root.crt && chmod 755 {DIR}"
    ));
    let _guard = StopCluster(NAME);
    run_lib_sh(&format!(
        "cluster_start {NAME} {PORT} 'ssl = on' \"ssl_cert_file = '{DIR}/server.crt'\" \
         \"ssl_key_file = '{DIR}/server.key'\" \"ssl_ca_file = '{DIR}/ca.crt'\" \
         'max_prepared_transactions = 2'"
    ));
    let mut su = connect_port(PORT, "postgres", "postgres");
    let until = in_one_hour(&mut su);
    su.batch_execute(&format!(
        "CREATE EXTENSION ai_agent_safety;
         CREATE ROLE cn_agent LOGIN PASSWORD 'cn-secret' IN ROLE ai_agent VALID UNTIL '{until}';"
    ))
    .unwrap();
    su.batch_execute("CREATE DATABASE cn_prod").unwrap();
    su.batch_execute("ALTER DATABASE cn_prod SET ai_agent_safety.require_approval = on")
        .unwrap();
    let mut su = connect_port(PORT, "postgres", "cn_prod");
    su.batch_execute(
        "CREATE EXTENSION ai_agent_safety;
         CREATE TABLE public.orders (id int PRIMARY KEY);
         INSERT INTO public.orders SELECT generate_series(1, 10);
         GRANT ALL ON public.orders TO cn_agent;
         GRANT CREATE ON SCHEMA public TO cn_agent;
         ALTER TABLE public.orders OWNER TO cn_agent;",
    )
    .unwrap();
    let delete = "DELETE FROM public.orders WHERE id = 1;";

    // No setting: every certificate is the agent's own, judged as ever.
    let out = as_agent(Some("node"), delete);
    assert!(
        out.contains("ERROR:  42501") && out.contains("needs an approval token"),
        "{out}"
    );
    assert_eq!(rows(&mut su), 10);

    su.batch_execute(&format!(
        "ALTER SYSTEM SET ai_agent_safety.cluster_node_certificate = '{NODE_DN}'"
    ))
    .unwrap();
    su.batch_execute("SELECT pg_reload_conf()").unwrap();
    // Settings reach new sessions once reloaded: this one waits for it.
    let start = std::time::Instant::now();
    while connect_port(PORT, "postgres", "cn_prod")
        .query_one(
            "SELECT current_setting('ai_agent_safety.cluster_node_certificate')",
            &[],
        )
        .unwrap()
        .get::<_, String>(0)
        != NODE_DN
    {
        assert!(
            start.elapsed().as_secs() < 30,
            "the reload never reached new sessions"
        );
    }

    // The agent's own connections: no certificate, another certificate of
    // the same CA, a look-alike from another CA (the handshake fails).
    let out = as_agent(None, delete);
    assert!(
        out.contains("ERROR:  42501") && out.contains("needs an approval token"),
        "{out}"
    );
    let out = as_agent(Some("other"), delete);
    assert!(
        out.contains("ERROR:  42501") && out.contains("needs an approval token"),
        "{out}"
    );
    let out = as_agent(Some("rogue"), delete);
    assert!(
        out.contains("unknown ca") && !out.contains("DELETE 1"),
        "{out}"
    );
    assert_eq!(rows(&mut su), 10);

    // The node's connection: its DELETE was judged where it came from.
    let out = as_agent(Some("node"), delete);
    assert!(!out.contains("ERROR"), "{out}");
    assert_eq!(rows(&mut su), 9);
    // ... and kept in this node's recycle bin all the same.
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM ai_agent_safety.recycle_bin WHERE kind = 'delete' AND rows = 1"
        ),
        1
    );
    // A distributed transaction's two-phase commit.
    let out = as_agent(
        Some("node"),
        "BEGIN; DELETE FROM public.orders WHERE id = 2; PREPARE TRANSACTION 'cn_gid'; COMMIT PREPARED 'cn_gid';",
    );
    assert!(!out.contains("ERROR"), "{out}");
    assert_eq!(rows(&mut su), 8);
    // What its statements set off is judged here: a function the agent
    // owns deletes inside a statement the node sent.
    let out = as_agent(
        Some("node"),
        "CREATE FUNCTION public.sweep() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DELETE FROM public.orders WHERE id = 3; END $$;
         SELECT public.sweep();",
    );
    assert!(
        out.contains("ERROR:  42501") && out.contains("needs an approval token"),
        "{out}"
    );
    assert_eq!(rows(&mut su), 8);
    // Nor does a query run through a portal of its own look like the one
    // the node sent (such a portal carries its query's own text): a
    // PL/pgSQL FOR loop over DELETE ... RETURNING, from a function, a
    // procedure, or a trigger the node's own DELETE sets off; SQL EXECUTE
    // of a prepared DELETE, from a function or sent by the node itself.
    let out = as_agent(
        Some("node"),
        "CREATE FUNCTION public.loop_sweep() RETURNS void LANGUAGE plpgsql AS $$
           DECLARE r record; BEGIN FOR r IN DELETE FROM public.orders WHERE id = 3 RETURNING id LOOP END LOOP; END $$;
         CREATE PROCEDURE public.loop_proc() LANGUAGE plpgsql AS $$
           DECLARE r record; BEGIN FOR r IN EXECUTE 'DELETE FROM public.orders WHERE id = 3 RETURNING id' LOOP END LOOP; END $$;
         CREATE FUNCTION public.exec_sweep() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'EXECUTE gone'; END $$;
         CREATE TABLE public.marks (id int);
         CREATE FUNCTION public.loop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
           DECLARE r record; BEGIN FOR r IN DELETE FROM public.orders WHERE id = 3 RETURNING id LOOP END LOOP; RETURN OLD; END $$;
         CREATE TRIGGER loop_trigger AFTER DELETE ON public.marks FOR EACH ROW EXECUTE FUNCTION public.loop_trigger();
         INSERT INTO public.marks VALUES (1);",
    );
    assert!(!out.contains("ERROR"), "{out}");
    for sql in [
        "SELECT public.loop_sweep();",
        "CALL public.loop_proc();",
        "PREPARE gone AS DELETE FROM public.orders WHERE id = 3; SELECT public.exec_sweep();",
        "PREPARE gone AS DELETE FROM public.orders WHERE id = 3; EXECUTE gone;",
        "DELETE FROM public.marks;",
    ] {
        let out = as_agent(Some("node"), sql);
        assert!(
            out.contains("ERROR:  42501") && out.contains("needs an approval token"),
            "{sql}: {out}"
        );
    }
    assert_eq!(rows(&mut su), 8);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.marks"), 1);
    // Rules and views the agent made do not ride on the node's trust: a
    // rule's extra DELETE, an INSTEAD rule that turns a DELETE of its own
    // table into one of another, a DELETE through its view.
    let out = as_agent(
        Some("node"),
        "CREATE TABLE public.mine (id int); CREATE TABLE public.mine2 (id int);
         CREATE RULE also_orders AS ON INSERT TO public.mine DO ALSO DELETE FROM public.orders WHERE id = 4;
         CREATE RULE instead_orders AS ON DELETE TO public.mine2 DO INSTEAD DELETE FROM public.orders WHERE id = 5;
         CREATE VIEW public.orders_view AS SELECT * FROM public.orders;",
    );
    assert!(!out.contains("ERROR"), "{out}");
    for sql in [
        "INSERT INTO public.mine VALUES (1);",
        "DELETE FROM public.mine2;",
        "DELETE FROM public.orders_view WHERE id = 6;",
    ] {
        let out = as_agent(Some("node"), sql);
        assert!(
            out.contains("ERROR:  42501") && out.contains("needs an approval token"),
            "{sql}: {out}"
        );
    }
    // A node's TRUNCATE or DROP of a table is judged here: Citus sends
    // those for its own functions too, which judge nothing destructive.
    for sql in ["TRUNCATE public.orders;", "DROP TABLE public.orders;"] {
        let out = as_agent(Some("node"), sql);
        assert!(
            out.contains("ERROR:  42501") && out.contains("needs an approval token"),
            "{sql}: {out}"
        );
    }
    assert_eq!(rows(&mut su), 8);
    // Each let-through is in the audit log, with why: the two DELETEs, the
    // two-phase commit, and the DELETE of public.marks whose trigger was
    // refused (audit events outlive their statement's rollback).
    wait_for_count(
        &mut su,
        "SELECT count(*) FROM ai_agent_safety.audit_log WHERE session_user_name = 'cn_agent' \
         AND decision = 'allow' AND reason LIKE '%sent by another node of the cluster (certificate /CN=aas-test-node)%'",
        4,
    );
}
