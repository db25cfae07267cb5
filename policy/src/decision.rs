//! The one place that answers "may this agent do this here?".
//!
//! Plain Rust values in, a [`Decision`] out. No PostgreSQL inside, so every
//! rule here is unit-tested without a server.

use crate::api;
use crate::audit::Source;
use crate::environment::{decide_write, environment_denial};
use crate::facts::{DatabaseFacts, SessionFacts, TokenPresented, TokenState};
use crate::operation::{token_target_text, OpClass, Operation, Statement};
use crate::outcome::{Decision, Denial};
use uuid::Uuid;

/// Decides one statement: its destructive operations by [`decide`], a write
/// that destroys nothing by the task-environment rule, a read not at all.
/// This is what the guard calls, once per statement.
pub fn decide_statement(
    session: &SessionFacts,
    here: &DatabaseFacts,
    target_db: Option<&DatabaseFacts>,
    stmt: &Statement,
    token: &TokenPresented,
    now_us: i64,
) -> Decision {
    if stmt.changes_roles && session.is_agent {
        return Decision::Deny(role_change_denial(session, here, stmt));
    }
    if !stmt.changes_settings.is_empty() && session.is_agent {
        return Decision::Deny(crate::guard_settings::settings_change_denial(
            &session.session_user,
            stmt.verb,
            &stmt.changes_settings,
        ));
    }
    if let (Some(taken), true) = (&stmt.takes_api_name, session.is_agent) {
        return Decision::Deny(crate::api::api_name_denial(&session.session_user, taken));
    }
    if let (Some(h), true) = (&stmt.hands_over, session.is_agent) {
        return Decision::Deny(crate::handover::handover_denial(&session.session_user, h));
    }
    if let (Some((verb, door)), true) = (stmt.side_door, session.is_agent) {
        return Decision::Deny(crate::side_door::side_door_denial(
            &session.session_user,
            verb,
            door,
        ));
    }
    let decision = if !stmt.ops.is_empty() {
        decide(session, here, target_db, &stmt.ops, token, now_us)
    } else if stmt.writes {
        decide_write(session, here, stmt.verb)
    } else {
        Decision::Allow
    };
    match (&session.run_by, decision) {
        (Some(by), Decision::Deny(d)) => Decision::Deny(Denial {
            hint: agent_code_hint(&session.session_user, by),
            ..d
        }),
        (_, d) => d,
    }
}

/// What the role that ran an agent's code can do about its refusal: the
/// agent's token is not theirs to present.
fn agent_code_hint(agent: &str, run_by: &str) -> String {
    format!(
        "The statement runs code that agent role \"{agent}\" owns (a function, trigger, rule or view), which is judged as the agent's whoever runs it. Review that code; if \"{run_by}\" should run it as its own, a DBA gives it a new owner (for example ALTER FUNCTION <name> OWNER TO {run_by};), otherwise drop it."
    )
}

/// Can a presented token change the decision about this statement? Only for
/// destructive operations that are not role changes; the guard reads the
/// token only then.
pub fn token_can_matter(stmt: &Statement) -> bool {
    !stmt.ops.is_empty() && !stmt.touches_guard()
}

/// Roles are cluster-wide: an agent that could create, alter, rename, drop,
/// grant or revoke them could stop being an agent, approve its own tokens or
/// outlive its credentials in every database. So an agent's role changes are
/// refused in every database, whatever its settings say, and no token
/// covers them: a human DBA makes them.
fn role_change_denial(session: &SessionFacts, here: &DatabaseFacts, stmt: &Statement) -> Denial {
    let what: Vec<String> = stmt.ops.iter().map(Operation::describe).collect();
    let what = if what.is_empty() {
        "role change".to_string()
    } else {
        what.join(", ")
    };
    Denial {
        source: Source::Guard,
        message: format!(
            "{what} refused: agent role \"{}\" may not create, alter, drop or grant roles",
            session.session_user
        ),
        detail: format!(
            "Roles are cluster-wide, so an agent's role changes are refused in every database, whatever ai_agent_safety.require_approval or ai_agent_safety.mode say in database \"{}\"; no approval token covers them.",
            here.name
        ),
        hint: "Role changes are made by a DBA, from a role that is not an agent.".into(),
    }
}

