//! Every failure a tool reports, as the structured tool error an agent reads:
//! `{sqlstate, message, detail, hint, next_step}` (and, for a refusal that
//! needs an approval token, the `request_approval` arguments the refusal's
//! hint names).

use serde_json::{json, Map, Value};

/// Why a tool call failed.
#[derive(Debug)]
pub enum Failure {
    /// PostgreSQL (or the connection to it) failed.
    Db(tokio_postgres::Error),
    /// The call itself was wrong before anything reached the database.
    Usage(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

/// The SQLSTATE of a database error, if it is one.
pub fn sqlstate(f: &Failure) -> Option<&str> {
    match f {
        Failure::Db(e) => e.as_db_error().map(|d| d.code().code()),
        Failure::Usage(_) => None,
    }
}

/// The failure as the JSON object of a tool error.
pub fn to_json(f: &Failure) -> Value {
    match f {
        Failure::Usage(message) => json!({
            "sqlstate": Value::Null,
            "message": message,
            "detail": Value::Null,
            "hint": Value::Null,
            "next_step": "Fix the arguments of the call and call the tool again.",
        }),
        Failure::Db(e) => match e.as_db_error() {
            Some(d) => db_error_json(d.code().code(), d.message(), d.detail(), d.hint()),
            None => json!({
                "sqlstate": Value::Null,
                "message": describe_client_error(e),
                "detail": Value::Null,
                "hint": Value::Null,
                "next_step": "The database could not be reached or the connection broke. \
                              Check that PostgreSQL is running and that DATABASE_URL (or --dsn) \
                              names the agent's role and database; tell the user if it persists.",
            }),
        },
    }
}

/// The client-side error with its causes (tokio-postgres puts the useful
/// part, such as "Connection refused", in the source).
fn describe_client_error(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The JSON of a database error; `next_step` says what the agent does next.
pub fn db_error_json(code: &str, message: &str, detail: Option<&str>, hint: Option<&str>) -> Value {
    let mut out = Map::new();
    out.insert("sqlstate".into(), json!(code));
    out.insert("message".into(), json!(message));
    out.insert("detail".into(), json!(detail));
    out.insert("hint".into(), json!(hint));
    let needs_token = code == "42501" && message.contains("needs an approval token");
    let next_step = if needs_token {
        // The call is in the HINT; some versions also put it in the message.
        let suggested = hint
            .and_then(suggested_request)
            .or_else(|| suggested_request(message));
        let presented = names_a_token(message) || detail.is_some_and(names_a_token);
        let text = approval_next_step(presented, suggested.is_some());
        if let Some(s) = suggested {
            out.insert("request_approval_arguments".into(), s);
        }
        text
    } else if code == "42601" && message.contains("multiple commands") {
        "Send exactly one SQL statement per call.".to_string()
    } else if code == "25006" {
        "The query tool is read-only. Use the execute tool for writes; a protected \
         write (DELETE, DROP, TRUNCATE, ...) needs an approval token: request_approval, \
         wait_for_decision, execute_approved."
            .to_string()
    } else if let Some(h) = hint {
        h.to_string()
    } else {
        "Read the message, correct the statement or its arguments, and try again; \
         do not retry the same call unchanged."
            .to_string()
    };
    out.insert("next_step".into(), json!(next_step));
    Value::Object(out)
}

fn approval_next_step(token_was_presented: bool, have_arguments: bool) -> String {
    let args = if have_arguments {
        " (request_approval_arguments has the arguments the refusal names: operation, \
         target, and verb when the statement is a special form; add your task_id, a reason \
         for the human and the exact statement)"
    } else {
        ""
    };
    let start = if token_was_presented {
        "The approval token presented cannot be used for this statement (the detail says \
         why). Do not retry with it: ask for a new one."
    } else {
        "This statement needs a human's approval before it can run."
    };
    format!(
        "{start} Call the request_approval tool{args}, then call wait_for_decision with \
         the token it returns; once the status is granted, call execute_approved with \
         that token and the same statement. If it is denied, do not run the statement: \
         tell the user the approver's comment."
    )
}

/// Does the text speak of a presented token ("approval token <uuid> ...")?
fn names_a_token(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("approval token ").any(|(i, m)| {
        let id: Vec<char> = lower[i + m.len()..].chars().take(36).collect();
        id.len() == 36
            && id.iter().enumerate().all(|(k, c)| match k {
                8 | 13 | 18 | 23 => *c == '-',
                _ => c.is_ascii_hexdigit(),
            })
    })
}

/// Reads the arguments of the `request_approval_token(...)` call that a
/// refusal's HINT gives, as `request_approval` tool arguments. Placeholders
/// such as `'<task id>'` are left out.
pub fn suggested_request(hint: &str) -> Option<Value> {
    let start = hint.find("request_approval_token(")? + "request_approval_token(".len();
    let mut rest = &hint[start..];
    let mut positional: Vec<String> = Vec::new();
    let mut named: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.starts_with(')') {
            break;
        }
        let mut name = None;
        if let Some(arrow) = rest.find("=>") {
            let before = rest[..arrow].trim();
            if !before.is_empty()
                && before
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                name = Some(before.to_string());
                rest = rest[arrow + 2..].trim_start();
            }
        }
        let (value, after) = sql_literal(rest)?;
        rest = after.strip_prefix("::text").unwrap_or(after).trim_start();
        match name {
            Some(n) => named.push((n, value)),
            None => positional.push(value),
        }
        rest = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.starts_with(')') => rest,
            None => return None,
        };
    }
    let mut out = Map::new();
    for (key, value) in ["operation", "task_id", "target"].iter().zip(&positional) {
        if !value.starts_with('<') {
            out.insert((*key).into(), json!(value));
        }
    }
    for (key, value) in named {
        if !value.starts_with('<') {
            out.insert(key, json!(value));
        }
    }
    out.get("operation")?;
    Some(Value::Object(out))
}

