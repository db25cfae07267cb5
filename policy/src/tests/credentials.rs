//! Tests for `credentials.rs`.

use super::*;
use crate::credentials::{human_duration, parse_list};

// ---------------------------------------------------------------------------
// credentials
// ---------------------------------------------------------------------------

const HOUR_US: i64 = 3600 * SECOND_US;

fn login(is_agent: bool, is_superuser: bool, until: Option<i64>) -> LoginFacts {
    LoginFacts {
        role: "agent_bot".into(),
        is_agent,
        is_superuser,
        valid_until_us: until,
        valid_until_text: until.map(|_| "2025-05-09 13:00:00+00".to_string()),
        dangerous: Vec::new(),
    }
}

#[test]
fn check_login_refuses_privileges_that_reach_around_the_guard() {
    let mut f = login(true, false, Some(NOW + HOUR_US / 2));
    f.dangerous = vec![
        HeldPrivilege {
            privilege: "CREATEROLE".into(),
            via: None,
        },
        HeldPrivilege {
            privilege: "pg_execute_server_program".into(),
            via: None,
        },
        HeldPrivilege {
            privilege: "BYPASSRLS".into(),
            via: Some("Admins".into()),
        },
    ];
    let e = check_login(&f, NOW, HOUR_US).unwrap_err();
    assert_eq!(
        e,
        "agent role \"agent_bot\" holds CREATEROLE, pg_execute_server_program, BYPASSRLS (through role \"Admins\"), which an agent must never hold: it reaches around ai_agent_safety"
    );
    assert_eq!(
        login_hint(&f),
        "A DBA takes it away: ALTER ROLE agent_bot NOCREATEROLE; REVOKE pg_execute_server_program FROM agent_bot; REVOKE \"Admins\" FROM agent_bot;"
    );
    // Without them, the usual hint.
    assert_contains(
        &login_hint(&login(true, false, None)),
        "ai_agent_safety.issue_agent_credentials('agent_bot'::name, '1 hour'::interval)",
    );
    // A human's privileges are not the extension's business.
    let mut human = f.clone();
    human.is_agent = false;
    assert_eq!(check_login(&human, NOW, HOUR_US), Ok(()));
}

#[test]
fn check_login_non_agent_always_ok() {
    for f in [
        login(false, false, None),
        login(false, true, None),
        login(false, false, Some(NOW - HOUR_US)),
        login(false, true, Some(NOW + 1000 * HOUR_US)),
    ] {
        assert_eq!(check_login(&f, NOW, HOUR_US), Ok(()));
    }
}

#[test]
fn check_login_superuser_agent_refused() {
    let e = check_login(&login(true, true, Some(NOW + HOUR_US / 2)), NOW, HOUR_US).unwrap_err();
    assert_contains(&e, "agent role \"agent_bot\" is a superuser");
}

#[test]
fn check_login_no_expiry_refused() {
    let e = check_login(&login(true, false, None), NOW, HOUR_US).unwrap_err();
    assert_contains(&e, "has no credential expiry");
    assert_contains(&e, "VALID UNTIL");
}

#[test]
fn check_login_expired_refused() {
    let e = check_login(&login(true, false, Some(NOW - 1)), NOW, HOUR_US).unwrap_err();
    assert_contains(&e, "expired at 2025-05-09 13:00:00+00");
    // Exactly now counts as expired.
    let e = check_login(&login(true, false, Some(NOW)), NOW, HOUR_US).unwrap_err();
    assert_contains(&e, "expired at");
}

#[test]
fn check_login_too_far_ahead_refused() {
    let e = check_login(&login(true, false, Some(NOW + HOUR_US + 1)), NOW, HOUR_US).unwrap_err();
    assert_contains(
        &e,
        "further ahead than ai_agent_safety.max_credential_lifetime (1h)",
    );
    assert_contains(&e, "this counts as no expiry");
}

#[test]
fn check_login_valid_ok() {
    assert_eq!(
        check_login(&login(true, false, Some(NOW + 1)), NOW, HOUR_US),
        Ok(())
    );
    assert_eq!(
        check_login(&login(true, false, Some(NOW + HOUR_US / 2)), NOW, HOUR_US),
        Ok(())
    );
    // Exactly the maximum lifetime is accepted.
    assert_eq!(
        check_login(&login(true, false, Some(NOW + HOUR_US)), NOW, HOUR_US),
        Ok(())
    );
}

