//! The guard: carry out what the policy says about an agent's statement.
//!
//! Hooks call [`judge`] with what a statement does. It asks the policy's one
//! rule place (`aas_policy::treatment`) what must happen, and then: hands the
//! statement on; records it; or gathers the facts, looks up a presented
//! token when the decision can depend on it, asks `decide_statement` once,
//! consumes the token, raises the refusal, and records the decision.
//! It also ends an agent session whose credentials expired.

use crate::{agent_code, approval, audit, credentials, dbfacts, identity, pg, presented, settings};
use aas_policy::{
    after_lost_race, decide_statement, treatment, Decision, Denial, EventKind, SessionFacts, Shape,
    Source, Statement, Switches, TokenPresented, Treatment, Verdict,
};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// What the hook must do after the check.
pub enum Outcome {
    Allow,
    /// A token was consumed: the statement, and what it sets off, is
    /// approved; `limits` say how many rows it may change.
    Approved {
        token: uuid::Uuid,
        limits: aas_policy::row_cap::Limits,
    },
    /// Allowed without a token in a review (`begin_review`): what it sets
    /// off through PostgreSQL's foreign-key actions is part of it.
    Reviewed,
    /// Sent by another node of the cluster, whose guard judged the
    /// statement it is part of: what it sets off through PostgreSQL's
    /// foreign-key actions is part of it too.
    FromClusterNode,
}

/// Where a judged statement comes from: the client sent it, or it runs
/// inside another (a function, a rule, a call). A token bound to one
/// statement covers only a statement the client sent: inside a function
/// the same text can mean something else (a PL/pgSQL variable named like
/// the column).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Nested,
    /// The dry run of a request's statement (`dry_run`): judged as the
    /// client's statement presenting the token the request would create.
    DryRun,
}

/// Judges a statement of an agent session. Raises an ERROR when refused (in
/// enforce mode); records the decision in the audit log.
pub fn judge(stmt: &Statement, source: &str, origin: Origin) -> Outcome {
    match treatment(&settings::Live, Shape::of(stmt)) {
        Treatment::Pass => Outcome::Allow,
        Treatment::Record => {
            record_allowed(stmt, source);
            Outcome::Allow
        }
        Treatment::Decide => decide(stmt, source, origin, &settings::switches()),
    }
}

/// Who the statement is judged as: the agent session, or, in another
/// role's session, the agent whose code runs it (with no task and no scope
/// of its own: those are the session's, not the agent's).
fn session_facts(presented: &presented::Presented, origin: Origin) -> SessionFacts {
    let session_agent = identity::session_user_is_agent();
    match agent_code::running().filter(|_| !session_agent) {
        // An agent's code in another role's session.
        Some(agent) => SessionFacts {
            session_user: pg::role_name(agent),
            current_user: pg::current_user_name(),
            is_agent: true,
            run_by: Some(pg::session_user_name()),
            ..Default::default()
        },
        // The agent session; or another role's session whose current user
        // is an agent (SET ROLE, PostgreSQL's own work run as an agent
        // owner): judged as that agent's, as if in its session.
        None => SessionFacts {
            session_user: if session_agent {
                pg::session_user_name()
            } else {
                pg::current_user_name()
            },
            current_user: pg::current_user_name(),
            is_agent: true,
            task_id: presented.task.clone(),
            task_environment: settings::task_environment().map(str::to_string),
            allowed_environments: settings::allowed_environments(),
            run_by: None,
            token_from_setting: presented.token_from_setting,
            review: crate::review::task(),
            // Sent as it is by another node: its own statements, not those
            // a function or trigger it sets off runs here.
            from_cluster_node: origin == Origin::Client && crate::port::from_cluster_node(),
        },
    }
}

/// An audit event about this statement.
fn event(stmt: &Statement, source: &str, kind: (Source, EventKind, Verdict)) -> audit::Event {
    audit::Event {
        operation: stmt.operation_text(),
        object: stmt.object_text(),
        statement: source.to_string(),
        ..audit::Event::new(kind.0, kind.1, kind.2)
    }
}

/// Records an allowed statement when the audit level asks for it. A
/// parallel worker runs part of a statement its leader has recorded: it
/// records nothing again.
fn record_allowed(stmt: &Statement, source: &str) {
    // SAFETY: reads a backend variable (-1 outside parallel workers).
    if unsafe { pg_sys::ParallelWorkerNumber } >= 0 {
        return;
    }
    if settings::audit_level().records_allowed(Shape::of(stmt).writes) {
        audit::record(event(
            stmt,
            source,
            (Source::Guard, EventKind::Allowed, Verdict::Allow),
        ));
    }
}

