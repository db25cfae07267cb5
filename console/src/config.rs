//! Command-line flags and the databases the console works on.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The approver's console for ai_agent_safety. A person signs in with their
/// own PostgreSQL role and password; every query and decision runs as that
/// role, over that person's own connections.
#[derive(Parser, Clone)]
#[command(name = "ai-agent-safety-console", version)]
pub struct Args {
    /// Address to listen on (HTTP, or HTTPS with --tls-cert/--tls-key).
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub listen: SocketAddr,

    /// A database to work on: a name (on --pg-host/--pg-port) or a
    /// connection string ("host=... port=... dbname=..." or postgres://...);
    /// user and password in it are ignored, the signed-in person's are used.
    /// Repeat for several. Without any, the databases where the extension is
    /// created are discovered at sign-in.
    #[arg(long = "database", value_name = "DSN_OR_NAME")]
    pub databases: Vec<String>,

    /// Host of the PostgreSQL server for database names and discovery.
    #[arg(long, default_value = "127.0.0.1")]
    pub pg_host: String,

    /// Port of the PostgreSQL server for database names and discovery.
    #[arg(long, default_value_t = 5432)]
    pub pg_port: u16,

    /// Database to list the others from when no --database is given.
    #[arg(long, default_value = "postgres")]
    pub discover_from: String,

    /// Discover only databases whose name matches this SQL LIKE pattern.
    #[arg(long, default_value = "%")]
    pub discover_like: String,

    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The console's address as approvers reach it, for links in
    /// notifications (default: http(s)://<listen address>).
    #[arg(long)]
    pub public_url: Option<String>,

    /// POST {"text": "..."} (Slack and Teams incoming webhooks) here for each
    /// new request. Repeat for several. Webhook URLs hold secrets: they can
    /// come from AAS_CONSOLE_WEBHOOKS instead (separated by spaces), which
    /// `ps` does not show.
    #[arg(
        long = "webhook",
        value_name = "URL",
        env = "AAS_CONSOLE_WEBHOOKS",
        hide_env_values = true,
        value_delimiter = ' '
    )]
    pub webhooks: Vec<String>,

    /// Include the agent's last refused statement in notifications (it can
    /// hold data values; off by default).
    #[arg(long)]
    pub webhook_include_statement: bool,

    /// Attempts per notification and webhook before it counts as failed.
    #[arg(long, default_value_t = 5)]
    pub webhook_attempts: u32,

    /// Delay before the second attempt, doubled for each one after it.
    #[arg(long, default_value_t = 1000)]
    pub webhook_backoff_ms: u64,

    /// A role the console itself signs in as, to hear of new requests for
    /// webhooks while no approver is signed in (password in the environment
    /// variable AAS_CONSOLE_WATCH_PASSWORD). It needs only SELECT on
    /// ai_agent_safety.pending_requests and ai_agent_safety.renames.
    #[arg(long, value_name = "ROLE", requires = "watch_password")]
    pub watch_as: Option<String>,

    /// Password of --watch-as (from the environment only, never a flag).
    #[arg(
        long,
        env = "AAS_CONSOLE_WATCH_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    pub watch_password: Option<String>,

    /// Mark the session cookie Secure without --tls-cert (behind a reverse
    /// proxy that terminates HTTPS).
    #[arg(long)]
    pub cookie_secure: bool,

    /// Minutes without a request after which a sign-in ends.
    #[arg(long, default_value_t = 30)]
    pub idle_minutes: u64,
}

impl Args {
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    pub fn secure_cookie(&self) -> bool {
        self.tls() || self.cookie_secure
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let scheme = if self.tls() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }

    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_minutes.max(1) * 60)
    }

    /// The databases given with --database, each with its label.
    pub fn targets(&self) -> Result<Vec<Target>, String> {
        let mut out: Vec<Target> = Vec::new();
        for spec in &self.databases {
            let t = Target::parse(spec, &self.pg_host, self.pg_port)?;
            if out.iter().any(|o| o.label == t.label) {
                return Err(format!(
                    "database {:?} is given twice; give each --database a distinct database name",
                    t.label
                ));
            }
            out.push(t);
        }
        Ok(out)
    }
}

/// One database the console works on: where it is, and the name pages show.
#[derive(Clone, Debug)]
pub struct Target {
    pub label: String,
    pub config: tokio_postgres::Config,
}

impl Target {
    pub fn parse(spec: &str, host: &str, port: u16) -> Result<Target, String> {
        let is_dsn = spec.contains('=') || spec.contains("://");
        let mut config = if is_dsn {
            tokio_postgres::Config::from_str(spec)
                .map_err(|e| format!("--database {spec:?}: {e}"))?
        } else {
            let mut c = tokio_postgres::Config::new();
            c.dbname(spec);
            c
        };
        if config.get_hosts().is_empty() {
            config.host(host);
        }
        if config.get_ports().is_empty() {
            config.port(port);
        }
        let label = config
            .get_dbname()
            .map(str::to_string)
            .ok_or_else(|| format!("--database {spec:?} names no database (dbname=...)"))?;
        Ok(Target { label, config })
    }

    /// The same server, another database.
    pub fn sibling(&self, dbname: &str) -> Target {
        let mut config = self.config.clone();
        config.dbname(dbname);
        Target {
            label: dbname.to_string(),
            config,
        }
    }

    /// Where it is, for messages: host:port/dbname (never credentials).
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dsns() {
        let t = Target::parse("prod", "127.0.0.1", 5433).unwrap();
        assert_eq!(t.label, "prod");
        assert_eq!(t.describe(), "127.0.0.1:5433/prod");
        let t = Target::parse("host=db.example port=6000 dbname=orders user=x", "h", 1).unwrap();
        assert_eq!(t.label, "orders");
        assert_eq!(t.describe(), "db.example:6000/orders");
        let t = Target::parse("postgresql://db.example/stock", "h", 7).unwrap();
        assert_eq!(t.describe(), "db.example:5432/stock");
        assert!(Target::parse("host=x", "h", 1).is_err());
    }

    #[test]
    fn duplicate_labels_refused() {
        let a = Args::parse_from(["x", "--database", "a", "--database", "host=h dbname=a"]);
        assert!(a.targets().unwrap_err().contains("twice"));
    }
}
