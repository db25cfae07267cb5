//! The guard: gather the facts about a statement, ask the policy core, act.
//!
//! Hooks call [`check`] with the operations a statement performs. Policy lives
//! in `aas_policy::decide`; this module only collects facts, looks up a
//! presented token when (and only when) the decision depends on it, consumes
//! it, and raises the refusal.

use crate::classify::StatementOps;
use crate::{approval, audit, dbfacts, identity, settings};
use aas_policy::{decide, Decision, Denial, SessionFacts, TokenPresented};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgLogLevel;
use pgrx::PgSqlErrorCode;

/// What the hook must do after the check.
pub enum Verdict {
    Allow,
    /// A token was consumed: the statement, and what it sets off, is approved.
    Approved,
}

fn session_facts() -> SessionFacts {
    SessionFacts {
        session_user: identity::session_user_name(),
        current_user: identity::current_user_name(),
        is_agent: true,
        task_id: settings::task_id().map(str::to_string),
        task_environment: settings::task_environment().map(str::to_string),
        allowed_environments: settings::allowed_environments(),
    }
}

fn op_text(stmt: &StatementOps) -> String {
    if stmt.ops.is_empty() {
        return stmt.verb.to_string();
    }
    let mut v: Vec<&str> = stmt.ops.iter().map(|o| o.class.as_str()).collect();
    v.dedup();
    v.join(", ")
}

fn object_text(stmt: &StatementOps) -> String {
    let v: Vec<String> = stmt.ops.iter().map(aas_policy::token_target_text).collect();
    v.join(", ")
}

fn event(stmt: &StatementOps, source: &str) -> audit::Event {
    audit::Event {
        operation: op_text(stmt),
        object: object_text(stmt),
        statement: source.to_string(),
        ..Default::default()
    }
}

/// Records an allowed statement when the audit level asks for it.
fn audit_allowed(stmt: &StatementOps, source: &str) {
    let level = settings::audit_level();
    let is_write = stmt.writes || !stmt.ops.is_empty();
    if level >= audit::LEVEL_ALL || (level >= audit::LEVEL_WRITES && is_write) {
        audit::record(audit::Event {
            source: "guard",
            event: "allowed",
            decision: "allow",
            ..event(stmt, source)
        });
    }
}

/// Refuses, or in audit mode records what would have been refused and allows.
fn deny(d: Denial, stmt: &StatementOps, source: &str, token: Option<&str>) -> Verdict {
    let src = match d.source {
        "token" => "token",
        "environment" => "environment",
        _ => "guard",
    };
    let shadow = settings::audit_mode();
    audit::record(audit::Event {
        source: src,
        event: if shadow { "would_refuse" } else { "refused" },
        decision: if shadow { "would_refuse" } else { "refuse" },
        reason: d.reason(),
        token: token.unwrap_or("").to_string(),
        ..event(stmt, source)
    });
    if shadow {
        Verdict::Allow
    } else {
        refuse(d)
    }
}

/// Checks a statement by an agent session. Raises an ERROR when refused (in
/// enforce mode); records the decision in the audit log.
pub fn check(stmt: &StatementOps, source: &str) -> Verdict {
    if stmt.ops.is_empty() {
        // Destroys nothing: only the task-environment rule or the audit level
        // can care, and both are cheap to rule out.
        let level = settings::audit_level();
        let must_look = (stmt.writes && settings::task_environment_mismatch())
            || level >= audit::LEVEL_ALL
            || (level >= audit::LEVEL_WRITES && stmt.writes);
        if !must_look {
            return Verdict::Allow;
        }
        if !(stmt.writes && settings::task_environment_mismatch()) {
            // Nothing to decide, only to record: skip gathering facts.
            audit_allowed(stmt, source);
            return Verdict::Allow;
        }
    }
    let session = session_facts();
    let here = dbfacts::current();
    let target = stmt
        .ops
        .iter()
        .find_map(|o| o.target_database.clone())
        .map(|name| {
            dbfacts::other(&name, unsafe { pg_sys::GetSessionUserId() })
                .unwrap_or_else(|| dbfacts::facts_from(&name, &Default::default()))
        });
    let now = unsafe { pg_sys::GetCurrentTimestamp() };

    if stmt.ops.is_empty() {
        if stmt.writes {
            if let Decision::Deny(d) = aas_policy::decide_write(&session, &here, stmt.verb) {
                return deny(d, stmt, source, None);
            }
        }
        audit_allowed(stmt, source);
        return Verdict::Allow;
    }

    let first = decide(
        &session,
        &here,
        target.as_ref(),
        &stmt.ops,
        &TokenPresented::None,
        now,
    );
    let Decision::Deny(denial) = first else {
        audit_allowed(stmt, source);
        return Verdict::Allow;
    };
    let Some(raw) = settings::approval_token() else {
        return deny(denial, stmt, source, None);
    };
    // Environment refusals are final whatever the token says.
    let presented = approval::lookup(raw);
    match decide(&session, &here, target.as_ref(), &stmt.ops, &presented, now) {
        Decision::Allow => {
            audit_allowed(stmt, source);
            Verdict::Allow
        }
        Decision::Deny(d) => deny(d, stmt, source, Some(raw)),
        Decision::AllowWithToken { token } => {
            if approval::consume(&token, source) {
                audit::record(audit::Event {
                    source: "token",
                    event: "consumed",
                    decision: "allow",
                    reason: format!(
                        "{} allowed: approval token {} was granted for it and is now used",
                        op_text(stmt),
                        token
                    ),
                    token: token.clone(),
                    ..event(stmt, source)
                });
                Verdict::Approved
            } else {
                // Lost a race, or the token changed since it was read: decide
                // again on the fresh row so the reason is exact.
                let again = approval::lookup(raw);
                match decide(&session, &here, target.as_ref(), &stmt.ops, &again, now) {
                    Decision::Deny(d) => deny(d, stmt, source, Some(&token)),
                    _ => deny(
                        Denial {
                            source: "token",
                            message: format!("approval token {token} could not be consumed"),
                            detail: "Another session used or changed it at the same moment.".into(),
                            hint: "Request a new token with request_approval_token.".into(),
                        },
                        stmt,
                        source,
                        Some(&token),
                    ),
                }
            }
        }
    }
}

pub fn refuse(d: Denial) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        d.message,
        "ai_agent_safety",
    )
    .set_detail(d.detail)
    .set_hint(d.hint)
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