/// One of the groups the extension finds people by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The group named by `ai_agent_safety.agent_role`: its members are agents.
    Agents,
    /// `ai_agent_approver`: its members may grant and deny tokens.
    Approvers,
}

/// Renaming or dropping the agent group would switch the guard off for every
/// agent in the cluster (nobody would be an agent any more); the approver
/// group's name is how the token functions find approvers. So neither is
/// renamed or dropped while the library is loaded, by anyone: a DBA first
/// points `agent_role` elsewhere. `groups` are the two groups' oids.
pub fn group_change_denial(stmt: &Statement, groups: &[(u32, Group)]) -> Option<Denial> {
    let (op, group) = stmt.ops.iter().find_map(|op| {
        groups
            .iter()
            .find(|(oid, _)| *oid != 0 && op.object.classid == 1260 && op.object.objid == *oid)
            .map(|(_, g)| (op, *g))
    })?;
    let (what, why, hint) = match group {
        Group::Agents => (
            "the agent group (ai_agent_safety.agent_role)",
            "ai_agent_safety finds agents by membership in this group: without it no session would be an agent, and the guard would be off for every agent in the cluster.",
            "To retire the group, first name another one: ALTER SYSTEM SET ai_agent_safety.agent_role = '<new group>'; SELECT pg_catalog.pg_reload_conf();".to_string(),
        ),
        Group::Approvers => (
            "the approver group",
            "The token functions find approvers by membership in ai_agent_approver: without it nobody could grant or deny a token.",
            "It stays while ai_agent_safety is loaded: remove ai_agent_safety from shared_preload_libraries and restart PostgreSQL first.".to_string(),
        ),
    };
    Some(Denial {
        source: Source::Guard,
        message: format!("{} refused: {} is {what}", op.describe(), op.object.display),
        detail: why.to_string(),
        hint,
    })
}

/// The refusal after the guard lost the race for a token that
/// [`decide_statement`] accepted: another session used or changed it between
/// the read and the consuming update. `fresh` is the token row read again;
/// the same token judgement explains what happened to it.
pub fn after_lost_race(
    session: &SessionFacts,
    here: &DatabaseFacts,
    target_db: Option<&DatabaseFacts>,
    stmt: &Statement,
    token: Uuid,
    fresh: &TokenPresented,
    now_us: i64,
) -> Denial {
    match decide_statement(session, here, target_db, stmt, fresh, now_us) {
        Decision::Deny(d) => d,
        Decision::Allow | Decision::AllowWithToken { .. } => Denial {
            source: Source::Token,
            message: format!("approval token {token} could not be consumed"),
            detail: "Another session used or changed it at the same moment.".into(),
            hint: format!(
                "Request a new token: SELECT {};",
                api::call(
                    "request_approval_token",
                    &[
                        (
                            stmt.ops.first().map_or("DELETE", |o| o.class.as_str()),
                            "text"
                        ),
                        (session.task_id.as_deref().unwrap_or("<task id>"), "text"),
                    ]
                )
            ),
        },
    }
}

