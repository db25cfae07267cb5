//! Who is signed in, over which connections, and what their NOTIFYs set off.

use crate::config::{Args, Target};
use crate::db::{self, DbConn, DbError, DbEvent};
use crate::queries;
use crate::webhook::Webhooks;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use uuid::Uuid;

/// One role's connections, one per database.
pub struct Conns {
    pub dbs: Vec<DbConn>,
}

impl Conns {
    pub fn get(&self, label: &str) -> Option<&DbConn> {
        self.dbs.iter().find(|d| d.label == label)
    }
}

/// A person signed in: their connections and the events heard on them.
pub struct Login {
    pub role: String,
    pub superuser: bool,
    pub conns: Arc<Conns>,
    pub events: broadcast::Sender<DbEvent>,
    last_seen: Mutex<Instant>,
}

impl Login {
    pub fn touch(&self) {
        *self.last_seen.lock().unwrap() = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        self.last_seen.lock().unwrap().elapsed()
    }

    pub fn databases(&self) -> Vec<String> {
        self.conns.dbs.iter().map(|d| d.label.clone()).collect()
    }
}

pub struct Inner {
    pub args: Args,
    pub targets: Vec<Target>,
    pub webhooks: Arc<Webhooks>,
    logins: Mutex<HashMap<Uuid, Arc<Login>>>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(args: Args) -> Result<AppState, String> {
        let targets = args.targets()?;
        let urls: Vec<String> = args
            .webhooks
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        for u in &urls {
            match reqwest::Url::parse(u) {
                Ok(p) if p.scheme() == "https" || p.scheme() == "http" => {}
                _ => {
                    return Err(format!(
                        "--webhook {}: not an http(s) URL",
                        crate::webhook::redact(u)
                    ))
                }
            }
        }
        let webhooks = Arc::new(Webhooks::new(
            urls,
            args.webhook_include_statement,
            args.webhook_attempts,
            Duration::from_millis(args.webhook_backoff_ms),
            args.public_url(),
        ));
        Ok(AppState(Arc::new(Inner {
            args,
            targets,
            webhooks,
            logins: Mutex::new(HashMap::new()),
        })))
    }

    pub fn login(&self, id: Uuid) -> Option<Arc<Login>> {
        self.logins.lock().unwrap().get(&id).cloned()
    }

    pub fn logout(&self, id: Uuid) {
        self.logins.lock().unwrap().remove(&id);
    }

    /// Signs a person in on every database, or on none: any refusal (the
    /// server's, e.g. an agent's expired credentials, or the console's gate)
    /// ends the attempt with its message.
    pub async fn sign_in(&self, role: &str, password: &str) -> Result<Uuid, DbError> {
        let (events, _) = broadcast::channel(256);
        let conns = Arc::new(open_all(self, role, password, Some(events.clone()), true).await?);
        let superuser = match conns.dbs.first() {
            Some(c) => db::identity(&c.client).await?.superuser,
            None => false,
        };
        spawn_feed(
            Arc::downgrade(&conns),
            events.subscribe(),
            self.webhooks.clone(),
        );
        let id = Uuid::new_v4();
        let login = Arc::new(Login {
            role: role.to_string(),
            superuser,
            conns,
            events,
            last_seen: Mutex::new(Instant::now()),
        });
        self.logins.lock().unwrap().insert(id, login);
        tracing::info!(role, "signed in");
        Ok(id)
    }