/// Gathers the facts, decides once, and acts.
fn decide(stmt: &Statement, source: &str, origin: Origin, sw: &Switches) -> Outcome {
    let presented = presented::of(source);
    let session = session_facts(&presented, origin);
    let here = dbfacts::current();
    let target = stmt
        .ops
        .iter()
        .find_map(|o| o.target_database.clone())
        .map(|name| {
            // SAFETY: reads a backend variable.
            dbfacts::other(&name, unsafe { pg_sys::GetSessionUserId() })
                .unwrap_or_else(|| dbfacts::facts_from(&name, &Default::default()))
        });
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    // A token bears only on destructive operations; a write that destroys
    // nothing is judged by the environment rules alone, and no token covers
    // a role change: no token is looked up for those.
    // An agent's code run by another role presents no token: tokens are
    // the agent session's.
    let raw = presented
        .token
        .as_ref()
        .filter(|_| session.run_by.is_none() && aas_policy::token_can_matter(stmt));
    let token_presented = match raw {
        _ if origin == Origin::DryRun => with_statement(crate::dry_run::token(), source, origin),
        None => TokenPresented::None,
        Some(Ok(t)) => with_statement(approval::lookup(t), source, origin),
        Some(Err(e)) => TokenPresented::Malformed(e.clone()),
    };
    let raw = raw.map(|r| r.as_deref().unwrap_or_else(|e| e.as_str()));
    let decided = decide_statement(
        &session,
        &here,
        target.as_ref(),
        stmt,
        &token_presented,
        now,
    );
    match decided {
        Decision::Allow => {
            record_allowed(stmt, source);
            Outcome::Allow
        }
        Decision::AllowFromClusterNode => {
            audit::record(audit::Event {
                reason: format!(
                    "{} allowed: sent by another node of the cluster (certificate {}), whose guard judged the statement it is part of",
                    stmt.operation_text(),
                    crate::port::client_certificate_subject(),
                ),
                ..event(
                    stmt,
                    source,
                    (Source::Guard, EventKind::Allowed, Verdict::Allow),
                )
            });
            Outcome::FromClusterNode
        }
        Decision::AllowInReview => {
            let task = session.review.clone().unwrap_or_default();
            // What no counted statement shows (a large object's write, a
            // function's effect): listed in the review by itself.
            if stmt
                .ops
                .iter()
                .any(|o| o.object.classid != pg_sys::RelationRelationId.to_u32())
            {
                crate::review::note(
                    &format!("{} {}", stmt.operation_text(), stmt.object_text()),
                    source,
                );
            }
            audit::record_for_task(
                audit::Event {
                    reason: format!(
                        "{} allowed without a token in the review of task {task}: it takes effect only if an approver commits the prepared transaction",
                        stmt.operation_text(),
                    ),
                    ..event(
                        stmt,
                        source,
                        (Source::Review, EventKind::Allowed, Verdict::Allow),
                    )
                },
                &task,
            );
            Outcome::Reviewed
        }
        Decision::Deny(d) => {
            // No token presented, but one the agent holds would have done:
            // say that its SET was lost (through a pool, most likely).
            let d = match token_presented {
                TokenPresented::None
                    if session.run_by.is_none() && aas_policy::token_can_matter(stmt) =>
                {
                    held_instead(&session, &here, target.as_ref(), stmt, source, origin, now)
                        .unwrap_or(d)
                }
                _ => d,
            };
            deny(d, stmt, source, raw, sw)
        }
        Decision::AllowWithToken { token } => {
            // A standby: nothing can be written there, and PostgreSQL
            // refuses the statement itself (25006) as it starts; the token
            // stays unused for the primary.
            // SAFETY: reads shared state; raises nothing.
            if unsafe { pg_sys::RecoveryInProgress() } {
                return Outcome::Allow;
            }
            // SAFETY: reads a backend variable.
            if unsafe { pg_sys::XactReadOnly } {
                let d = aas_policy::way_forward::token_in_read_only(stmt, token);
                return deny(d, stmt, source, raw, sw);
            }
            // The dry run's stand-in is used by its statement, and by
            // nothing else; nothing is consumed, nothing recorded.
            if origin == Origin::DryRun {
                return Outcome::Approved {
                    token,
                    limits: Default::default(),
                };
            }
            let consumed = approval::consume(token, source);
            if let Ok(Some(limits)) = consumed {
                if presented.token_from_setting {
                    presented::spent_from_setting(raw.unwrap_or_default());
                }
                audit::record(audit::Event {
                    reason: format!(
                        "{} allowed: approval token {token} was granted for it and is now used",
                        stmt.operation_text(),
                    ),
                    token: token.to_string(),
                    ..event(
                        stmt,
                        source,
                        (Source::Token, EventKind::Consumed, Verdict::Allow),
                    )
                });
                Outcome::Approved { token, limits }
            } else {
                // Lost a race, or the token changed since it was read: the
                // fresh row says exactly what happened. A failed update is
                // said as such, never taken for a lost race.
                let fresh = match consumed {
                    Err(e) => TokenPresented::Unavailable(format!("consuming it failed: {e}")),
                    Ok(_) => approval::lookup(&token.to_string()),
                };
                let d = after_lost_race(&session, &here, target.as_ref(), stmt, token, &fresh, now);
                deny(d, stmt, source, Some(&token.to_string()), sw)
            }
        }
    }
}

