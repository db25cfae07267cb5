//! The one place that answers "may this agent do this here?".
//!
//! Plain Rust values in, a [`Decision`] out. No PostgreSQL inside, so every
//! rule here is unit-tested without a server.

use crate::facts::{DatabaseFacts, SessionFacts, TokenPresented, TokenState};
use crate::operation::{OpClass, Operation};

/// Why a statement was refused: the three parts of a PostgreSQL error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Which rule refused: `approval`, `token` or `environment` (audit source).
    pub source: &'static str,
    pub message: String,
    pub detail: String,
    pub hint: String,
}

impl Denial {
    /// The reason as one sentence a person can read (for the audit log).
    pub fn reason(&self) -> String {
        format!("{}. {}", self.message, self.detail)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to refuse.
    Allow,
    /// Protected, but a valid token was presented: consume it, then allow.
    AllowWithToken { token: String },
    /// Refused.
    Deny(Denial),
}

/// Decides one statement.
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
                source: "approval",
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
            if session.current_user != session.session_user {
                format!(" (acting as \"{}\")", session.current_user)
            } else {
                String::new()
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
                source: "approval",
            message: refused(what),
            detail: why,
            hint: request_hint,
        }),
        TokenPresented::Malformed(raw) => Decision::Deny(Denial {
                source: "token",
            message: refused(what),
            detail: format!(
                "ai_agent_safety.approval_token is set to \"{}\", which is not a token id (a UUID such as 3f2c1e9a-8b7d-4c6e-9f10-2a3b4c5d6e7f).",
                shorten(raw, 80)
            ),
            hint: format!(
                "Set the token id exactly as request_approval_token returned it: SET ai_agent_safety.approval_token = '<token id>'; or RESET ai_agent_safety.approval_token; and {}",
                lowercase_first(&request_hint)
            ),
        }),
        TokenPresented::Unavailable(why_not) => Decision::Deny(Denial {
                source: "token",
            message: refused(what),
            detail: format!("The approval token could not be checked: {why_not}."),
            hint: "A DBA should run CREATE EXTENSION ai_agent_safety; in this database (or repair it), then retry.".into(),
        }),
        TokenPresented::NotFound(id) => Decision::Deny(Denial {
                source: "token",
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
                source: "token",
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
                            "Wait for an approver to run SELECT grant_approval_token('{}'); check with SELECT * FROM approval_token_status('{}');",
                            t.id, t.id
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
            Decision::AllowWithToken { token: t.id.clone() }
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
            "Run the operations one statement at a time, each with its own token: SELECT request_approval_token('{}', '{}', '<object>');",
            op.class,
            sql_literal_body(task.unwrap_or("<task id>"))
        )
    }
}

fn request_hint_for(op: &Operation, task: Option<&str>) -> String {
    let target = token_target_text(op);
    format!(
        "Request approval with SELECT request_approval_token('{}', '{}', '{}'); once a human has granted it, run SET ai_agent_safety.approval_token = '<token id>'; and retry.",
        op.class,
        sql_literal_body(task.unwrap_or("<task id>")),
        sql_literal_body(&target)
    )
}

/// How request_approval_token's `target` names the operation's object.
pub fn token_target_text(op: &Operation) -> String {
    match (&op.target_database, op.class) {
        (Some(db), _) => format!("DATABASE {db}"),
        _ if op.verb.starts_with("DROP SCHEMA") => format!("SCHEMA {}", op.object.display),
        _ => op.object.display.clone(),
    }
}