/// One SQL string literal at the start of `s` ('' is a quote inside it):
/// its value and what follows it.
fn sql_literal(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('\'')?.char_indices().peekable();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|&(_, n)| n) == Some('\'') {
                chars.next();
                value.push('\'');
            } else {
                return Some((value, &s[i + 2..]));
            }
        } else {
            value.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: &str = "Request approval with SELECT ai_agent_safety.request_approval_token('DELETE'::text, 'task_1'::text, 'public.orders'::text); once a human has granted it, run SET ai_agent_safety.approval_token = '<token id>'; and retry.";

    #[test]
    fn reads_the_hints_call() {
        assert_eq!(
            suggested_request(HINT).unwrap(),
            json!({"operation": "DELETE", "task_id": "task_1", "target": "public.orders"})
        );
    }

    #[test]
    fn named_verb_quotes_and_placeholders() {
        let hint = "Request approval with SELECT ai_agent_safety.request_approval_token('DROP'::text, '<task id>'::text, 'public.o''brien'::text, verb => 'CREATE OR REPLACE VIEW'::text); once ...";
        assert_eq!(
            suggested_request(hint).unwrap(),
            json!({"operation": "DROP", "target": "public.o'brien", "verb": "CREATE OR REPLACE VIEW"})
        );
        assert!(suggested_request("no call here").is_none());
        assert!(suggested_request("request_approval_token('DELETE").is_none());
    }

    #[test]
    fn refusal_next_step_names_the_tools() {
        let v = db_error_json(
            "42501",
            "DELETE on public.orders refused: agent role \"a\" needs an approval token in database \"d\"",
            Some("Database \"d\" has ai_agent_safety.require_approval = on ..."),
            Some(HINT),
        );
        let step = v["next_step"].as_str().unwrap();
        for tool in ["request_approval", "wait_for_decision", "execute_approved"] {
            assert!(step.contains(tool), "{step}");
        }
        assert_eq!(v["request_approval_arguments"]["target"], "public.orders");
        assert_eq!(v["hint"], HINT);
    }

    #[test]
    fn a_presented_token_is_recognised() {
        assert!(names_a_token(
            "Approval token 2a7505a1-cdcc-40c8-ad55-707eb257ee9d cannot be used: it is still pending."
        ));
        assert!(names_a_token(
            "refused: ...; approval token 2A7505A1-CDCC-40C8-AD55-707EB257EE9D was already used"
        ));
        assert!(!names_a_token("needs an approval token in database \"d\""));
        let v = db_error_json(
            "42501",
            "DELETE on public.orders refused: agent role \"a\" needs an approval token in database \"d\"; approval token 2a7505a1-cdcc-40c8-ad55-707eb257ee9d was already used; request a new one with SELECT ai_agent_safety.request_approval_token('DELETE'::text, '<task id>'::text, 'public.orders'::text), and ...",
            None,
            None,
        );
        assert!(
            v["next_step"]
                .as_str()
                .unwrap()
                .contains("ask for a new one"),
            "{v}"
        );
        assert_eq!(
            v["request_approval_arguments"],
            json!({"operation": "DELETE", "target": "public.orders"})
        );
    }

    #[test]
    fn other_errors_take_the_hint_or_a_generic_step() {
        let v = db_error_json("42P01", "relation \"x\" does not exist", None, None);
        assert!(v["next_step"].as_str().unwrap().contains("correct"));
        assert!(v["detail"].is_null());
        let v = db_error_json("42501", "permission denied for table t", None, Some("ask"));
        assert_eq!(v["next_step"], "ask");
    }
}
