//! The guard (issue: agents cannot DROP, DELETE or TRUNCATE in a database that
//! requires approval). Each statement form: refused for the agent in the
//! protected database with nothing changed, allowed in the open database, never
//! refused for a non-agent.

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