fn sql_literal_body(s: &str) -> String {
    s.replace('\'', "''")
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

/// Environment and task rules. `None` when they allow the statement.
fn environment_denial(
    session: &SessionFacts,
    here: &DatabaseFacts,
    target_db: Option<&DatabaseFacts>,
    ops: &[Operation],
) -> Option<Denial> {
    let task_id = session.task_id.as_deref().unwrap_or("(no task id)");
    for op in ops {
        if let (Some(_), Some(t)) = (&op.target_database, target_db) {
            if !crate::credentials::environment_in_scope(
                session.allowed_environments.as_deref(),
                t.environment.as_deref(),
            ) {
                return Some(Denial {
                    source: "environment",
                    message: format!(
                        "{} refused: database \"{}\" is environment {}, which is outside the scope of agent role \"{}\"",
                        op.describe(),
                        t.name,
                        env_text(t.environment.as_deref()),
                        session.session_user
                    ),
                    detail: format!(
                        "Agent role \"{}\" may act only in environments: {}.",
                        session.session_user,
                        scope_text(session.allowed_environments.as_deref())
                    ),
                    hint: format!(
                        "If this is intended, a DBA must widen the scope: ALTER ROLE \"{}\" SET ai_agent_safety.allowed_environments = '{}';",
                        session.session_user,
                        t.environment.as_deref().unwrap_or("")
                    ),
                });
            }
            if let Some(task_env) = session.task_environment.as_deref() {
                if t.environment.as_deref() != Some(task_env) {
                    return Some(Denial {
                    source: "environment",
                        message: format!(
                            "{} refused: database \"{}\" is environment {}, but task {} declared environment {}",
                            op.describe(),
                            t.name,
                            env_text(t.environment.as_deref()),
                            task_id,
                            task_env
                        ),
                        detail: format!(
                            "{}-tier access during a {} task is not allowed for agent role \"{}\".",
                            t.environment.as_deref().unwrap_or("unlabelled"),
                            task_env,
                            session.session_user
                        ),
                        hint: "Run this from a task whose declared environment matches: SET ai_agent_safety.task_environment = '<environment>';".into(),
                    });
                }
            }
        }
    }
    if let Some(task_env) = session.task_environment.as_deref() {
        if here.environment.as_deref() != Some(task_env) {
            // DROP DATABASE is judged by the target's environment (above), not by
            // the database the agent happens to be connected to.
            if let Some(op) = ops
                .iter()
                .find(|o| o.is_write && o.target_database.is_none())
            {
                return Some(Denial {
                    source: "environment",
                    message: format!(
                        "{} refused: database \"{}\" is environment {}, but task {} declared environment {}",
                        op.describe(),
                        here.name,
                        env_text(here.environment.as_deref()),
                        task_id,
                        task_env
                    ),
                    detail: format!(
                        "{}-tier access during a {} task is not allowed: agent role \"{}\" may write only in databases of the task's environment.",
                        here.environment.as_deref().unwrap_or("unlabelled"),
                        task_env,
                        session.session_user
                    ),
                    hint: format!(
                        "Connect to a {task_env} database, or declare the task's real environment: SET ai_agent_safety.task_environment = '{}';",
                        here.environment.as_deref().unwrap_or("<environment>")
                    ),
                });
            }
        }
    }
    None
}

pub(crate) fn env_text(env: Option<&str>) -> String {
    match env {
        Some(e) => e.to_string(),
        None => "(unlabelled)".to_string(),
    }
}

pub(crate) fn scope_text(scope: Option<&[String]>) -> String {
    match scope {
        None => "none set (only databases without an environment label)".into(),
        Some([]) => "none set (only databases without an environment label)".into(),
        Some(v) => v.join(", "),
    }
}

/// True when this class needs a token in this database.
pub fn needs_approval(db: &DatabaseFacts, class: OpClass) -> bool {
    db.require_approval && db.protected.contains(class)
}

/// Decides a write or DDL statement that destroys nothing (INSERT, CREATE ...):
/// only the task-environment rule applies.
pub fn decide_write(session: &SessionFacts, here: &DatabaseFacts, verb: &str) -> Decision {
    if !session.is_agent {
        return Decision::Allow;
    }
    let Some(task_env) = session.task_environment.as_deref() else {
        return Decision::Allow;
    };
    if here.environment.as_deref() == Some(task_env) {
        return Decision::Allow;
    }
    let task_id = session.task_id.as_deref().unwrap_or("(no task id)");
    Decision::Deny(Denial {
        source: "environment",
        message: format!(
            "{} refused: database \"{}\" is environment {}, but task {} declared environment {}",
            verb,
            here.name,
            env_text(here.environment.as_deref()),
            task_id,
            task_env
        ),
        detail: format!(
            "{}-tier access during a {} task is not allowed: agent role \"{}\" may write only in databases of the task's environment.",
            here.environment.as_deref().unwrap_or("unlabelled"),
            task_env,
            session.session_user
        ),
        hint: format!(
            "Connect to a {task_env} database, or declare the task's real environment: SET ai_agent_safety.task_environment = '{}';",
            here.environment.as_deref().unwrap_or("<environment>")
        ),
    })
}