    /// Ends sign-ins idle for longer than --idle-minutes (their connections close).
    pub fn spawn_sweeper(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                let idle = me.args.idle();
                me.logins.lock().unwrap().retain(|_, l| l.idle_for() < idle);
            }
        });
    }

    /// With --watch-as and webhooks: the console's own connections, kept
    /// open (reopened when one ends), so requests are notified while nobody
    /// is signed in.
    pub fn spawn_watch(&self) {
        let (Some(role), Some(password)) =
            (self.args.watch_as.clone(), self.args.watch_password.clone())
        else {
            return;
        };
        if !self.webhooks.enabled() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let (events, rx) = broadcast::channel(256);
                match open_all(&me, &role, &password, Some(events), false).await {
                    Ok(conns) => {
                        let conns = Arc::new(conns);
                        tracing::info!(role, databases = ?conns.dbs.iter().map(|d| &d.label).collect::<Vec<_>>(), "watching for requests");
                        spawn_feed(Arc::downgrade(&conns), rx, me.webhooks.clone());
                        let closed = conns.dbs.iter().map(|d| Box::pin(d.closed()));
                        futures_util::future::select_all(closed).await;
                        tracing::warn!(role, "a watch connection ended; reconnecting");
                    }
                    Err(e) => tracing::error!(role, error = %e, "watch role could not connect"),
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
}

/// Connections as `role` to every target (or every discovered database),
/// each checked by the gate (approvers only, or for the watch role: no agents) and listening for requests and decisions.
async fn open_all(
    state: &AppState,
    role: &str,
    password: &str,
    events: Option<broadcast::Sender<DbEvent>>,
    need_approver: bool,
) -> Result<Conns, DbError> {
    let gate = |e: DbError, t: &Target| DbError {
        message: format!("database {}: {}", t.label, e.message),
        ..e
    };
    let targets = if state.targets.is_empty() {
        let from = Target::parse(
            &state.args.discover_from,
            &state.args.pg_host,
            state.args.pg_port,
        )
        .map_err(DbError::plain)?;
        let c = db::sign_in(&from, role, password, None)
            .await
            .map_err(|e| gate(e, &from))?;
        db::admit(role, &db::identity(&c.client).await?, need_approver)
            .map_err(|e| gate(e, &from))?;
        let mut found = Vec::new();
        for name in db::discover(&c.client, &state.args.discover_like).await? {
            let t = from.sibling(&name);
            if name == from.label {
                if db::has_extension(&c.client).await? {
                    found.push(t);
                }
                continue;
            }
            // A database this role cannot reach is not this role's to approve in.
            if let Ok(probe) = db::open(&t, role, password, None).await {
                if db::has_extension(&probe.client).await.unwrap_or(false) {
                    found.push(t);
                }
            }
        }
        if found.is_empty() {
            return Err(DbError::plain(format!(
                "no database on {} where role \"{role}\" can connect has the extension ai_agent_safety",
                from.describe()
            )));
        }
        found
    } else {
        state.targets.clone()
    };
    let mut dbs = Vec::new();
    for t in &targets {
        let c = db::sign_in(t, role, password, events.clone())
            .await
            .map_err(|e| gate(e, t))?;
        if !db::has_extension(&c.client).await? {
            return Err(DbError::plain(format!(
                "database {}: the extension ai_agent_safety is not created there",
                t.label
            )));
        }
        db::admit(role, &db::identity(&c.client).await?, need_approver).map_err(|e| gate(e, t))?;
        db::listen(&c.client).await?;
        dbs.push(c);
    }
    Ok(Conns { dbs })
}

/// Reads each newly requested row (never the NOTIFY payload) and notifies
/// the webhooks, once per request.
fn spawn_feed(conns: Weak<Conns>, mut rx: broadcast::Receiver<DbEvent>, webhooks: Arc<Webhooks>) {
    if !webhooks.enabled() {
        return;
    }
    tokio::spawn(async move {
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "request notifications missed");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let (true, Some(token)) = (ev.channel == db::REQUESTS, ev.token) else {
                continue;
            };
            let Some(conns) = conns.upgrade() else { return };
            let Some(conn) = conns.get(&ev.database) else {
                continue;
            };
            if !webhooks.first_sighting(&ev.database, token) {
                continue;
            }
            match queries::pending_one(&conn.client, token).await {
                Ok(Some(p)) => {
                    let statement = if webhooks.include_statement() {
                        queries::last_refused_statement(&conn.client, &p.requested_by, &p.operation)
                            .await
                            .unwrap_or_else(|e| {
                                tracing::warn!(error = %e, "could not read the refused statement");
                                None
                            })
                    } else {
                        None
                    };
                    webhooks.send(&ev.database, &p, statement.as_deref());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(database = %ev.database, %token, error = %e, "could not read a new request")
                }
            }
        }
    });
}
