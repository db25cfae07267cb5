//! The guard: gather the facts about a statement, ask the policy core, act.
//!
//! Hooks call [`check`] with the operations a statement performs. Policy lives
//! in `aas_policy::decide`; this module only collects facts, looks up a
//! presented token when (and only when) the decision depends on it, consumes
//! it, and raises the refusal.

use crate::{approval, dbfacts, identity, settings};
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

/// Checks a statement by an agent session. Raises an ERROR when refused.
pub fn check(stmt: &crate::classify::StatementOps, source: &str) -> Verdict {
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
                refuse(d);
            }
        }
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
        return Verdict::Allow;
    };
    let Some(raw) = settings::approval_token() else {
        refuse(denial);
    };
    // Environment refusals are final whatever the token says.
    let presented = approval::lookup(raw);
    match decide(&session, &here, target.as_ref(), &stmt.ops, &presented, now) {
        Decision::Allow => Verdict::Allow,
        Decision::Deny(d) => refuse(d),
        Decision::AllowWithToken { token } => {
            if approval::consume(&token, source) {
                Verdict::Approved
            } else {
                // Lost a race, or the token changed since it was read: decide
                // again on the fresh row so the reason is exact.
                let again = approval::lookup(raw);
                match decide(&session, &here, target.as_ref(), &stmt.ops, &again, now) {
                    Decision::Deny(d) => refuse(d),
                    _ => refuse(Denial {
                        source: "token",
                        message: format!("approval token {token} could not be consumed"),
                        detail: "Another session used or changed it at the same moment.".into(),
                        hint: "Request a new token with request_approval_token.".into(),
                    }),
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
