//! Notifications of new requests to Slack/Teams-compatible incoming
//! webhooks: one POST of {"text": "..."} per request and URL, retried with
//! exponential backoff; each outcome is kept for the console's pages and
//! logged.

use crate::queries::Pending;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const KEEP: usize = 200;

/// Requests already notified: a set, and the order they came in, so the
/// oldest are forgotten first.
#[derive(Default)]
struct Seen {
    set: HashSet<(String, Uuid)>,
    order: VecDeque<(String, Uuid)>,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub at: String,
    pub database: String,
    pub token: Uuid,
    /// The URL without its path and query (those often hold the secret).
    pub url: String,
    pub attempts: u32,
    pub ok: bool,
    pub error: Option<String>,
}

pub struct Webhooks {
    urls: Vec<String>,
    include_statement: bool,
    attempts: u32,
    backoff: Duration,
    public_url: String,
    client: reqwest::Client,
    seen: Mutex<Seen>,
    log: Mutex<VecDeque<Delivery>>,
}

impl Webhooks {
    pub fn new(
        urls: Vec<String>,
        include_statement: bool,
        attempts: u32,
        backoff: Duration,
        public_url: String,
    ) -> Webhooks {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        Webhooks {
            urls,
            include_statement,
            attempts: attempts.max(1),
            backoff,
            public_url,
            client,
            seen: Mutex::new(Seen::default()),
            log: Mutex::new(VecDeque::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    pub fn include_statement(&self) -> bool {
        self.include_statement
    }

    /// True the first time a request is seen: several connections (each
    /// approver's and the watch role's) hear the same NOTIFY.
    pub fn first_sighting(&self, database: &str, token: Uuid) -> bool {
        let mut seen = self.seen.lock().unwrap();
        let key = (database.to_string(), token);
        if !seen.set.insert(key.clone()) {
            return false;
        }
        seen.order.push_back(key);
        if seen.order.len() > 10_000 {
            if let Some(old) = seen.order.pop_front() {
                seen.set.remove(&old);
            }
        }
        true
    }

    /// The newest outcomes first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().unwrap().iter().rev().cloned().collect()
    }

    pub fn failures(&self) -> Vec<Delivery> {
        self.deliveries().into_iter().filter(|d| !d.ok).collect()
    }

    pub fn request_url(&self, database: &str, token: Uuid) -> String {
        format!(
            "{}/db/{}/request/{token}",
            self.public_url,
            encode_segment(database)
        )
    }

    /// The message for one request. Data values of statements only with
    /// --webhook-include-statement.
    pub fn text(&self, database: &str, p: &Pending, statement: Option<&str>) -> String {
        let mut t = format!(
            "ai_agent_safety: {} asks to run one {} on {} in database {} (task {})",
            p.requested_by,
            p.verb.as_deref().unwrap_or(&p.operation),
            p.target,
            database,
            p.task_id
        );
        if let Some(r) = &p.reason {
            t.push_str(&format!("\nReason: {r}"));
        }
        if self.include_statement {
            if let Some(s) = statement {
                t.push_str(&format!("\nStatement: {s}"));
            }
        }
        t.push_str(&format!(
            "\nReview: {}",
            self.request_url(database, p.token)
        ));
        t
    }

    /// Sends one request's notification to every URL, each in its own task.
    pub fn send(self: &Arc<Self>, database: &str, p: &Pending, statement: Option<&str>) {
        let body = serde_json::json!({ "text": self.text(database, p, statement) });
        for url in &self.urls {
            let me = Arc::clone(self);
            let url = url.clone();
            let body = body.clone();
            let database = database.to_string();
            let token = p.token;
            tokio::spawn(async move { me.deliver(url, body, database, token).await });
        }
    }

    async fn deliver(&self, url: String, body: serde_json::Value, database: String, token: Uuid) {
        let shown = redact(&url);
        let mut delay = self.backoff;
        let mut error = None;
        let mut attempt = 0;
        while attempt < self.attempts {
            attempt += 1;
            match self.client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    error = None;
                    break;
                }
                Ok(r) => error = Some(format!("HTTP {}", r.status())),
                Err(e) => error = Some(without_url(&e)),
            }
            if attempt < self.attempts {
                tracing::warn!(url = %shown, attempt, error = ?error, "webhook attempt failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
        let ok = error.is_none();
        if ok {
            tracing::info!(url = %shown, %database, %token, attempts = attempt, "webhook delivered");
        } else {
            tracing::error!(url = %shown, %database, %token, attempts = attempt, error = ?error, "webhook failed");
        }
        let mut log = self.log.lock().unwrap();
        log.push_back(Delivery {
            at: chrono::Utc::now()
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            database,
            token,
            url: shown,
            attempts: attempt,
            ok,
            error,
        });
        while log.len() > KEEP {
            log.pop_front();
        }
    }
}

/// scheme://host[:port]/… : webhook URLs carry their secret in the path.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}/…", u.scheme(), u.host_str().unwrap_or("?"))
        }
        Err(_) => "(invalid URL)".into(),
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), &redact(u.as_str()));
    }
    s
}

/// A path segment, percent-encoded.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            token: Uuid::nil(),
            requested_by: "cleanup_bot".into(),
            requested_at: String::new(),
            waiting: String::new(),
            operation: "DELETE".into(),
            verb: None,
            target: "public.orders".into(),
            target_oid: None,
            target_owner: None,
            target_size: None,
            target_estimated_rows: None,
            target_earlier_names: vec![],
            task_id: "T-1".into(),
            reason: Some("old rows".into()),
            would_allow: String::new(),
            token_ttl: String::new(),
            statement: None,
            preview: vec![],
            preview_rows: None,
            max_rows: None,
        }
    }

    #[test]
    fn text_without_statement_unless_asked() {
        let w = Webhooks::new(vec![], false, 1, Duration::ZERO, "https://c".into());
        let t = w.text(
            "prod",
            &pending(),
            Some("DELETE FROM orders WHERE note = 'x'"),
        );
        assert!(t.contains(
            "cleanup_bot asks to run one DELETE on public.orders in database prod (task T-1)"
        ));
        assert!(t.contains("Reason: old rows"));
        assert!(
            t.contains("Review: https://c/db/prod/request/00000000-0000-0000-0000-000000000000")
        );
        assert!(!t.contains("WHERE note"));
        let w = Webhooks::new(vec![], true, 1, Duration::ZERO, "https://c".into());
        assert!(w
            .text("prod", &pending(), Some("DELETE x"))
            .contains("Statement: DELETE x"));
    }

    #[test]
    fn urls_redacted_and_dedup() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T/B/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redact("http://127.0.0.1:9/x"), "http://127.0.0.1:9/…");
        let w = Webhooks::new(vec![], false, 1, Duration::ZERO, String::new());
        assert!(w.first_sighting("a", Uuid::nil()));
        assert!(!w.first_sighting("a", Uuid::nil()));
        assert!(w.first_sighting("b", Uuid::nil()));
        assert_eq!(encode_segment("a b/é"), "a%20b%2F%C3%A9");
    }
}
