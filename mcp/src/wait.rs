//! `wait_for_decision`: LISTEN for decisions, read the token's status, and
//! wait for a notification about this token until the time is up.
//!
//! The payload of `ai_agent_safety_decisions` (`{"token": ..., "database":
//! ...}`) can be sent by any role, so it is only a wake-up: the decision is
//! always read from `ai_agent_safety.approval_token_status`. LISTEN comes
//! before the first read, so a decision made between the two is seen either
//! by the read or as a notification. The status is also read every `TICK`,
//! so a notification lost with a connection delays the answer, never loses it.

use crate::errors::Failure;
use crate::pg::Db;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client};

pub const CHANNEL: &str = "ai_agent_safety_decisions";

/// While waiting, the status is read again and progress reported (to a
/// client that asked for it, so it does not give up on a long wait) this
/// often.
pub const TICK: Duration = Duration::from_secs(10);

/// What the wait can be told from outside: report progress, stop early.
pub struct Hooks<P, C> {
    pub progress: P,
    pub cancelled: C,
}

/// Aborts the task that drives the connection when the wait ends (also when
/// the tool call is dropped), which closes the connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits up to `timeout` for a decision about `token`.
pub async fn wait_for_decision<P, PF, C>(
    db: &Db,
    token: &str,
    timeout: Duration,
    hooks: Hooks<P, C>,
) -> Result<Value, Failure>
where
    P: FnMut(Duration) -> PF,
    PF: std::future::Future<Output = ()>,
    C: std::future::Future<Output = ()>,
{
    let Hooks {
        mut progress,
        cancelled,
    } = hooks;
    let started = Instant::now();
    let deadline = started + timeout;
    let (client, mut connection) = db.connect_raw().await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    // Drive the connection ourselves to see its notifications.
    let _driver = AbortOnDrop(tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() == CHANNEL && tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {} // notices
                Some(Err(e)) => {
                    crate::log(&format!("wait_for_decision: connection failed: {e}"));
                    break;
                }
                None => break,
            }
        }
    }));

    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let mut status = read_status(&client, token).await?;
    if status.is_pending() {
        crate::log(&format!(
            "wait_for_decision: token {} is pending; listening on {CHANNEL} for up to {}s",
            status.token,
            timeout.as_secs()
        ));
    }
    let mut cancelled = std::pin::pin!(cancelled);
    let mut next_tick = started + TICK;
    let mut seen_by = "first_read";
    while status.is_pending() {
        tokio::select! {
            payload = rx.recv() => match payload {
                Some(p) => {
                    if about_token(&p, &status.token) {
                        crate::log(&format!("wait_for_decision: notification for token {}", status.token));
                        status = read_status(&client, token).await?;
                        seen_by = "notification";
                    }
                }
                None => {
                    return Err(Failure::Usage(
                        "the connection used to wait for the decision closed; call wait_for_decision again".into(),
                    ))
                }
            },
            _ = tokio::time::sleep_until(next_tick.min(deadline)) => {
                if Instant::now() >= deadline {
                    break;
                }
                // A notification can be lost with its connection: read again
                // now and then, whatever the notifications say.
                status = read_status(&client, token).await?;
                seen_by = "periodic_read";
                progress(started.elapsed()).await;
                next_tick += TICK;
            },
            _ = &mut cancelled => break,
        }
    }
    // One last read: the decision may have come with the deadline.
    if status.is_pending() {
        status = read_status(&client, token).await?;
        seen_by = "final_read";
    }
    crate::log(&format!(
        "wait_for_decision: token {} is {} after {:.1}s",
        status.token,
        status.status,
        started.elapsed().as_secs_f64()
    ));
    Ok(status.to_json(started.elapsed(), seen_by))
}

/// Does this payload name this token? Anything unreadable is ignored.
pub fn about_token(payload: &str, token: &str) -> bool {
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned))
        .is_some_and(|t| t.eq_ignore_ascii_case(token))
}

/// One read of `approval_token_status`.
pub struct Status {
    pub token: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub comment: Option<String>,
    pub expires_at: Option<String>,
}

impl Status {
    fn is_pending(&self) -> bool {
        self.status == "pending"
    }

    fn to_json(&self, waited: Duration, seen_by: &str) -> Value {
        let next_step = match self.status.as_str() {
            "granted" => format!(
                "Approved. Call execute_approved with token {} and the statement you asked for, before it expires; the token works once.",
                self.token
            ),
            "pending" => format!(
                "No decision yet. Call wait_for_decision again with token {} (or tell the user you are waiting for an approver).",
                self.token
            ),
            "denied" => "Denied: do not run the statement or work around the refusal. Tell the user, with the approver's comment.".to_string(),
            "cancelled" => "The request was cancelled: do not run the statement. Ask the user before requesting again.".to_string(),
            "expired" => "The approval expired unused. Request a new one with request_approval if the work is still wanted.".to_string(),
            "used" => "The token was already used: it covered one statement. Request a new one for another statement.".to_string(),
            _ => "Read the status and tell the user.".to_string(),
        };
        json!({
            "token": self.token,
            "status": self.status,
            "decided_by": self.decided_by,
            "comment": self.comment,
            "expires_at": self.expires_at,
            "waited_seconds": (waited.as_secs_f64() * 10.0).round() / 10.0,
            // How the answer was found: first_read, notification,
            // periodic_read or final_read.
            "seen_by": seen_by,
            "next_step": next_step,
        })
    }
}

async fn read_status(client: &Client, token: &str) -> Result<Status, Failure> {
    let row = client
        .query_one(
            "SELECT token_id::text, status, decided_by::text, comment, expires_at::text \
               FROM ai_agent_safety.approval_token_status($1::text::uuid)",
            &[&token],
        )
        .await?;
    Ok(Status {
        token: row.get(0),
        status: row.get(1),
        decided_by: row.get(2),
        // approval_token_status gives '' for no comment.
        comment: row.get::<_, Option<String>>(3).filter(|c| !c.is_empty()),
        expires_at: row.get(4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_only_wake_ups_for_this_token() {
        let t = "8c2952f6-081c-488d-b9ff-9afcc9069553";
        assert!(about_token(
            r#"{"token": "8C2952F6-081C-488D-B9FF-9AFCC9069553", "database": "d"}"#,
            t
        ));
        assert!(!about_token(
            r#"{"token": "00000000-0000-0000-0000-000000000000", "database": "d"}"#,
            t
        ));
        assert!(!about_token("not json", t));
        assert!(!about_token(r#"{"token": 5}"#, t));
    }
}
