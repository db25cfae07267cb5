use crate::versions::{served, NotServed, OLDEST_SQL_SERVED};

#[test]
fn a_library_serves_its_own_version_and_older_ones_down_to_the_oldest() {
    assert_eq!(served("0.2.0", "0.2.0"), Ok(()));
    assert_eq!(served("0.2.0", OLDEST_SQL_SERVED), Ok(()));
    assert_eq!(served("0.10.0", "0.9.0"), Ok(()), "numeric, not text order");
}

#[test]
fn older_objects_ask_for_an_update_and_newer_ones_for_the_library() {
    let e = served("0.2.0", "0.0.9").unwrap_err();
    assert!(matches!(e, NotServed::Older { .. }));
    assert!(e
        .reason()
        .contains("at version 0.0.9, older than the loaded library 0.2.0 serves"));
    assert_eq!(
        e.hint(),
        "A DBA must run ALTER EXTENSION ai_agent_safety UPDATE; in this database."
    );
    let e = served("0.2.0", "0.3.0").unwrap_err();
    assert!(matches!(e, NotServed::Newer { .. }));
    assert!(e.hint().contains("library of version 0.3.0"));
}

#[test]
fn an_unreadable_version_is_not_served() {
    for v in ["", "x", "1.a", "0.2.0-beta"] {
        assert!(
            matches!(served("0.2.0", v), Err(NotServed::Older { .. })),
            "{v}"
        );
    }
}
