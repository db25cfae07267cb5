//! The audit vocabulary: every word an audit event is made of, as a type.
//!
//! The same words appear in the settings (`audit_level`, `mode`), in the
//! columns of `ai_agent_safety.audit_log`, in the server-log line and in the
//! README. Each enum's `as_str` is the one spelling; serde uses it too.

pub mod batch;
pub mod binary;
pub mod record;
pub mod segment;
pub mod spool_text;
pub mod writer_log;

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
    /// `ai_agent_safety.audit_destination`: where the events that
    /// `audit_level = writes` or `all` adds (allowed statements) go. Every
    /// other event goes to both, whatever it says.
    AuditDestination {
        /// The audit table (through the spool) and the server log.
        Both => "both",
        /// The audit table only: an allowed statement writes no log line.
        Table => "table",
        /// The server log only: an allowed statement is not spooled.
        Log => "log",
    }
}

/// Where one event goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routes {
    /// Spooled for `ai_agent_safety.audit_log`.
    pub table: bool,
    /// Written to the server log as one JSON line.
    pub log: bool,
    /// That line is written by the audit writer as it loads the spooled
    /// event (`writer_log`), not by the backend, when the event is spooled.
    pub log_by_writer: bool,
}

impl AuditDestination {
    /// Where an event goes. Only an allowed statement recorded by the guard
    /// (what `audit_level` adds) follows the destination; refusals, token
    /// use, reviews, credentials, the recycle bin and logins are decisions
    /// and go to both, so a refusal reaches the log even when the table
    /// cannot be reached, and the table even when the log is not kept.
    pub fn routes(self, source: Source, event: EventKind) -> Routes {
        let chosen = source == Source::Guard && event == EventKind::Allowed;
        Routes {
            table: !chosen || self != AuditDestination::Log,
            log: !chosen || self != AuditDestination::Table,
            log_by_writer: chosen && self == AuditDestination::Both,
        }
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
        /// Reviewed transactions: begun, prepared, committed, rolled back,
        /// expired.
        Review => "review",
        /// The recycle bin: kept, restored, purged, expired.
        Recycle => "recycle",
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
        Begun => "begun",
        Prepared => "prepared",
        Committed => "committed",
        RolledBack => "rolled_back",
        Kept => "kept",
        Restored => "restored",
        Purged => "purged",
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

/// Cuts a text longer than `max` characters to its first and last `max / 2`
/// characters around a mark that says how long it was:
/// `head ... [cut: N characters in all] ... tail`. A statement's end (what
/// it does) survives a padding of leading comments, and its start survives
/// a padding of trailing ones.
pub fn cut_text(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    // No more bytes than the limit: no more characters either.
    if s.len() <= max {
        return s.into();
    }
    let n = s.chars().count();
    if n <= max {
        return s.into();
    }
    let head_chars = max.div_ceil(2);
    let tail_chars = max / 2;
    let head_end = s.char_indices().nth(head_chars).map_or(s.len(), |(i, _)| i);
    let tail_start = s
        .char_indices()
        .nth(n - tail_chars)
        .map_or(s.len(), |(i, _)| i);
    format!(
        "{}... [cut: {n} characters in all] ...{}",
        &s[..head_end],
        &s[tail_start..]
    )
    .into()
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
    fn long_texts_keep_head_and_tail() {
        assert_eq!(cut_text("short", 10), "short");
        assert_eq!(cut_text("exactly10!", 10), "exactly10!");
        let padded = format!("/* {} */ DROP TABLE customers", "x".repeat(2100));
        let cut = cut_text(&padded, 40);
        assert!(cut.starts_with("/* xxxxxxxxxxxxxxxxx"), "{cut}");
        assert!(cut.ends_with(" ...DROP TABLE customers"), "{cut}");
        assert!(
            cut.contains("... [cut: 2127 characters in all] ..."),
            "{cut}"
        );
        // Characters, not bytes, and never inside one.
        let wide = "日".repeat(30);
        assert_eq!(
            cut_text(&wide, 5),
            format!("日日日... [cut: 30 characters in all] ...日日")
        );
        assert_eq!(cut_text("abcdef", 0), "... [cut: 6 characters in all] ...");
    }

    #[test]
    fn only_allowed_statements_follow_the_destination() {
        let both = Routes {
            table: true,
            log: true,
            log_by_writer: false,
        };
        for d in AuditDestination::ALL {
            assert_eq!(AuditDestination::parse(d.as_str()), Some(*d));
            // Every decision goes to both, whatever the destination says.
            for s in Source::ALL {
                for e in EventKind::ALL {
                    if (*s, *e) != (Source::Guard, EventKind::Allowed) {
                        assert_eq!(d.routes(*s, *e), both, "{d} {s} {e}");
                    }
                }
            }
        }
        let allowed = |d: AuditDestination| d.routes(Source::Guard, EventKind::Allowed);
        // An allowed statement's log line, under both, is the writer's.
        assert_eq!(
            allowed(AuditDestination::Both),
            Routes {
                log_by_writer: true,
                ..both
            }
        );
        assert_eq!(
            allowed(AuditDestination::Table),
            Routes {
                table: true,
                log: false,
                log_by_writer: false,
            }
        );
        assert_eq!(
            allowed(AuditDestination::Log),
            Routes {
                table: false,
                log: true,
                log_by_writer: false,
            }
        );
        // A review's allowance is a decision (it names what an approver
        // must commit): both.
        assert_eq!(
            AuditDestination::Table.routes(Source::Review, EventKind::Allowed),
            both
        );
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
