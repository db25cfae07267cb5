//! Connections as the signed-in person: opening them (PostgreSQL does the
//! authentication), checking who they are, and hearing NOTIFY on them.

use crate::config::Target;
use futures_util::StreamExt;
use std::fmt;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, Client, NoTls};

pub const REQUESTS: &str = "ai_agent_safety_requests";
pub const DECISIONS: &str = "ai_agent_safety_decisions";

/// A database error as a person reads it: message, DETAIL, HINT, SQLSTATE.
#[derive(Debug, Clone)]
pub struct DbError {
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub code: Option<String>,
}

impl DbError {
    pub fn plain(message: impl Into<String>) -> DbError {
        DbError {
            message: message.into(),
            detail: None,
            hint: None,
            code: None,
        }
    }

    pub fn is_privilege(&self) -> bool {
        self.code.as_deref() == Some("42501")
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        match e.as_db_error() {
            Some(d) => DbError {
                message: d.message().to_string(),
                detail: d.detail().map(str::to_string),
                hint: d.hint().map(str::to_string),
                code: Some(d.code().code().to_string()),
            },
            None => DbError::plain(e.to_string()),
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " DETAIL: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, " HINT: {h}")?;
        }
        Ok(())
    }
}

/// A NOTIFY heard on a connection. Only the channel and the database of the
/// connection that heard it are kept, plus the token id as a key to read the
/// row by: nothing else in a payload is taken (any role can NOTIFY).
#[derive(Debug, Clone)]
pub struct DbEvent {
    pub database: String,
    pub channel: String,
    pub token: Option<uuid::Uuid>,
}

fn token_of(payload: &str) -> Option<uuid::Uuid> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    v.get("token")?.as_str()?.parse().ok()
}

/// One connection, as one role, to one database.
pub struct DbConn {
    pub label: String,
    pub client: Client,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl DbConn {
    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || *self.closed.borrow()
    }

    /// Returns once the server connection has ended.
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Opens a connection as `role`. Notifications go to `events` (when given).
pub async fn open(
    target: &Target,
    role: &str,
    password: &str,
    events: Option<broadcast::Sender<DbEvent>>,
) -> Result<DbConn, DbError> {
    let mut cfg = target.config.clone();
    cfg.user(role)
        .password(password)
        .application_name("ai_agent_safety_console")
        .connect_timeout(std::time::Duration::from_secs(10));
    let (client, mut connection) = cfg.connect(NoTls).await?;
    let label = target.label.clone();
    let (closed_tx, closed) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Some(tx) = &events {
                        let _ = tx.send(DbEvent {
                            database: label.clone(),
                            channel: n.channel().to_string(),
                            token: token_of(n.payload()),
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(database = %label, error = %e, "connection ended");
                    break;
                }
            }
        }
        let _ = closed_tx.send(true);
    });
    Ok(DbConn {
        label: target.label.clone(),
        client,
        closed,
    })
}

/// Signs in: refuses a server that lets the role in without its password
/// (so the console never lets anyone in on `trust`), then opens the
/// connection.
pub async fn sign_in(
    target: &Target,
    role: &str,
    password: &str,
    events: Option<broadcast::Sender<DbEvent>>,
) -> Result<DbConn, DbError> {
    let wrong = format!("not-the-password-{}", uuid::Uuid::new_v4());
    if wrong != password && open(target, role, &wrong, None).await.is_ok() {
        return Err(DbError::plain(format!(
            "the PostgreSQL server at {} let role \"{role}\" in without checking its password, so the console cannot use it to sign anyone in",
            target.describe()
        ))
        .with_hint(
            "Use password authentication (scram-sha-256) for the console's connections in pg_hba.conf.",
        ));
    }
    open(target, role, password, events).await
}

impl DbError {
    pub fn with_hint(mut self, hint: &str) -> DbError {
        self.hint = Some(hint.to_string());
        self
    }
}

