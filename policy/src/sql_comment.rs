//! Tags a statement carries in its own text, in the sqlcommenter form tools
//! already emit: `/*key='value',other='value'*/`. An agent sends its approval
//! token (and its task id) this way, in the same call as the statement, so
//! nothing depends on a setting surviving between calls through a pool.
//!
//! Only real comments count: text inside string literals, quoted
//! identifiers, dollar quotes and `--` comments is skipped, so a value that
//! merely looks like a tag (in a row being inserted, say) is never read.

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
            b'\'' => i = skip_quoted(b, i, b'\''),
            b'"' => i = skip_quoted(b, i, b'"'),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'$' => i = skip_dollar(s, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i + 2;
                let mut depth = 1;
                i = start;
                while i < b.len() && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                if depth == 0 {
                    out.push(&s[start..i - 2]);
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Past a quoted string or identifier starting at `i` (a doubled quote is
/// part of it; a backslash escapes in `E'...'`, which is also skipped right
/// when the backslash precedes a quote).
fn skip_quoted(b: &[u8], i: usize, q: u8) -> usize {
    let escapes = q == b'\'' && i > 0 && matches!(b[i - 1], b'E' | b'e');
    let mut j = i + 1;
    while j < b.len() {
        if escapes && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Past a dollar-quoted string starting at `i` (`$$...$$`, `$tag$...$tag$`);
/// a `$` that opens none (a parameter `$1`) is stepped over.
fn skip_dollar(s: &str, i: usize) -> usize {
    let rest = &s[i + 1..];
    let Some(end) = rest.find('$') else {
        return i + 1;
    };
    let tag = &rest[..end];
    // PostgreSQL's lexer: ASCII letters, digits, _ and any non-ASCII character.
    if !tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())
        || tag.starts_with(|c: char| c.is_ascii_digit())
    {
        return i + 1;
    }
    let delim = &s[i..i + end + 2];
    let body_start = i + delim.len();
    match s[body_start..].find(delim) {
        Some(p) => body_start + p + delim.len(),
        None => s.len(),
    }
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
