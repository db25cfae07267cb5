//! Credential rules for agent logins: expiry and superuser.

/// Facts about a role that is logging in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginFacts {
    pub role: String,
    pub is_agent: bool,
    pub is_superuser: bool,
    /// `rolvaliduntil` in microseconds since the PostgreSQL epoch; `None` when unset or infinity.
    pub valid_until_us: Option<i64>,
    pub valid_until_text: Option<String>,
}

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