/// Who the connection's role is, for the console's own gate.
#[derive(Debug)]
pub struct Identity {
    pub agent: bool,
    pub approver: bool,
    pub superuser: bool,
}

/// Reads who the session is. With the extension created, `session_is_agent`
/// decides agents; without it (the discovery database), membership in the
/// agent group is read from the catalog.
pub async fn identity(c: &Client) -> Result<Identity, DbError> {
    let row = c
        .query_one(
            "WITH g AS (SELECT COALESCE(NULLIF(current_setting('ai_agent_safety.agent_role', true), ''),
                                        'ai_agent') AS agent_group)
             SELECT CASE WHEN to_regprocedure('ai_agent_safety.session_is_agent()') IS NOT NULL
                         THEN ai_agent_safety.session_is_agent()
                         WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g.agent_group)
                         THEN pg_has_role(session_user, g.agent_group, 'MEMBER')
                         ELSE false END,
                    CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ai_agent_approver')
                         THEN pg_has_role(session_user, 'ai_agent_approver', 'MEMBER')
                         ELSE false END,
                    r.rolsuper
               FROM pg_roles r, g WHERE r.rolname = session_user",
            &[],
        )
        .await?;
    Ok(Identity {
        agent: row.get(0),
        approver: row.get(1),
        superuser: row.get(2),
    })
}

/// The gate: agents never; humans only as approvers or superusers (unless
/// `need_approver` is false: the console's own watch role only reads).
pub fn admit(role: &str, who: &Identity, need_approver: bool) -> Result<(), DbError> {
    if who.agent {
        return Err(DbError::plain(format!(
            "role \"{role}\" is an AI agent (a member of the agent group); agents may not use the approver's console"
        ))
        .with_hint("Agents ask for approval with ai_agent_safety.request_approval_token; a human approver decides here."));
    }
    if need_approver && !who.approver && !who.superuser {
        return Err(DbError::plain(format!(
            "role \"{role}\" is neither a member of ai_agent_approver nor a superuser, so it may not decide approval requests"
        ))
        .with_hint(&format!(
            "A superuser can make it an approver: GRANT ai_agent_approver TO \"{role}\";"
        )));
    }
    Ok(())
}

/// Databases on the server of `c` that the person may connect to, whose
/// names match the LIKE pattern.
pub async fn discover(c: &Client, like: &str) -> Result<Vec<String>, DbError> {
    let rows = c
        .query(
            "SELECT datname::text FROM pg_database
              WHERE datallowconn AND NOT datistemplate
                AND has_database_privilege(datname, 'CONNECT')
                AND datname::text LIKE $1
              ORDER BY datname",
            &[&like],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn has_extension(c: &Client) -> Result<bool, DbError> {
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'ai_agent_safety')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn listen(c: &Client) -> Result<(), DbError> {
    c.batch_execute(&format!("LISTEN {REQUESTS}; LISTEN {DECISIONS}"))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_token_only() {
        let t = token_of(r#"{"token": "8c2952f6-081c-488d-b9ff-9afcc9069553", "database": "x"}"#);
        assert_eq!(
            t.unwrap().to_string(),
            "8c2952f6-081c-488d-b9ff-9afcc9069553"
        );
        assert!(token_of("not json").is_none());
        assert!(token_of(r#"{"token": "<b>"}"#).is_none());
    }

    #[test]
    fn gate() {
        let agent = Identity {
            agent: true,
            approver: true,
            superuser: false,
        };
        assert!(admit("bot", &agent, false)
            .unwrap_err()
            .message
            .contains("agent"));
        let nobody = Identity {
            agent: false,
            approver: false,
            superuser: false,
        };
        assert!(admit("bob", &nobody, true)
            .unwrap_err()
            .message
            .contains("neither"));
        let dba = Identity {
            agent: false,
            approver: true,
            superuser: false,
        };
        assert!(admit("alice", &dba, true).is_ok());
    }
}
