//! One audit event as a record of `ai_agent_safety.audit_log` columns, in two
//! encodings: a JSON object (the server log line) and a line of PostgreSQL's
//! COPY text format (the spool, which the writer loads with COPY: far cheaper
//! per event than parsing JSON in SQL).

/// The columns an event fills, in the order of both encodings.
pub const COLUMNS: [&str; 16] = [
    "ts",
    "database",
    "pid",
    "client_addr",
    "application_name",
    "session_user_name",
    "current_user_name",
    "task_id",
    "source",
    "event",
    "decision",
    "operation",
    "object",
    "statement",
    "reason",
    "token",
];

const TS: usize = 0;
const PID: usize = 2;
const TOKEN: usize = 15;

/// A column value. An empty text is stored as NULL.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Text(&'a str),
    Int(i64),
}

pub type Record<'a> = [Value<'a>; 16];

/// `{"ts":"...","database":...}`: empty texts become `null`.
pub fn to_json(r: &Record) -> String {
    let mut o = String::with_capacity(512);
    write_json(&mut o, r);
    o
}

/// Appends the JSON object of a record to `o`. Every control character is
/// escaped, so the output holds no NUL (it can become a C string as it is).
pub fn write_json(o: &mut String, r: &Record) {
    o.push('{');
    for (i, (key, v)) in COLUMNS.iter().zip(r.iter()).enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push('"');
        o.push_str(key);
        o.push_str("\":");
        match v {
            Value::Int(n) => push_int(o, *n),
            Value::Text("") => o.push_str("null"),
            Value::Text(s) => {
                o.push('"');
                push_escaped(o, s, true);
                o.push('"');
            }
        }
    }
    o.push('}');
}

/// One line of COPY text format, without the newline: tab-separated, `\N` for
/// NULL, backslash, newline, carriage return and tab escaped.
pub fn to_copy_line(r: &Record) -> String {
    let mut o = String::with_capacity(384);
    write_copy_line(&mut o, r);
    o
}

/// Appends the COPY text line of a record (without the newline) to `o`.
pub fn write_copy_line(o: &mut String, r: &Record) {
    for (i, v) in r.iter().enumerate() {
        if i > 0 {
            o.push('\t');
        }
        match v {
            Value::Int(n) => push_int(o, *n),
            Value::Text("") => o.push_str("\\N"),
            Value::Text(s) => push_escaped(o, s, false),
        }
    }
}

/// Appends `s` escaped for JSON (`json`) or for COPY text format: runs of
/// bytes that need no escape are copied whole. Every byte escaped is ASCII, so
/// the runs always end on character boundaries.
fn push_escaped(o: &mut String, s: &str, json: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Most texts need no escape: one pass without branches (which the
    // compiler vectorises) decides, and the text is copied whole.
    let special = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'\\') | (json & (b == b'"'))
    });
    if !special {
        o.push_str(s);
        return;
    }
    let mut run = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let esc = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b'"' if json => "\\\"",
            b if json && b < 0x20 => "",
            _ => continue,
        };
        o.push_str(&s[run..i]);
        if esc.is_empty() {
            o.push_str("\\u00");
            o.push(HEX[(b >> 4) as usize] as char);
            o.push(HEX[(b & 15) as usize] as char);
        } else {
            o.push_str(esc);
        }
        run = i + 1;
    }
    o.push_str(&s[run..]);
}

fn push_int(o: &mut String, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        o.push('-');
    }
    for &d in &digits[i..] {
        o.push(d as char);
    }
}

