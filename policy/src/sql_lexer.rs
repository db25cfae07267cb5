//! The few rules of PostgreSQL's lexer that reading a statement's text
//! needs: where a quoted string or name, a dollar quote, a parameter and a
//! comment end. Shared by `sql_comment` (tags) and `statement_form`.

/// Past a quoted string or name starting at `i` (at its quote `q`); a
/// doubled quote is part of it. In an `E'...'` string (`escapes`) a
/// backslash escapes the next character. Unterminated: the end of `b`.
pub fn past_quoted(b: &[u8], i: usize, q: u8, escapes: bool) -> usize {
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

/// Is the quote at `i` the start of an `E'...'` string?
pub fn is_escape_string(b: &[u8], i: usize) -> bool {
    i > 0 && matches!(b[i - 1], b'E' | b'e')
}

/// Past what a `$` at `i` starts: a parameter (`$1`), or a dollar-quoted
/// string (`$$...$$`, `$tag$...$tag$`, the tag of ASCII letters, digits, _
/// and any non-ASCII character, not starting with a digit). A `$` that
/// starts neither is stepped over. Unterminated: the end of `s`.
pub fn past_dollar(s: &str, i: usize) -> usize {
    let b = s.as_bytes();
    let mut j = i + 1;
    if b.get(j).is_some_and(u8::is_ascii_digit) {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        return j;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return i + 1;
    }
    let delim = &s[i..=j];
    match s[j + 1..].find(delim) {
        Some(p) => j + 1 + p + delim.len(),
        None => s.len(),
    }
}

/// Past a `/* ... */` comment starting at `i` (nested comments are part of
/// it, as PostgreSQL reads them), and whether it was closed.
pub fn past_block_comment(b: &[u8], i: usize) -> (usize, bool) {
    let mut depth = 1;
    let mut j = i + 2;
    while j < b.len() && depth > 0 {
        if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
            depth += 1;
            j += 2;
        } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
            depth -= 1;
            j += 2;
        } else {
            j += 1;
        }
    }
    (j, depth == 0)
}

/// Past a `--` comment starting at `i` (to the end of its line, which
/// PostgreSQL's lexer ends at a newline or a carriage return).
pub fn past_line_comment(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < b.len() && b[j] != b'\n' && b[j] != b'\r' {
        j += 1;
    }
    j
}

/// Where the statement whose first token is at `loc` starts once the
/// comments and blanks ahead of it are counted in: just past the last `;`
/// before `loc` that is not inside a string, name or comment (0 when there
/// is none). PostgreSQL 18 places a statement at its first token; 15 and 17
/// at the end of the statement before it. Read this way, a leading comment
/// tag belongs to its statement on every major.
pub fn start_with_leading_comments(s: &str, loc: usize) -> usize {
    let b = s.as_bytes();
    let loc = loc.min(b.len());
    let mut start = 0;
    let mut i = 0;
    while i < loc {
        i = match b[i] {
            b';' => {
                start = i + 1;
                i + 1
            }
            b'\'' => past_quoted(b, i, b'\'', is_escape_string(b, i)),
            b'"' => past_quoted(b, i, b'"', false),
            b'$' => past_dollar(s, i),
            b'/' if b.get(i + 1) == Some(&b'*') => past_block_comment(b, i).0,
            b'-' if b.get(i + 1) == Some(&b'-') => past_line_comment(b, i),
            _ => i + 1,
        };
    }
    start
}
