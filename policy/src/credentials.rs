//! Credential rules for agent logins and open agent sessions: expiry,
//! superuser, and privileges that reach around the guard.

use crate::audit::{EventKind, Source};
use crate::outcome::Denial;

/// Facts about a role that is logging in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginFacts {
    pub role: String,
    pub is_agent: bool,
    pub is_superuser: bool,
    /// `rolvaliduntil` in microseconds since the PostgreSQL epoch; `None` when unset or infinity.
    pub valid_until_us: Option<i64>,
    pub valid_until_text: Option<String>,
    /// Privileges that reach around the guard, held directly or through a
    /// role the agent is a member of.
    pub dangerous: Vec<HeldPrivilege>,
}

/// A privilege an agent must never hold: SUPERUSER, CREATEROLE,
/// REPLICATION or BYPASSRLS (on the role itself or on a role it can become),
/// or membership in a predefined role that equals superuser
/// (`pg_execute_server_program`, `pg_write_server_files`,
/// `pg_read_server_files`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldPrivilege {
    /// `CREATEROLE`, `REPLICATION`, `BYPASSRLS`, `SUPERUSER`, or the
    /// predefined role's name.
    pub privilege: String,
    /// The role it comes through, when not the agent role itself.
    pub via: Option<String>,
}

/// The predefined roles whose members can run programs or read and write
/// files as the server (each a way to act as any role), or read or write
/// every table whatever its grants: the extension's own tables too (a
/// token written in as granted, the recycle bin's kept rows read).
pub const SUPERUSER_EQUIVALENT_ROLES: [&str; 6] = [
    "pg_execute_server_program",
    "pg_write_server_files",
    "pg_read_server_files",
    "pg_write_all_data",
    "pg_read_all_data",
    // PostgreSQL 16 and later: subscriptions, whose apply workers write
    // as their owner outside any session, and outlive its credentials.
    "pg_create_subscription",
];

impl HeldPrivilege {
    fn is_attribute(&self) -> bool {
        !SUPERUSER_EQUIVALENT_ROLES.contains(&self.privilege.as_str())
    }

    /// `CREATEROLE`, or `CREATEROLE (through role "admins")`.
    pub fn describe(&self) -> String {
        match &self.via {
            Some(v) => format!("{} (through role \"{v}\")", self.privilege),
            None => self.privilege.clone(),
        }
    }

    /// The SQL a DBA runs to take it away from `role`.
    pub fn take_away_sql(&self, role: &str) -> String {
        let role = quote_ident(role);
        match (&self.via, self.is_attribute()) {
            (Some(via), _) => format!("REVOKE {} FROM {role};", quote_ident(via)),
            (None, true) => format!("ALTER ROLE {role} NO{};", self.privilege),
            (None, false) => format!("REVOKE {} FROM {role};", self.privilege),
        }
    }
}

use crate::api::quote_ident;

/// Microseconds in one second.
pub const SECOND_US: i64 = 1_000_000;

/// May this role start a session now? `Err` carries the connection error text.
pub fn check_login(f: &LoginFacts, now_us: i64, max_lifetime_us: i64) -> Result<(), String> {
    if !f.is_agent {
        return Ok(());
    }
    if f.is_superuser {
        return Err(format!(
            "agent role \"{}\" is a superuser; an agent must never hold superuser",
            f.role
        ));
    }
    if !f.dangerous.is_empty() {
        let held: Vec<String> = f.dangerous.iter().map(HeldPrivilege::describe).collect();
        return Err(format!(
            "agent role \"{}\" holds {}, which an agent must never hold: it reaches around ai_agent_safety",
            f.role,
            held.join(", ")
        ));
    }
    let Some(until) = f.valid_until_us else {
        return Err(format!(
            "agent role \"{}\" has no credential expiry (VALID UNTIL is not set); agents never hold permanent credentials",
            f.role
        ));
    };
    let text = f.valid_until_text.clone().unwrap_or_default();
    if until <= now_us {
        return Err(format!(
            "credentials of agent role \"{}\" expired at {}",
            f.role, text
        ));
    }
    if until - now_us > max_lifetime_us {
        return Err(format!(
            "credentials of agent role \"{}\" are valid until {}, further ahead than ai_agent_safety.max_credential_lifetime ({}); this counts as no expiry",
            f.role,
            text,
            human_duration(max_lifetime_us)
        ));
    }
    Ok(())
}

/// Why an open agent session must end now, as message, detail and hint:
/// its credentials expired (by time, or a DBA moved VALID UNTIL), or it
/// was given a privilege that reaches around the guard since it logged in.
pub fn check_session(f: &LoginFacts, now_us: i64) -> Result<(), (EventKind, Denial)> {
    if !f.is_agent {
        return Ok(());
    }
    if !f.dangerous.is_empty() {
        let held: Vec<String> = f.dangerous.iter().map(HeldPrivilege::describe).collect();
        return Err((
            EventKind::SessionEnded,
            Denial {
            source: Source::Credentials,
            message: format!(
                "agent role \"{}\" now holds {}, which an agent must never hold; ending the session",
                f.role,
                held.join(", ")
            ),
            detail: "Such a privilege reaches around ai_agent_safety; agents keep no session while they hold one.".into(),
            hint: login_hint(f),
        }));
    }
    match f.valid_until_us {
        Some(until) if now_us >= until => Err((
            EventKind::SessionExpired,
            Denial {
                source: Source::Credentials,
                message: format!(
                    "credentials of agent role \"{}\" expired at {}; ending the session",
                    f.role,
                    f.valid_until_text.as_deref().unwrap_or_default()
                ),
                detail: "Agent sessions do not outlive their credentials (VALID UNTIL).".into(),
                hint: format!(
                    "A DBA can issue fresh credentials: SELECT {};",
                    issue_call(&f.role)
                ),
            },
        )),
        _ => Ok(()),
    }
}

/// What a DBA does about a refused agent login: take away the privileges
/// that must go, or issue short-lived credentials.
pub fn login_hint(f: &LoginFacts) -> String {
    if f.dangerous.is_empty() {
        return format!(
            "A DBA can issue short-lived credentials: SELECT {};",
            issue_call(&f.role)
        );
    }
    let fixes: Vec<String> = f
        .dangerous
        .iter()
        .map(|p| p.take_away_sql(&f.role))
        .collect();
    format!("A DBA takes it away: {}", fixes.join(" "))
}

/// The call that issues an agent fresh credentials for an hour.
fn issue_call(role: &str) -> String {
    crate::api::call(
        "issue_agent_credentials",
        &[(role, "name"), ("1 hour", "interval")],
    )
}

/// Parses a list setting such as `development, staging` into its entries.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().trim_matches('"').to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

pub fn human_duration(us: i64) -> String {
    let s = us / SECOND_US;
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}min", s / 60)
    } else {
        format!("{s}s")
    }
}
