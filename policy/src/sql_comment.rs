//! Tags a statement carries in its own text, in the sqlcommenter form tools
//! already emit: `/*key='value',other='value'*/`. An agent sends its approval
//! token (and its task id) this way, in the same call as the statement, so
//! nothing depends on a setting surviving between calls through a pool.
//!
//! Only real comments count: text inside string literals, quoted
//! identifiers, dollar quotes and `--` comments is skipped, so a value that
//! merely looks like a tag (in a row being inserted, say) is never read.

use crate::sql_lexer::{
    is_escape_string, past_block_comment, past_dollar, past_line_comment, past_quoted,
};

/// The tag key of the approval token.
pub const TOKEN_KEY: &str = "ai_agent_safety_token";
/// The tag key of the task id.
pub const TASK_KEY: &str = "ai_agent_safety_task";
/// Longest tag value read; a longer one is refused, not cut.
pub const MAX_VALUE: usize = 200;

/// The tag form an agent appends to its statement.
pub fn tag(key: &str, value: &str) -> String {
    format!("/*{key}='{value}'*/")
}

/// The value of `key` in the statement's comments. `Err` when the tag is
/// malformed, too long, or given twice with different values.
pub fn value(statement: &str, key: &str) -> Result<Option<String>, String> {
    let mut found: Option<String> = None;
    for body in block_comments(statement) {
        for (k, v) in pairs(body) {
            if k != key {
                continue;
            }
            let v = v.map_err(|e| format!("the {key} tag {e}"))?;
            if v.chars().count() > MAX_VALUE {
                return Err(format!(
                    "the {key} tag is longer than {MAX_VALUE} characters"
                ));
            }
            match &found {
                Some(f) if *f != v => {
                    return Err(format!("the statement carries two different {key} tags"))
                }
                _ => found = Some(v),
            }
        }
    }
    Ok(found)
}

/// The bodies of the statement's `/* ... */` comments (nested comments, as
/// PostgreSQL allows them, are part of the outer body).
fn block_comments(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => i = past_quoted(b, i, b'\'', is_escape_string(b, i)),
            b'"' => i = past_quoted(b, i, b'"', false),
            b'-' if b.get(i + 1) == Some(&b'-') => i = past_line_comment(b, i),
            b'$' => i = past_dollar(s, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (end, closed) = past_block_comment(b, i);
                if closed {
                    out.push(&s[i + 2..end - 2]);
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// The `key='value'` pairs of one comment body, comma-separated; values are
/// percent-decoded (sqlcommenter encodes them) and `\'` is a quote.
fn pairs(body: &str) -> Vec<(&str, Result<String, String>)> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let Some(v) = after.strip_prefix('\'') else {
            // Not a tag comment (prose, or a tag of another form).
            break;
        };
        let mut value = String::new();
        let mut end = None;
        let mut chars = v.char_indices();
        while let Some((k, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '\'' => {
                    end = Some(k);
                    break;
                }
                _ => value.push(c),
            }
        }
        let Some(end) = end else {
            out.push((key, Err("has no closing quote".to_string())));
            break;
        };
        out.push((key, percent_decode(&value)));
        rest = v[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    out
}

fn percent_decode(v: &str) -> Result<String, String> {
    if !v.contains('%') {
        return Ok(v.to_string());
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "has a malformed %-escape".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err("decodes to a NUL byte".to_string());
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 once decoded".to_string())
}
