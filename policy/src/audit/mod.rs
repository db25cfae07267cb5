//! The audit vocabulary: every word an audit event is made of, as a type.
//!
//! The same words appear in the settings (`audit_level`, `mode`), in the
//! columns of `ai_agent_safety.audit_log`, in the server-log line and in the
//! README. Each enum's `as_str` is the one spelling; serde uses it too.

pub mod record;

use serde::Serialize;

/// Defines a closed vocabulary: an enum whose variants each have one
/// spelling, used for display, serialisation and parsing.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// `ai_agent_safety.audit_level`: what the audit log records about agents.
    AuditLevel {
        /// Refusals, token use, credential and environment events.
        Decisions => "decisions",
        /// Also every write or DDL by an agent.
        Writes => "writes",
        /// Every agent statement, reads included.
        All => "all",
    }
}

vocabulary! {
    /// `ai_agent_safety.mode`: `enforce` refuses; `audit` refuses nothing and
    /// records what would have been refused (shadow mode).
    Mode {
        Enforce => "enforce",
        Audit => "audit",
    }
}

vocabulary! {
    /// Which part of the extension made the decision (audit column `source`).
    Source {
        /// The statement guard: approval rules.
        Guard => "guard",
        /// Approval tokens: requests, decisions, use.
        Token => "token",
        /// Credential expiry, issue and revocation.
        Credentials => "credentials",
        /// Environment scope and task environment.
        Environment => "environment",
    }
}

vocabulary! {
    /// What happened (audit column `event`).
    EventKind {
        Refused => "refused",
        WouldRefuse => "would_refuse",
        Allowed => "allowed",
        Requested => "requested",
        Granted => "granted",
        Denied => "denied",
        Cancelled => "cancelled",
        Consumed => "consumed",
        Expired => "expired",
        Issued => "issued",
        Revoked => "revoked",
        LoginRefused => "login_refused",
        SessionExpired => "session_expired",
        SessionEnded => "session_ended",
    }
}

vocabulary! {
    /// The outcome for the agent (audit column `decision`).
    Verdict {
        Refuse => "refuse",
        WouldRefuse => "would_refuse",
        Allow => "allow",
        Info => "info",
    }
}

vocabulary! {
    /// The state of an audit writer's slot in shared memory.
    WriterState {
        /// No writer: the slot is free.
        Free => "stopped",
        /// A start was requested and has not completed (or found no free
        /// background worker slot).
        Starting => "starting",
        Running => "running",
        /// The extension is not created in the database: events wait.
        WaitingForExtension => "waiting for CREATE EXTENSION",
    }
}

// The vocabulary! macro defines the enum, so `#[derive(Default)]` and its
// `#[default]` variant attribute cannot be written for this one enum alone.
#[allow(clippy::derivable_impls)]
impl Default for WriterState {
    /// A slot in fresh shared memory is free.
    fn default() -> Self {
        WriterState::Free
    }
}

impl AuditLevel {
    /// Does this level record an allowed statement that writes (`writes`) or
    /// only reads?
    pub fn records_allowed(self, writes: bool) -> bool {
        match self {
            AuditLevel::All => true,
            AuditLevel::Writes => writes,
            AuditLevel::Decisions => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_parses_back() {
        for l in AuditLevel::ALL {
            assert_eq!(AuditLevel::parse(l.as_str()), Some(*l));
        }
        for e in EventKind::ALL {
            assert_eq!(EventKind::parse(e.as_str()), Some(*e));
            assert_eq!(serde_json::to_string(e).unwrap(), format!("\"{e}\""));
        }
        assert_eq!(Verdict::parse("refuse"), Some(Verdict::Refuse));
        assert_eq!(Source::parse("approval"), None);
    }

    #[test]
    fn levels_are_ordered_and_record_what_they_say() {
        assert!(AuditLevel::Decisions < AuditLevel::Writes && AuditLevel::Writes < AuditLevel::All);
        assert!(!AuditLevel::Decisions.records_allowed(true));
        assert!(AuditLevel::Writes.records_allowed(true));
        assert!(!AuditLevel::Writes.records_allowed(false));
        assert!(AuditLevel::All.records_allowed(false));
    }
}
