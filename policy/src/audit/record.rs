//! One audit event as a row of `ai_agent_safety.audit_log`, defined once.
//!
//! [`Record`] is the single definition of the columns. Everything else is
//! derived from it through serde:
//! - the server-log line is its JSON ([`write_json`], serde_json);
//! - the spool line is its COPY text form ([`write_copy_line`]), which the
//!   writer loads with `COPY` (far cheaper per event than parsing JSON in SQL);
//! - the column list the writer's `COPY` names is its field names
//!   ([`columns`]).
//!
//! Adding a column means adding a field here and the column in
//! `sql/audit.sql`.

use super::copy::{for_each_field, Field};
use super::{EventKind, Source, Verdict};
use serde::{Serialize, Serializer};
use std::sync::OnceLock;

/// One audit event. Empty texts are stored as NULL (JSON `null`, COPY `\N`).
#[derive(Serialize, Clone, Copy, Debug)]
pub struct Record<'a> {
    /// ISO 8601 UTC with microseconds, as [`crate::time::iso_utc`] writes it.
    pub ts: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub database: &'a str,
    pub pid: Option<i32>,
    #[serde(serialize_with = "empty_as_null")]
    pub client_addr: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub application_name: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub session_user_name: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub current_user_name: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub task_id: &'a str,
    pub source: Source,
    pub event: EventKind,
    pub decision: Verdict,
    #[serde(serialize_with = "empty_as_null")]
    pub operation: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub object: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub statement: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub reason: &'a str,
    #[serde(serialize_with = "empty_as_null")]
    pub token: &'a str,
}

fn empty_as_null<S: Serializer>(v: &&str, s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(v)
    }
}

impl Record<'_> {
    /// A record with every field set, for deriving the column list.
    const SHAPE: Record<'static> = Record {
        ts: "",
        database: "",
        pid: None,
        client_addr: "",
        application_name: "",
        session_user_name: "",
        current_user_name: "",
        task_id: "",
        source: Source::Guard,
        event: EventKind::Allowed,
        decision: Verdict::Allow,
        operation: "",
        object: "",
        statement: "",
        reason: "",
        token: "",
    };
}

/// The columns of `ai_agent_safety.audit_log` a record fills, in the order of
/// its COPY line.
pub fn columns() -> &'static [&'static str] {
    static COLUMNS: OnceLock<Vec<&'static str>> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        let mut names = Vec::with_capacity(16);
        for_each_field(&Record::SHAPE, &mut |name, _| names.push(name))
            .expect("Record has only text and integer fields");
        names
    })
}

/// The position of a column in the COPY line.
fn column_index(name: &str) -> usize {
    columns()
        .iter()
        .position(|c| *c == name)
        .expect("a column of Record")
}

/// Appends the JSON object of a record to `o`. serde_json escapes every
/// control character, so the output holds no NUL (it can become a C string
/// as it is).
pub fn write_json(o: &mut Vec<u8>, r: &Record) {
    serde_json::to_writer(o, r).expect("a Record always serializes to JSON");
}

/// The JSON object of a record.
pub fn to_json(r: &Record) -> String {
    serde_json::to_string(r).expect("a Record always serializes to JSON")
}

/// Appends the COPY text line of a record, without the newline, to `o`:
/// tab-separated, `\N` for NULL, backslash, newline, carriage return and tab
/// escaped.
pub fn write_copy_line(o: &mut String, r: &Record) {
    let mut first = true;
    for_each_field(r, &mut |_, v| {
        if !first {
            o.push('\t');
        }
        first = false;
        match v {
            Field::Null => o.push_str("\\N"),
            Field::Int(n) => o.push_str(itoa::Buffer::new().format(n)),
            Field::Text(s) => push_copy_escaped(o, s),
        }
    })
    .expect("Record has only text and integer fields");
}

/// The COPY text line of a record, without the newline.
pub fn to_copy_line(r: &Record) -> String {
    let mut o = String::with_capacity(384);
    write_copy_line(&mut o, r);
    o
}

/// Appends `s` escaped for COPY text format. Runs of bytes that need no
/// escape are copied whole; every byte escaped is ASCII, so the runs always
/// end on character boundaries.
fn push_copy_escaped(o: &mut String, s: &str) {
    // Most texts need no escape: one pass without branches (which the
    // compiler vectorises) decides, and the text is copied whole.
    if !s
        .bytes()
        .fold(false, |any, b| any | (b < 0x20) | (b == b'\\'))
    {
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
            _ => continue,
        };
        o.push_str(&s[run..i]);
        o.push_str(esc);
        run = i + 1;
    }
    o.push_str(&s[run..]);
}

/// Is this spool line (without its newline) one whole record as
/// [`write_copy_line`] writes it? A line cut by a crash in mid-write runs into
/// the next one; the merged line has the wrong number of fields or, when the
/// cut fell inside the first field, a malformed timestamp. Such a line must be
/// left out, or the COPY of its whole file would fail.
pub fn copy_line_is_whole(line: &str) -> bool {
    let fields: Vec<&str> = line.split('\t').collect();
    let field = |name: &str| fields.get(column_index(name)).copied().unwrap_or("");
    let pid = field("pid");
    let token = field("token");
    fields.len() == columns().len()
        && is_iso_utc(field("ts"))
        && (pid == "\\N" || (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())))
        && (token == "\\N" || is_uuid(token))
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
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(statement: &'a str, token: &'a str) -> Record<'a> {
        Record {
            ts: "2026-11-25T17:00:00.000000Z",
            database: "prod",
            pid: Some(4242),
            client_addr: "",
            application_name: "psql",
            session_user_name: "agent",
            current_user_name: "agent",
            task_id: "task-1",
            source: Source::Guard,
            event: EventKind::Refused,
            decision: Verdict::Refuse,
            operation: "DELETE",
            object: "public.orders",
            statement,
            reason: "DELETE is protected",
            token,
        }
    }

    #[test]
    fn columns_follow_the_struct() {
        assert_eq!(
            columns(),
            [
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
                "token"
            ]
        );
    }

    #[test]
    fn json_escapes_and_nulls() {
        let j = to_json(&sample("DELETE FROM t WHERE note = 'a\"b\\c\n\t\u{1}'", ""));
        assert!(j.starts_with("{\"ts\":\"2026-11-25T17:00:00.000000Z\",\"database\":\"prod\",\"pid\":4242,\"client_addr\":null,"), "{j}");
        assert!(
            j.contains(r#""statement":"DELETE FROM t WHERE note = 'a\"b\\c\n\t\u0001'""#),
            "{j}"
        );
        assert!(
            j.contains(r#""source":"guard","event":"refused","decision":"refuse""#),
            "{j}"
        );
        assert!(j.ends_with(",\"token\":null}"), "{j}");
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
        assert_eq!(fields[8], "guard");
        assert_eq!(fields[13], "DELETE\\tFROM t -- a\\\\b\\r\\nnext");
        assert!(!l.contains('\n'));
        assert!(copy_line_is_whole(&l));
    }

    #[test]
    fn a_missing_pid_is_null() {
        let r = Record {
            pid: None,
            ..sample("SELECT 1", "")
        };
        assert_eq!(to_copy_line(&r).split('\t').nth(2), Some("\\N"));
        assert!(to_json(&r).contains("\"pid\":null"));
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
