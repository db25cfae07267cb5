//! A statement's form, for tokens bound to the statement they approve: its
//! tokens as PostgreSQL's lexer sees them, with what does not change the
//! statement taken out. Comments and whitespace go; unquoted words (key
//! words and names) are folded to lower case, as the parser folds them;
//! constants, quoted names, operators and bind parameters stay exactly as
//! written, and so do the tables, columns and conditions they spell.
//! Trailing semicolons go.
//!
//! (PostgreSQL 15 cannot print the raw parse tree of a DELETE or a DROP, so
//! the form is lexical. It is strict: `<>` and `!=`, or `1.0` and `1.00`,
//! are different forms, and a token bound to one is refused for the other.)

use crate::sql_lexer::{past_block_comment, past_dollar, past_line_comment, past_quoted};

/// Where a form's statement part ends and the fingerprint of its table's
/// code (triggers, rules, defaults, policies) begins.
pub const TABLE_CODE: &str = "\n-- table code: ";

/// Do two forms differ only in their table's code (the same statement, a
/// table whose triggers, rules, defaults or policies changed)?
pub fn only_table_code_differs(a: &str, b: &str) -> bool {
    match (a.split_once(TABLE_CODE), b.split_once(TABLE_CODE)) {
        (Some((sa, ca)), Some((sb, cb))) => sa == sb && ca != cb,
        _ => false,
    }
}

/// The form of `sql`, read as PostgreSQL reads it with
/// `standard_conforming_strings = on` (its default).
pub fn of(sql: &str) -> String {
    of_with(sql, true)
}

/// The form of `sql` as PostgreSQL reads it with `standard_conforming_strings`
/// at `standard_strings`. With it off, a backslash escapes the next character
/// in every '...' string (so `'a\' /* ' || x -- */` is one string, not a
/// string and a comment), and the form says so: the same text read under
/// the other setting is another statement (`'a\nb'` is four characters, or
/// three), so its form differs.
pub fn of_with(sql: &str, standard_strings: bool) -> String {
    let form = lexical(sql, standard_strings);
    if standard_strings {
        form
    } else {
        format!("standard_conforming_strings=off {form}")
    }
}

fn lexical(sql: &str, standard_strings: bool) -> String {
    let mut tokens: Vec<String> = tokens(sql, standard_strings)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    while tokens.last().is_some_and(|t| t == ";") {
        tokens.pop();
    }
    tokens.join(" ")
}

/// Where each token of `sql` starts, as this lexer reads it: the glue
/// compares them with where PostgreSQL's own scanner starts its tokens, and
/// binds no statement the two read differently.
pub fn token_starts(sql: &str, standard_strings: bool) -> Vec<usize> {
    tokens(sql, standard_strings)
        .into_iter()
        .map(|(start, _)| start)
        .collect()
}

/// The tokens of `sql` with where each starts.
fn tokens(sql: &str, standard_strings: bool) -> Vec<(usize, String)> {
    let b = sql.as_bytes();
    let mut tokens: Vec<(usize, String)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = past_line_comment(b, i);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = past_block_comment(b, i).0;
                continue;
            }
            b'\'' => i = past_quoted(b, i, b'\'', !standard_strings),
            b'"' => i = past_quoted(b, i, b'"', false),
            b'$' => i = past_dollar(sql, i),
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                // A string with a prefix: E'..', B'..', X'..', U&'..'.
                let word = &sql[start..i];
                if b.get(i) == Some(&b'\'') && word.len() == 1 {
                    let escapes = word.eq_ignore_ascii_case("e");
                    i = past_quoted(b, i, b'\'', escapes);
                    tokens.push((
                        start,
                        format!("{}{}", word.to_ascii_lowercase(), &sql[start + 1..i]),
                    ));
                    continue;
                }
                tokens.push((start, word.to_ascii_lowercase()));
                continue;
            }
            _ if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                while i < b.len() {
                    let d = b[i];
                    let exponent_sign = (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E');
                    if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            _ if is_operator_char(c) => {
                while i < b.len() && is_operator_char(b[i]) {
                    // A comment starts a new token.
                    if (b[i] == b'-' && b.get(i + 1) == Some(&b'-'))
                        || (b[i] == b'/' && b.get(i + 1) == Some(&b'*'))
                    {
                        break;
                    }
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
                // PostgreSQL's rule: an operator of several characters ends
                // in + or - only if it holds one of ~ ! @ # % ^ & | ` ?
                // (so `=-5` is `=` and `-5`).
                let op = &b[start..i];
                if op.len() > 1 && !op.iter().any(|c| b"~!@#%^&|`?".contains(c)) {
                    while i > start + 1 && matches!(b[i - 1], b'+' | b'-') {
                        i -= 1;
                    }
                }
            }
            // PostgreSQL's two-character tokens `::`, `:=` and `..`.
            b':' if matches!(b.get(i + 1), Some(b':' | b'=')) => i += 2,
            b'.' if b.get(i + 1) == Some(&b'.') => i += 2,
            _ => {
                // Punctuation and anything else: one character (whole UTF-8
                // sequences are words above).
                i += 1;
            }
        }
        tokens.push((start, sql[start..i].to_string()));
    }
    tokens
}

fn is_operator_char(c: u8) -> bool {
    matches!(
        c,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}
