//! The guard's own settings are not an agent's to change, by any route:
//! SET, set_config, ALTER DATABASE ... SET, ALTER SYSTEM (ALTER ROLE ... SET
//! is a role change), whatever GRANT SET or GRANT ALTER SYSTEM ON PARAMETER
//! a DBA gave. Nor are the settings that decide which libraries load.

use crate::audit::Source;
use crate::outcome::Denial;

/// The ai_agent_safety settings an agent sets itself: what it works on and
/// the token it presents. Every other one restricts agents.
pub const AGENT_SETTINGS: [&str; 3] = [
    "ai_agent_safety.task_id",
    "ai_agent_safety.task_environment",
    "ai_agent_safety.approval_token",
];

/// Settings outside the extension that could switch it off.
pub const LOADING_SETTINGS: [&str; 3] = [
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
];

/// Is this a setting an agent may never change: one of ai_agent_safety's
/// restricting settings, a library-loading setting, or `ALL` (a RESET ALL
/// reaches them too)?
pub fn is_guard_setting(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n == "all"
        || LOADING_SETTINGS.contains(&n.as_str())
        || (n.starts_with("ai_agent_safety.") && !AGENT_SETTINGS.contains(&n.as_str()))
}

/// The refusal of an agent's change to the guard's settings.
pub fn settings_change_denial(agent: &str, what: &str, names: &[String]) -> Denial {
    Denial {
        source: Source::Guard,
        message: format!(
            "{what} refused: agent role \"{agent}\" may not change {}",
            names.join(", ")
        ),
        detail: "Settings that restrict agents, or decide which libraries load, are a DBA's to change, whatever GRANT SET or GRANT ALTER SYSTEM ON PARAMETER allows; an agent may set only ai_agent_safety.task_id, ai_agent_safety.task_environment and ai_agent_safety.approval_token.".into(),
        hint: "A DBA changes them from a role that is not an agent, for example: ALTER DATABASE <database> SET ai_agent_safety.require_approval = on;".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_settings_are_the_guards() {
        for n in [
            "ai_agent_safety.mode",
            "AI_AGENT_SAFETY.Require_Approval",
            "ai_agent_safety.agent_role",
            "ai_agent_safety.something_new",
            "shared_preload_libraries",
            "session_preload_libraries",
            "ALL",
        ] {
            assert!(is_guard_setting(n), "{n}");
        }
        for n in [
            "ai_agent_safety.task_id",
            "ai_agent_safety.task_environment",
            "ai_agent_safety.approval_token",
            "work_mem",
            "search_path",
        ] {
            assert!(!is_guard_setting(n), "{n}");
        }
    }

    #[test]
    fn the_refusal_names_what_and_who() {
        let d = settings_change_denial("bot", "ALTER SYSTEM", &["ai_agent_safety.mode".into()]);
        assert_eq!(
            d.message,
            "ALTER SYSTEM refused: agent role \"bot\" may not change ai_agent_safety.mode"
        );
        assert!(d
            .detail
            .contains("GRANT SET or GRANT ALTER SYSTEM ON PARAMETER"));
        assert!(d.hint.starts_with("A DBA changes them"));
    }
}
