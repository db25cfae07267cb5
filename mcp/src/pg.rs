//! Connections as the agent's own role, and running one statement.
//!
//! Every tool call opens its own connection and closes it at the end, so no
//! setting, token or open transaction outlives a call, and two calls never
//! share a session. A statement is first prepared (the extended protocol
//! accepts exactly one statement, so `SELECT 1; DELETE ...` cannot slip past
//! `BEGIN READ ONLY` with a `COMMIT` of its own), then run through the simple
//! protocol, whose text results map to JSON without a conversion per type.

use crate::errors::Failure;
use futures_util::TryStreamExt;
use serde_json::{Map, Number, Value};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, Connection, NoTls, SimpleQueryMessage, Socket};

/// Rows a tool returns at most; the rest are counted, not returned.
pub const MAX_ROWS: usize = 500;

/// How to reach the database as the agent.
#[derive(Clone)]
pub struct Db {
    config: Config,
}

impl Db {
    pub fn new(mut config: Config) -> Db {
        if config.get_application_name().is_none() {
            config.application_name("ai-agent-safety-mcp");
        }
        Db { config }
    }

    /// A short description for the log: never the password.
    pub fn describe(&self) -> String {
        format!(
            "user={} dbname={} hosts={:?} ports={:?}",
            self.config.get_user().unwrap_or("(default)"),
            self.config.get_dbname().unwrap_or("(default)"),
            self.config.get_hosts(),
            self.config.get_ports()
        )
    }

    /// A connection whose messages a background task drives.
    pub async fn connect(&self) -> Result<Client, Failure> {
        let (client, connection) = self.connect_raw().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                crate::log(&format!("postgres connection ended: {e}"));
            }
        });
        Ok(client)
    }

    /// A connection whose messages the caller drives (to see notifications).
    pub async fn connect_raw(&self) -> Result<(Client, Connection<Socket, NoTlsStream>), Failure> {
        Ok(self.config.connect(NoTls).await?)
    }
}

/// What one statement returned.
#[derive(Debug, Default)]
pub struct Outcome {
    pub columns: Vec<String>,
    pub rows: Vec<Value>,
    /// From the command tag: rows affected (or selected).
    pub rows_affected: u64,
    /// Rows received, including those not returned beyond MAX_ROWS.
    pub rows_received: u64,
}

impl Outcome {
    /// The outcome as the JSON a tool returns.
    pub fn to_json(&self, with_rows_affected: bool) -> Value {
        let mut out = Map::new();
        if with_rows_affected {
            out.insert("rows_affected".into(), self.rows_affected.into());
        }
        if !self.columns.is_empty() {
            out.insert("columns".into(), self.columns.clone().into());
            out.insert("rows".into(), Value::Array(self.rows.clone()));
            out.insert("row_count".into(), self.rows_received.into());
            if self.rows_received > self.rows.len() as u64 {
                out.insert("truncated".into(), true.into());
                out.insert(
                    "note".into(),
                    format!(
                        "only the first {} of {} rows are returned; narrow the query (WHERE, LIMIT) to see others",
                        self.rows.len(),
                        self.rows_received
                    )
                    .into(),
                );
            }
        }
        Value::Object(out)
    }
}

/// Runs exactly one statement on `client` (inside whatever transaction the
/// caller opened). Fails before running anything if `sql` is not exactly one
/// statement.
pub async fn run_one(client: &Client, sql: &str) -> Result<Outcome, Failure> {
    if sql.trim().trim_end_matches(';').trim().is_empty() {
        return Err(Failure::Usage("the SQL statement is empty".into()));
    }
    // Parse only: nothing runs. Rejects a second statement.
    let prepared = client.prepare(sql).await?;
    let types: Vec<Type> = prepared
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    drop(prepared);

    let mut stream = std::pin::pin!(client.simple_query_raw(sql).await?);
    let mut out = Outcome::default();
    let mut keys: Vec<String> = Vec::new();
    while let Some(message) = stream.try_next().await? {
        match message {
            SimpleQueryMessage::RowDescription(cols) => {
                out.columns = cols.iter().map(|c| c.name().to_string()).collect();
                keys = unique_keys(&out.columns);
            }
            SimpleQueryMessage::Row(row) => {
                out.rows_received += 1;
                if out.rows.len() >= MAX_ROWS {
                    continue;
                }
                if keys.is_empty() {
                    out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                    keys = unique_keys(&out.columns);
                }
                let mut obj = Map::new();
                for (i, key) in keys.iter().enumerate() {
                    let value = match row.try_get(i)? {
                        None => Value::Null,
                        Some(text) => to_json_value(text, types.get(i)),
                    };
                    obj.insert(key.clone(), value);
                }
                out.rows.push(Value::Object(obj));
            }
            SimpleQueryMessage::CommandComplete(n) => out.rows_affected = n,
            _ => {}
        }
    }
    Ok(out)
}

/// Column names as object keys: a repeated name gets `_2`, `_3`, ...
fn unique_keys(names: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let mut key = name.clone();
        let mut n = 1;
        while keys.contains(&key) {
            n += 1;
            key = format!("{name}_{n}");
        }
        keys.push(key);
    }
    keys
}

/// A value PostgreSQL sent as text, as JSON: booleans, integers, finite
/// floats, exact numerics and json/jsonb as themselves, anything else as text.
pub fn to_json_value(text: &str, ty: Option<&Type>) -> Value {
    let Some(ty) = ty else {
        return Value::String(text.to_string());
    };
    match *ty {
        Type::BOOL => match text {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_string())),
        Type::FLOAT4 | Type::FLOAT8 => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(text.to_string())),
        // Only when the number reads back exactly as PostgreSQL wrote it
        // (12.50 stays "12.50", and so do values beyond f64).
        Type::NUMERIC => match serde_json::from_str::<Number>(text) {
            Ok(n) if n.to_string() == text => Value::Number(n),
            _ => Value::String(text.to_string()),
        },
        Type::JSON | Type::JSONB => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        }
        _ => Value::String(text.to_string()),
    }
}

/// Runs `ROLLBACK` and ignores its failure: the connection is dropped
/// after the call anyway, which ends any transaction left open.
pub async fn rollback_quietly(client: &Client) {
    if let Err(e) = client.batch_execute("ROLLBACK").await {
        crate::log(&format!(
            "ROLLBACK failed (the connection closes anyway): {e}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_by_type() {
        assert_eq!(to_json_value("t", Some(&Type::BOOL)), json!(true));
        assert_eq!(to_json_value("42", Some(&Type::INT8)), json!(42));
        assert_eq!(to_json_value("1.5", Some(&Type::FLOAT8)), json!(1.5));
        assert_eq!(to_json_value("NaN", Some(&Type::FLOAT8)), json!("NaN"));
        assert_eq!(to_json_value("12.5", Some(&Type::NUMERIC)), json!(12.5));
        assert_eq!(to_json_value("12.50", Some(&Type::NUMERIC)), json!("12.50"));
        assert_eq!(
            to_json_value("123456789012345678901234567890", Some(&Type::NUMERIC)),
            json!("123456789012345678901234567890")
        );
        assert_eq!(
            to_json_value("{\"a\": [1]}", Some(&Type::JSONB)),
            json!({"a": [1]})
        );
        assert_eq!(to_json_value("hello", Some(&Type::TEXT)), json!("hello"));
        assert_eq!(to_json_value("7", None), json!("7"));
    }

    #[test]
    fn repeated_column_names() {
        let names: Vec<String> = ["a", "a", "b", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(unique_keys(&names), ["a", "a_2", "b", "a_3"]);
    }
}