/// Decides the destructive operations of one statement.
///
/// `here` is the database the session is connected to. `target_db` is the
/// database that DROP DATABASE names, with its own settings; it decides for the
/// operations that carry a `target_database`.
pub fn decide(
    session: &SessionFacts,
    here: &DatabaseFacts,
    target_db: Option<&DatabaseFacts>,
    ops: &[Operation],
    token: &TokenPresented,
    now_us: i64,
) -> Decision {
    if !session.is_agent || ops.is_empty() {
        return Decision::Allow;
    }
    // Fail closed: an operation on another database is never judged by this
    // database's settings.
    if target_db.is_none() {
        if let Some(op) = ops.iter().find(|o| o.target_database.is_some()) {
            return Decision::Deny(Denial {
                source: Source::Guard,
                message: format!(
                    "{} refused: the settings of the target database could not be read",
                    op.describe()
                ),
                detail: "ai_agent_safety decides DROP DATABASE by the target database's own settings, and they were not available.".into(),
                hint: "Retry; if this persists, check the server log.".into(),
            });
        }
    }
    if let Some(d) = environment_denial(session, here, target_db, ops) {
        return Decision::Deny(d);
    }

    let needing: Vec<(&Operation, &DatabaseFacts)> = ops
        .iter()
        .map(|op| {
            let db = match (&op.target_database, target_db) {
                (Some(_), Some(t)) => t,
                _ => here,
            };
            (op, db)
        })
        .filter(|(op, db)| db.require_approval && db.protected.contains(op.class))
        .collect();
    let Some(&(first, first_db)) = needing.first() else {
        return Decision::Allow;
    };

    let task = session.task_id.as_deref();
    let why = format!(
        "Database \"{}\" has ai_agent_safety.require_approval = on, and ai_agent_safety.protected_operations ({}) includes {}.{}",
        first_db.name,
        first_db.protected.describe(),
        first.class,
        task_sentence(task)
    );
    let refused = |what: String| {
        format!(
            "{} refused: agent role \"{}\" needs an approval token in database \"{}\"{}",
            what,
            session.session_user,
            here.name,
            match &session.run_by {
                Some(by) => format!(" (its code, run by \"{by}\")"),
                None if session.current_user != session.session_user => {
                    format!(" (acting as \"{}\")", session.current_user)
                }
                None => String::new(),
            }
        )
    };
    let what = if needing.len() == 1 {
        first.describe()
    } else {
        let v: Vec<String> = needing.iter().map(|(o, _)| o.describe()).collect();
        v.join(", ")
    };
    let request_hint = request_hint(first, needing.len() == 1, task);

    match token {
        TokenPresented::None => Decision::Deny(Denial {
                source: Source::Guard,
            message: refused(what),
            detail: why,
            hint: request_hint,
        }),
        TokenPresented::Malformed(raw) => Decision::Deny(Denial {
                source: Source::Token,
            message: refused(what),
            detail: format!(
                "ai_agent_safety.approval_token is set to \"{}\", which is not a token id (a UUID such as 3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f).",
                shorten(raw, 80)
            ),
            hint: format!(
                "Set the token id exactly as ai_agent_safety.request_approval_token returned it: SET ai_agent_safety.approval_token = '<token id>'; or RESET ai_agent_safety.approval_token; and {}",
                lowercase_first(&request_hint)
            ),
        }),
        TokenPresented::Unavailable(why_not) => Decision::Deny(Denial {
                source: Source::Token,
            message: refused(what),
            detail: format!("The approval token could not be checked: {why_not}."),
            hint: "A DBA should run CREATE EXTENSION ai_agent_safety; in this database (or repair it), then retry.".into(),
        }),
        TokenPresented::NotFound(id) => Decision::Deny(Denial {
                source: Source::Token,
            message: refused(what),
            detail: format!(
                "Approval token {id} does not exist in database \"{}\". Tokens are valid only in the database where they were requested.",
                here.name
            ),
            hint: request_hint,
        }),
        TokenPresented::Found(t) => {
            let fail = |detail: String, hint: String| {
                Decision::Deny(Denial {
                source: Source::Token,
                    message: refused(what.clone()),
                    detail: format!("Approval token {} cannot be used: {}", t.id, detail),
                    hint,
                })
            };
            match t.state {
                TokenState::Granted => {}
                TokenState::Pending => {
                    return fail(
                        "it is still pending; no human has granted it yet.".into(),
                        format!(
                            "Wait for an approver to run SELECT {}; check with SELECT * FROM {};",
                            api::call("grant_approval_token", &[(&t.id.to_string(), "uuid")]),
                            api::call("approval_token_status", &[(&t.id.to_string(), "uuid")]),
                        ),
                    )
                }
                TokenState::Denied => {
                    return fail(
                        format!(
                            "it was denied{}.",
                            t.decided_by
                                .as_deref()
                                .map(|d| format!(" by {d}"))
                                .unwrap_or_default()
                        ),
                        request_hint,
                    )
                }
                TokenState::Cancelled => return fail("it was cancelled.".into(), request_hint),
            }
            if let Some(used) = &t.used {
                return fail(
                    format!(
                        "it was already used at {} by pid {}. A token covers one statement.",
                        used.at, used.pid
                    ),
                    request_hint,
                );
            }
            if let Some(exp) = t.expires_at_us {
                if now_us >= exp {
                    return fail(
                        format!("it expired at {}.", t.expires_at_text),
                        request_hint,
                    );
                }
            }
            if t.requested_by != session.session_user {
                return fail(
                    format!(
                        "it was requested by role \"{}\", not by \"{}\"; a token is usable only by the role that requested it.",
                        t.requested_by, session.session_user
                    ),
                    request_hint,
                );
            }
            for (op, _) in &needing {
                if op.class != t.operation {
                    return fail(
                        format!(
                            "it was granted for {} but this is {}.",
                            t.operation, op.class
                        ),
                        request_hint_for(op, task),
                    );
                }
                match &t.verb {
                    Some(v) if !v.eq_ignore_ascii_case(&op.verb) => {
                        return fail(
                            format!("it was granted for {v} but this is {}.", op.verb),
                            request_hint_for(op, task),
                        );
                    }
                    None if !op.is_plain() => {
                        return fail(
                            format!(
                                "it names only the class {} and so covers its plain form, but this is {}: a token must name that form.",
                                t.operation, op.verb
                            ),
                            request_hint_for(op, task),
                        );
                    }
                    _ => {}
                }
                if t.target.is_none() && op.is_cluster_wide() {
                    return fail(
                        format!(
                            "it was granted for any object in database \"{}\", which does not cover {}: that object is not in this database.",
                            here.name,
                            op.describe()
                        ),
                        request_hint_for(op, task),
                    );
                }
                if let Some(target) = &t.target {
                    if !target.same_object(&op.object) {
                        return fail(
                            format!(
                                "it was granted for {} but this is {}.",
                                target.display, op.object.display
                            ),
                            request_hint_for(op, task),
                        );
                    }
                }
            }
            Decision::AllowWithToken { token: t.id }
        }
    }
}

