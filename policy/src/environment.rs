//! Environment rules: which databases an agent may reach and write in.
//!
//! A database carries a label (`ai_agent_safety.environment`), an agent role
//! a scope (`allowed_environments`), and a task may declare the environment
//! it is meant for (`task_environment`). Used at login and for every write.

use crate::audit::Source;
use crate::facts::{DatabaseFacts, SessionFacts};
use crate::operation::Operation;
use crate::outcome::{Decision, Denial};

/// Is a database with this environment label within the agent's scope?
/// No scope set: only unlabelled databases.
pub fn environment_in_scope(scope: Option<&[String]>, db_env: Option<&str>) -> bool {
    match (scope, db_env) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(s), Some(e)) => s.iter().any(|x| x == e),
    }
}

/// The connection check for environments. `Err` carries the error text.
pub fn check_connect_environment(
    role: &str,
    scope: Option<&[String]>,
    db: &str,
    db_env: Option<&str>,
) -> Result<(), String> {
    if environment_in_scope(scope, db_env) {
        Ok(())
    } else {
        Err(format!(
            "agent role \"{}\" may not connect to database \"{}\": the database is environment {}, but the role's allowed environments are {}",
            role,
            db,
            env_text(db_env),
            scope_text(scope)
        ))
    }
}

/// Environment and task rules. `None` when they allow the statement.
pub(crate) fn environment_denial(
    session: &SessionFacts,
    here: &DatabaseFacts,
    target_db: Option<&DatabaseFacts>,
    ops: &[Operation],
) -> Option<Denial> {
    let task_id = session.task_id.as_deref().unwrap_or("(no task id)");
    for op in ops {
        if let (Some(_), Some(t)) = (&op.target_database, target_db) {
            if !environment_in_scope(
                session.allowed_environments.as_deref(),
                t.environment.as_deref(),
            ) {
                return Some(Denial {
                    source: Source::Environment,
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
                    source: Source::Environment,
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
                return Some(task_environment_denial(
                    &op.describe(),
                    session,
                    here,
                    task_env,
                ));
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
    Decision::Deny(task_environment_denial(verb, session, here, task_env))
}

/// The refusal of a write (`what`) in a database whose environment is not
/// the one the agent's task declared.
fn task_environment_denial(
    what: &str,
    session: &SessionFacts,
    here: &DatabaseFacts,
    task_env: &str,
) -> Denial {
    let task_id = session.task_id.as_deref().unwrap_or("(no task id)");
    Denial {
        source: Source::Environment,
        message: format!(
            "{} refused: database \"{}\" is environment {}, but task {} declared environment {}",
            what,
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
    }
}