/// A token bound to one statement learns the statement it is presented
/// with, and its form (read only for such tokens).
fn with_statement(t: TokenPresented, source: &str, origin: Origin) -> TokenPresented {
    match t {
        TokenPresented::Found(mut f) => {
            if let Some(b) = f.bound.as_mut() {
                if origin != Origin::Nested {
                    b.presented = source.to_string();
                    b.presented_form = crate::statement_form::of(source).ok();
                } else {
                    b.presented = format!(
                        "{source} (run inside a function, rule or call; a bound token covers only the statement the client sends)"
                    );
                }
            }
            TokenPresented::Found(f)
        }
        other => other,
    }
}

/// The refusal that names a granted token the agent holds for exactly this
/// statement but did not present; `None` when it holds none.
fn held_instead(
    session: &SessionFacts,
    here: &aas_policy::DatabaseFacts,
    target: Option<&aas_policy::DatabaseFacts>,
    stmt: &Statement,
    source: &str,
    origin: Origin,
    now: i64,
) -> Option<Denial> {
    approval::held_by(&session.session_user)
        .iter()
        .find_map(
            |id| match with_statement(approval::lookup(id), source, origin) {
                TokenPresented::Found(t) => {
                    let would = decide_statement(
                        session,
                        here,
                        target,
                        stmt,
                        &TokenPresented::Found(t.clone()),
                        now,
                    );
                    matches!(would, Decision::AllowWithToken { .. }).then_some(t)
                }
                _ => None,
            },
        )
        .and_then(|t| {
            match decide_statement(session, here, target, stmt, &TokenPresented::Held(t), now) {
                Decision::Deny(d) => Some(d),
                _ => None,
            }
        })
}

/// Refuses, or in audit mode records what would have been refused and allows.
fn deny(d: Denial, stmt: &Statement, source: &str, token: Option<&str>, sw: &Switches) -> Outcome {
    let mode = sw.mode.for_statement(stmt);
    let (kind, verdict) = mode.refusal();
    audit::record(audit::Event {
        reason: d.reason(),
        token: token.unwrap_or("").to_string(),
        ..event(stmt, source, (d.source, kind, verdict))
    });
    if mode.stops() {
        refuse(d)
    }
    Outcome::Allow
}

/// Refuses a statement found over its token's terms while it runs (a row
/// cap), recording the refusal; in audit mode it only records it.
pub fn refuse_recorded(d: Denial, stmt: &Statement, source: &str, token: &str) {
    let _ = deny(d, stmt, source, Some(token), &settings::switches());
}

/// Refuses, for any session, renaming or dropping the agent group or the
/// approver group (`aas_policy::group_change_denial` says why).
pub fn protect_groups(stmt: &Statement) {
    let approvers = std::ffi::CString::new("ai_agent_approver").expect("no NUL");
    // SAFETY: catalog lookup with missing_ok = true.
    let approvers = unsafe { pg_sys::get_role_oid(approvers.as_ptr(), true) };
    let groups = [
        (
            crate::identity::agent_group_oid().to_u32(),
            aas_policy::Group::Agents,
        ),
        (approvers.to_u32(), aas_policy::Group::Approvers),
    ];
    if let Some(d) = aas_policy::group_change_denial(stmt, &groups) {
        audit::record(audit::Event {
            reason: d.reason(),
            ..event(stmt, "", (d.source, EventKind::Refused, Verdict::Refuse))
        });
        refuse(d)
    }
}

/// Raises the refusal: SQLSTATE 42501 with message, detail and hint.
pub fn refuse(d: Denial) -> ! {
    pg::refuse(d)
}

/// Ends an agent session whose credentials expired (by time, or because a
/// DBA moved VALID UNTIL or revoked them), or that was given a privilege
/// that reaches around the guard. Cheap when nothing changed.
pub fn end_invalid_session() {
    let facts = credentials::session_facts();
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    if facts.is_agent {
        crate::expiry::arm_for_session(facts, now);
    }
    let Err((kind, d)) = aas_policy::check_session(facts, now) else {
        return;
    };
    audit::record(audit::Event {
        reason: d.message.clone(),
        ..audit::Event::new(d.source, kind, Verdict::Refuse)
    });
    let d = aas_policy::way_forward::in_message(d);
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        d.message,
        "ai_agent_safety",
    )
    .set_detail(d.detail)
    .set_hint(d.hint)
    .report(PgLogLevel::FATAL);
}