/// Is this spool line (without its newline) one whole record as
/// [`to_copy_line`] writes it? A line cut by a crash in mid-write runs into the
/// next one; the merged line has the wrong number of fields or, when the cut
/// fell inside the first field, a malformed timestamp. Such a line must be left
/// out, or the COPY of its whole file would fail.
pub fn copy_line_is_whole(line: &str) -> bool {
    let fields: Vec<&str> = line.split('\t').collect();
    fields.len() == COLUMNS.len()
        && is_iso_utc(fields[TS])
        && (fields[PID] == "\\N"
            || (!fields[PID].is_empty() && fields[PID].bytes().all(|b| b.is_ascii_digit())))
        && (fields[TOKEN] == "\\N" || is_uuid(fields[TOKEN]))
        && !line.ends_with('\\')
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as `time::iso_utc` writes it.
fn is_iso_utc(s: &str) -> bool {
    const SHAPE: &[u8] = b"0000-00-00T00:00:00.000000Z";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(b, &p)| {
            if p == b'0' {
                b.is_ascii_digit()
            } else {
                b == p
            }
        })
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(statement: &'a str, token: &'a str) -> Record<'a> {
        [
            Value::Text("2026-11-25T17:00:00.000000Z"),
            Value::Text("prod"),
            Value::Int(4242),
            Value::Text(""),
            Value::Text("psql"),
            Value::Text("agent"),
            Value::Text("agent"),
            Value::Text("task-1"),
            Value::Text("guard"),
            Value::Text("refused"),
            Value::Text("refuse"),
            Value::Text("DELETE"),
            Value::Text("public.orders"),
            Value::Text(statement),
            Value::Text("DELETE is protected"),
            Value::Text(token),
        ]
    }

    #[test]
    fn json_escapes_and_nulls() {
        let j = to_json(&sample("DELETE FROM t WHERE note = 'a\"b\\c\n\t\u{1}'", ""));
        assert!(j.starts_with("{\"ts\":\"2026-11-25T17:00:00.000000Z\",\"database\":\"prod\",\"pid\":4242,\"client_addr\":null,"));
        assert!(j.contains(r#""statement":"DELETE FROM t WHERE note = 'a\"b\\c\n\t\u0001'""#));
        assert!(j.ends_with(",\"token\":null}"));
    }

    #[test]
    fn copy_line_escapes_and_nulls() {
        let l = to_copy_line(&sample(
            "DELETE\tFROM t -- a\\b\r\nnext",
            "0b6f9d7e-3c1a-4f9e-9a2b-1c2d3e4f5a6b",
        ));
        let fields: Vec<&str> = l.split('\t').collect();
        assert_eq!(fields.len(), 16);
        assert_eq!(fields[2], "4242");
        assert_eq!(fields[3], "\\N");
        assert_eq!(fields[13], "DELETE\\tFROM t -- a\\\\b\\r\\nnext");
        assert!(!l.contains('\n'));
        assert!(copy_line_is_whole(&l));
    }

    #[test]
    fn integers() {
        for n in [0i64, 7, -7, 4242, i64::MAX, i64::MIN] {
            let mut o = String::new();
            push_int(&mut o, n);
            assert_eq!(o, n.to_string());
        }
    }

    #[test]
    fn every_control_character_is_escaped_in_json() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let j = to_json(&sample(&all, ""));
        assert!(!j.bytes().any(|b| b < 0x20), "{j}");
        assert!(
            j.contains(r#"\u0000\u0001"#) && j.contains(r#"\u001f"#),
            "{j}"
        );
        // Multi-byte characters pass through whole.
        let j = to_json(&sample("DELETE FROM \"zoë\" -- 日本\n", ""));
        assert!(
            j.contains(r#""statement":"DELETE FROM \"zoë\" -- 日本\n""#),
            "{j}"
        );
    }

    #[test]
    fn whole_line_check_rejects_cut_lines() {
        let a = to_copy_line(&sample("SELECT 1", ""));
        let b = to_copy_line(&sample("SELECT 2", "0b6f9d7e-3c1a-4f9e-9a2b-1c2d3e4f5a6b"));
        assert!(copy_line_is_whole(&a) && copy_line_is_whole(&b));
        // Cut anywhere (after at least one byte) and run into the next line:
        // never taken for whole.
        for cut in 1..a.len() {
            if !a.is_char_boundary(cut) {
                continue;
            }
            let merged = format!("{}{}", &a[..cut], b);
            assert!(!copy_line_is_whole(&merged), "cut at {cut}: {merged}");
        }
        // A cut line on its own (the last line of a file).
        for cut in 0..a.len() {
            assert!(!copy_line_is_whole(&a[..cut]), "cut at {cut}");
        }
        assert!(!copy_line_is_whole(""));
        assert!(!copy_line_is_whole(&a.replace("4242", "42x")));
    }
}
