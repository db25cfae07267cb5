//! The one place that answers "may this agent do this here?".
//!
//! Plain Rust values in, a [`Decision`] out. No PostgreSQL inside, so every
//! rule here is unit-tested without a server.

use crate::api;
use crate::audit::Source;
use crate::environment::{decide_write, environment_denial};
use crate::facts::{DatabaseFacts, SessionFacts, TokenPresented, TokenState};
use crate::operation::{OpClass, Operation, Statement};
use crate::outcome::{Decision, Denial};
use crate::side_door::SideDoor;
use crate::way_forward::{
    in_message, lowercase_first, next_from_hint, present, request_hint, request_next, shorten,
    task_sentence, Asked,
};
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
    // A refusal whose next step is its hint: the hint (for an agent's code
    // run by another role, what that role can do) ends the message too.
    let finish = |d: Denial| {
        let d = match &session.run_by {
            Some(by) => Denial {
                hint: agent_code_hint(&session.session_user, by),
                ..d
            },
            None => d,
        };
        Decision::Deny(in_message(d))
    };
    if stmt.changes_roles && session.is_agent {
        return finish(crate::roles::role_change_denial(session, here, stmt));
    }
    if !stmt.changes_settings.is_empty() && session.is_agent {
        return finish(crate::guard_settings::settings_change_denial(
            &session.session_user,
            stmt.verb,
            &stmt.changes_settings,
        ));
    }
    if let (Some(taken), true) = (&stmt.takes_api_name, session.is_agent) {
        return finish(crate::api::api_name_denial(&session.session_user, taken));
    }
    if let (Some(h), true) = (&stmt.hands_over, session.is_agent) {
        return finish(crate::handover::handover_denial(&session.session_user, h));
    }
    // A review ends with PREPARE TRANSACTION, for an approver to commit.
    if let (Some((_, SideDoor::PreparedTransaction)), Some(_)) = (stmt.side_door, &session.review) {
        return Decision::AllowInReview;
    }
    // A distributed transaction's two-phase commit, sent by the node that
    // coordinates it (Citus prepares every worker's part).
    if let (Some((_, SideDoor::PreparedTransaction)), true) =
        (stmt.side_door, session.from_cluster_node)
    {
        return Decision::AllowFromClusterNode;
    }
    if stmt.reaches_other_nodes && session.is_agent && session.current_user != session.session_user
    {
        return finish(crate::side_door::other_nodes_as_another_role_denial(
            &session.session_user,
            &session.current_user,
            &stmt.what(),
        ));
    }
    if let (Some((verb, door)), true) = (stmt.side_door, session.is_agent) {
        return finish(crate::side_door::side_door_denial(
            &session.session_user,
            verb,
            door,
        ));
    }
    if !stmt.ops.is_empty() {
        // Its message carries its own next step (an agent's code run by
        // another role: what that role can do).
        match (
            &session.run_by,
            decide(session, here, target_db, &stmt.ops, token, now_us),
        ) {
            (Some(by), Decision::Deny(d)) => Decision::Deny(Denial {
                hint: agent_code_hint(&session.session_user, by),
                ..d
            }),
            (_, d) => d,
        }
    } else if stmt.writes {
        match decide_write(session, here, stmt.verb) {
            Decision::Deny(d) => finish(d),
            d => d,
        }
    } else {
        Decision::Allow
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
        Decision::Allow
        | Decision::AllowWithToken { .. }
        | Decision::AllowInReview
        | Decision::AllowFromClusterNode => Denial {
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
            return Decision::Deny(in_message(Denial {
                source: Source::Guard,
                message: format!(
                    "{} refused: the settings of the target database could not be read",
                    op.describe()
                ),
                detail: "ai_agent_safety decides DROP DATABASE by the target database's own settings, and they were not available.".into(),
                hint: "Retry; if this persists, check the server log.".into(),
            }));
        }
    }
    if let Some(d) = environment_denial(session, here, target_db, ops) {
        return Decision::Deny(in_message(d));
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
    // Part of a statement another node of the cluster judged (Citus's
    // shard statement of a distributed DELETE or UPDATE that node
    // approved). Row changes only: a node sends a TRUNCATE or DROP of a
    // shard for Citus's own functions too, which an agent can call with
    // nothing destructive for its node to judge.
    if session.from_cluster_node
        && needing
            .iter()
            .all(|(op, _)| matches!(op.class, OpClass::Delete | OpClass::Update))
    {
        return Decision::AllowFromClusterNode;
    }

    // In a review, row changes wait for an approver's COMMIT PREPARED;
    // nothing else is covered there, not even with a token.
    if let Some(review_task) = &session.review {
        let uncovered: Vec<&Operation> = needing
            .iter()
            .map(|(op, _)| *op)
            .filter(|op| !crate::review::covers(op.class))
            .collect();
        return if uncovered.is_empty() {
            Decision::AllowInReview
        } else {
            Decision::Deny(in_message(crate::review::uncovered_denial(
                &session.session_user,
                review_task,
                &uncovered,
            )))
        };
    }
    let task = session.task_id.as_deref();
    let why = format!(
        "Database \"{}\" has ai_agent_safety.require_approval = on, and ai_agent_safety.protected_operations ({}) includes {}.{}",
        first_db.name,
        first_db.protected.describe(),
        first.class,
        task_sentence(task)
    );
    let refused = format!(
        "{} refused: agent role \"{}\" needs an approval token in database \"{}\"{}",
        if needing.len() == 1 {
            first.describe()
        } else {
            let v: Vec<String> = needing.iter().map(|(o, _)| o.describe()).collect();
            v.join(", ")
        },
        session.session_user,
        here.name,
        match &session.run_by {
            Some(by) => format!(" (its code, run by \"{by}\")"),
            None if session.current_user != session.session_user => {
                format!(" (acting as \"{}\")", session.current_user)
            }
            None => String::new(),
        }
    );
    let asked = Asked::of(needing.iter().map(|(o, _)| *o));
    // The refusal, its message ending with the next step (for an agent's
    // code run by another role, that role's: the token is not theirs).
    let deny = |source: Source, problem: &str, next: String, detail: String, hint: String| {
        let next = match &session.run_by {
            Some(by) => next_from_hint(&agent_code_hint(&session.session_user, by)),
            None => next,
        };
        Decision::Deny(Denial {
            source,
            message: format!("{refused}{problem}; {next}"),
            detail,
            hint,
        })
    };
    // After a token failed: request a new one.
    let again = |op: &Operation| request_next(op, asked, task, true);
    let leftover = |raw: &str| {
        if session.token_from_setting {
            format!(
                " The token came from the setting ai_agent_safety.approval_token: on a pooled connection that can be left over from another client or an earlier call; {}.",
                present(raw)
            )
        } else {
            String::new()
        }
    };

    match token {
        TokenPresented::None => deny(
            Source::Guard,
            "",
            request_next(first, asked, task, false),
            why,
            request_hint(first, asked, task),
        ),
        TokenPresented::Held(t) => {
            let id = t.id.to_string();
            deny(
                Source::Guard,
                &format!(
                    "; it holds granted approval token {id} for this, but the statement did not present it"
                ),
                format!("send it in the same call: {}", present(&id)),
                format!(
                    "Token {id} was granted{} for {}{}, is unused, and was not set in this session when the statement ran: a SET made in another call may have reached another pooled connection, or been lost when the client reconnected.",
                    t.decided_by.as_deref().map(|d| format!(" by {d}")).unwrap_or_default(),
                    t.operation,
                    t.target.as_ref().map(|o| format!(" on {}", o.display)).unwrap_or_default(),
                ),
                format!(
                    "Send the token with the statement: {}; or run SET LOCAL ai_agent_safety.approval_token = '{id}'; in the statement's own transaction.",
                    present(&id)
                ),
            )
        }
        TokenPresented::Malformed(raw) => deny(
            Source::Token,
            "; the token presented is not a token id",
            again(first),
            format!(
                "The approval token presented is \"{}\", which is not a token id (a UUID such as 3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f).",
                shorten(raw, 80)
            ),
            format!(
                "Present the token id exactly as ai_agent_safety.request_approval_token returned it ({}, or SET ai_agent_safety.approval_token = '<token id>';), or RESET ai_agent_safety.approval_token; and {}",
                present("<token id>"),
                lowercase_first(&request_hint(first, asked, task))
            ),
        ),
        TokenPresented::Unavailable(why_not) => deny(
            Source::Token,
            "; the approval token could not be checked",
            format!("a DBA must repair the extension: CREATE EXTENSION ai_agent_safety; in database \"{}\"", here.name),
            format!("The approval token could not be checked: {why_not}."),
            "A DBA should run CREATE EXTENSION ai_agent_safety; in this database (or repair it), then retry.".into(),
        ),
        TokenPresented::NotServed(why) => deny(
            Source::Token,
            "; the approval token could not be checked",
            format!(
                "a DBA must bring the extension and its library to one version in database \"{}\"",
                here.name
            ),
            format!("The approval token could not be checked: {}.", why.reason()),
            why.hint(),
        ),
        TokenPresented::NotFound(id) => deny(
            Source::Token,
            &format!("; approval token {id} does not exist here"),
            again(first),
            format!(
                "Approval token {id} does not exist in database \"{}\". Tokens are valid only in the database where they were requested.{}",
                here.name,
                leftover(&id.to_string())
            ),
            request_hint(first, asked, task),
        ),
        TokenPresented::Found(t) => {
            let id = t.id.to_string();
            let fail = |problem: String, next: String, detail: String, hint: String| {
                deny(
                    Source::Token,
                    &format!("; approval token {id} {problem}"),
                    next,
                    format!("Approval token {id} cannot be used: {detail}"),
                    hint,
                )
            };
            // The refusal for a token that cannot be used for this statement.
            let unusable = |problem: String, detail: String, op: &Operation| {
                fail(
                    problem,
                    again(op),
                    format!("{detail}{}", leftover(&id)),
                    request_hint(op, Asked::One, task),
                )
            };
            match t.state {
                TokenState::Granted => {}
                TokenState::Pending => {
                    let status = api::call("approval_token_status", &[(&id, "uuid")]);
                    return fail(
                        "is still pending".into(),
                        format!("wait until a human grants it (SELECT * FROM {status};), then retry"),
                        "it is still pending; no human has granted it yet.".into(),
                        format!(
                            "Wait for an approver to run SELECT {}; check with SELECT * FROM {status};",
                            api::call("grant_approval_token", &[(&id, "uuid")]),
                        ),
                    );
                }
                TokenState::Denied => {
                    let by = t.decided_by.as_deref().map(|d| format!(" by {d}")).unwrap_or_default();
                    return fail(
                        format!("was denied{by}"),
                        again(first),
                        format!("it was denied{by}."),
                        request_hint(first, asked, task),
                    );
                }
                TokenState::Cancelled => {
                    return fail(
                        "was cancelled".into(),
                        again(first),
                        "it was cancelled.".into(),
                        request_hint(first, asked, task),
                    )
                }
            }
            if let Some(used) = &t.used {
                return unusable(
                    "was already used".into(),
                    format!(
                        "it was already used at {} by pid {}. A token covers one statement.",
                        used.at, used.pid
                    ),
                    first,
                );
            }
            if let Some(exp) = t.expires_at_us {
                if now_us >= exp {
                    return unusable(
                        "expired".into(),
                        format!("it expired at {}.", t.expires_at_text),
                        first,
                    );
                }
            }
            if t.requested_by != session.session_user {
                return unusable(
                    format!("was requested by role \"{}\"", t.requested_by),
                    format!(
                        "it was requested by role \"{}\", not by \"{}\"; a token is usable only by the role that requested it.",
                        t.requested_by, session.session_user
                    ),
                    first,
                );
            }
            // A token for any object approves one object: a statement that
            // would act on several needs a token per object.
            if t.target.is_none() && needing.len() > 1 {
                return unusable(
                    "covers one object".into(),
                    format!(
                        "it was granted for one {} on any object in database \"{}\", and this statement has {} protected operations ({}).",
                        t.operation,
                        here.name,
                        needing.len(),
                        needing.iter().map(|(o, _)| o.describe()).collect::<Vec<_>>().join(", ")
                    ),
                    first,
                );
            }
            for (op, _) in &needing {
                let rest_of_bound_merge = t.approves_rest_of_merge(op, needing.iter().map(|(o, _)| *o));
                // (Its object and its form are checked below.)
                if op.class != t.operation && !rest_of_bound_merge {
                    return unusable(
                        format!("was granted for {}", t.operation),
                        format!("it was granted for {} but this is {}.", t.operation, op.class),
                        op,
                    );
                }
                match &t.verb {
                    Some(v) if !rest_of_bound_merge && !v.eq_ignore_ascii_case(&op.verb) => {
                        return unusable(
                            format!("was granted for {v}"),
                            format!("it was granted for {v} but this is {}.", op.verb),
                            op,
                        );
                    }
                    None if !op.is_plain() && t.bound.is_none() => {
                        return unusable(
                            format!("names only the class {}", t.operation),
                            format!(
                                "it names only the class {} and so covers its plain form, but this is {}: a token must name that form.",
                                t.operation, op.verb
                            ),
                            op,
                        );
                    }
                    _ => {}
                }
                if t.target.is_none() && op.is_cluster_wide() {
                    return unusable(
                        format!("covers only objects in database \"{}\"", here.name),
                        format!(
                            "it was granted for any object in database \"{}\", which does not cover {}: that object is not in this database.",
                            here.name,
                            op.describe()
                        ),
                        op,
                    );
                }
                if let Some(target) = &t.target {
                    if !target.same_object(&op.object) {
                        // The same name on another object: the approved one
                        // was renamed or dropped, and this one took its name.
                        let detail = if target.display == op.object.display {
                            format!(
                                "it was granted for the object then named {} (oid {}), and that name is now another object's (oid {}): the approved one was renamed or dropped since. A token covers the object it was granted for, under whatever name.",
                                target.display, target.objid, op.object.objid
                            )
                        } else {
                            format!(
                                "it was granted for {} but this is {}.",
                                target.display, op.object.display
                            )
                        };
                        return unusable(format!("was granted for {}", target.display), detail, op);
                    }
                }
            }
            if let Some(b) = &t.bound {
                let presented = b.presented_form.as_deref().unwrap_or("");
                if crate::statement_form::only_table_code_differs(&b.approved_form, presented) {
                    let target = needing.first().map_or_else(String::new, |(o, _)| o.object.display.clone());
                    return fail(
                        "was granted while the table's own code was different".into(),
                        format!("request a new one for the table as it is now: {}", crate::way_forward::request_call(first, task)),
                        format!(
                            "it is bound to its statement and to what runs when {target} is written besides: its triggers (and their functions), rules, column defaults and row security policies. One of them changed since the request, so the statement would no longer do what was approved."
                        ),
                        format!("Request approval again, so that the approver sees the statement with the table as it is now: {}.", crate::way_forward::request_call(first, task)),
                    );
                }
                if b.presented_form.as_deref() != Some(b.approved_form.as_str()) {
                    let exact = format!("{} {}", b.approved.trim_end_matches([';', ' ', '\n']), crate::sql_comment::tag(crate::sql_comment::TOKEN_KEY, &id));
                    return fail(
                        "was granted for another statement".into(),
                        format!("send exactly the approved statement with it: {exact}"),
                        format!(
                            "it is bound to the statement it was requested for, and this one differs from it. Approved: {}. This one: {}. Whitespace, comments and keyword case do not matter; constants (bind parameters too), tables, columns and conditions do.",
                            b.approved.trim(),
                            b.presented.trim()
                        ),
                        format!("Send the approved statement as it was requested, with its values written in: {exact}; or request a token for this one: {}.", crate::way_forward::request_call(first, task)),
                    );
                }
            }
            Decision::AllowWithToken { token: t.id }
        }
    }
}

/// True when this class needs a token in this database.
pub fn needs_approval(db: &DatabaseFacts, class: OpClass) -> bool {
    db.require_approval && db.protected.contains(class)
}