#[test]
fn human_duration_units() {
    assert_eq!(human_duration(HOUR_US), "1h");
    assert_eq!(human_duration(24 * HOUR_US), "24h");
    assert_eq!(human_duration(30 * 60 * SECOND_US), "30min");
    assert_eq!(human_duration(90 * SECOND_US), "90s");
}

#[test]
fn environment_in_scope_truth_table() {
    let scope: Vec<String> = vec!["development".into(), "staging".into()];
    let empty: Vec<String> = vec![];
    // Unlabelled databases are always in scope.
    assert!(environment_in_scope(None, None));
    assert!(environment_in_scope(Some(&scope), None));
    assert!(environment_in_scope(Some(&empty), None));
    // No scope: no labelled database.
    assert!(!environment_in_scope(None, Some("development")));
    assert!(!environment_in_scope(Some(&empty), Some("development")));
    // Scope: exactly the listed ones (case-sensitive).
    assert!(environment_in_scope(Some(&scope), Some("development")));
    assert!(environment_in_scope(Some(&scope), Some("staging")));
    assert!(!environment_in_scope(Some(&scope), Some("production")));
    assert!(!environment_in_scope(Some(&scope), Some("Development")));
}

#[test]
fn check_connect_environment_ok_and_err() {
    let scope: Vec<String> = vec!["development".into()];
    assert_eq!(
        check_connect_environment("agent_bot", Some(&scope), "dev", Some("development")),
        Ok(())
    );
    assert_eq!(
        check_connect_environment("agent_bot", None, "scratch", None),
        Ok(())
    );
    let e = check_connect_environment("agent_bot", Some(&scope), "sales", Some("production"))
        .unwrap_err();
    assert_contains(
        &e,
        "agent role \"agent_bot\" may not connect to database \"sales\"",
    );
    assert_contains(&e, "the database is environment production");
    assert_contains(&e, "allowed environments are development");

    let e = check_connect_environment("agent_bot", None, "sales", Some("production")).unwrap_err();
    assert_contains(&e, "environment production");
    assert_contains(&e, "none set (only databases without an environment label)");
}

#[test]
fn parse_list_entries() {
    assert_eq!(
        parse_list("development, staging"),
        vec!["development", "staging"]
    );
    assert_eq!(
        parse_list("  \"development\" ,staging,, "),
        vec!["development", "staging"]
    );
    assert!(parse_list("").is_empty());
    assert!(parse_list(" , ,").is_empty());
    assert_eq!(parse_list("production"), vec!["production"]);
}

#[test]
fn check_session_ends_expired_or_newly_privileged_sessions() {
    let ok = login(true, false, Some(NOW + HOUR_US));
    assert_eq!(check_session(&ok, NOW), Ok(()));
    let expired = login(true, false, Some(NOW));
    let (event, d) = check_session(&expired, NOW).unwrap_err();
    assert_eq!(event, EventKind::SessionExpired);
    assert_eq!(
        d.message,
        "credentials of agent role \"agent_bot\" expired at 2025-05-09 13:00:00+00; ending the session"
    );
    assert_eq!(
        d.detail,
        "Agent sessions do not outlive their credentials (VALID UNTIL)."
    );
    assert_eq!(
        d.hint,
        "A DBA can issue fresh credentials: SELECT ai_agent_safety.issue_agent_credentials('agent_bot'::name, '1 hour'::interval);"
    );
    let mut promoted = ok.clone();
    promoted.dangerous = vec![HeldPrivilege {
        privilege: "REPLICATION".into(),
        via: None,
    }];
    let (event, d) = check_session(&promoted, NOW).unwrap_err();
    assert_eq!(event, EventKind::SessionEnded);
    assert_contains(&d.message, "now holds REPLICATION");
    assert_eq!(
        d.hint,
        "A DBA takes it away: ALTER ROLE agent_bot NOREPLICATION;"
    );
    // No expiry set: PostgreSQL's login check is the place for that.
    assert_eq!(check_session(&login(true, false, None), NOW), Ok(()));
}