fn task_sentence(task: Option<&str>) -> String {
    match task {
        Some(t) => format!(" Task: {t}."),
        None => String::new(),
    }
}

fn request_hint(op: &Operation, single: bool, task: Option<&str>) -> String {
    if single {
        request_hint_for(op, task)
    } else {
        format!(
            "Run the operations one statement at a time, each with its own token: SELECT {};",
            api::call(
                "request_approval_token",
                &[
                    (op.class.as_str(), "text"),
                    (task.unwrap_or("<task id>"), "text"),
                    ("<object>", "text"),
                ]
            )
        )
    }
}

fn request_hint_for(op: &Operation, task: Option<&str>) -> String {
    let target = token_target_text(op);
    let mut args = vec![
        (op.class.as_str(), "text"),
        (task.unwrap_or("<task id>"), "text"),
    ];
    // An object the call picks when it runs cannot be named: the token is
    // then for any object of this database.
    if !op.object.is_picked_at_run_time() {
        args.push((&target, "text"));
    }
    // A form that is not its class's plain one is approved only by name.
    let named: Vec<(&str, &str, &str)> = if op.is_plain() {
        Vec::new()
    } else {
        vec![("verb", op.verb.as_str(), "text")]
    };
    format!(
        "Request approval with SELECT {}; once a human has granted it, run SET ai_agent_safety.approval_token = '<token id>'; and retry.",
        api::call_named("request_approval_token", &args, &named)
    )
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// True when this class needs a token in this database.
pub fn needs_approval(db: &DatabaseFacts, class: OpClass) -> bool {
    db.require_approval && db.protected.contains(class)
}
