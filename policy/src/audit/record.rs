//! One audit event as a row of `ai_agent_safety.audit_log`, defined once.
//!
//! The `record!` invocation below is the single definition of the columns:
//! it makes the struct [`Record`], its column list [`COLUMNS`], and
//! [`Record::fields`], its values in that order. Everything else is derived
//! from it:
//! - the spool line is its COPY text form ([`write_copy_line`]), which the
//!   writer loads with `COPY ... (COLUMNS)` (far cheaper per event than
//!   parsing JSON in SQL);
//! - the server-log line is its JSON ([`write_json`]), byte for byte what
//!   serde_json writes for the same struct ([`to_json`], derived with
//!   serde; the tests compare the two). The line is written by hand from
//!   `fields()` because serde_json, and a serde walk over the fields, cost
//!   2,000 and 300-600 more instructions per event (callgrind, scenario 6 of
//!   scripts/bench), and with `audit_level = all` every agent statement
//!   writes one.
//!
//! Adding a column means adding a line to `record!` and the column in
//! `sql/audit.sql`.

use super::{EventKind, Source, Verdict};
use serde::{Serialize, Serializer};

/// One field's value as both encodings need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    Null,
    Text(&'a str),
    Int(i64),
}

/// A type a record's field may have, and its value as a [`Field`].
pub trait AsField {
    fn field(&self) -> Field<'_>;
}

impl AsField for &str {
    /// An empty text is stored as NULL.
    fn field(&self) -> Field<'_> {
        if self.is_empty() {
            Field::Null
        } else {
            Field::Text(self)
        }
    }
}

impl AsField for Option<i32> {
    fn field(&self) -> Field<'_> {
        self.map_or(Field::Null, |n| Field::Int(n.into()))
    }
}

macro_rules! words_as_fields {
    ($($t:ty),*) => {$(
        impl AsField for $t {
            fn field(&self) -> Field<'_> {
                Field::Text(self.as_str())
            }
        }
    )*};
}
words_as_fields!(Source, EventKind, Verdict);

/// serde's view of a field: the same value as [`AsField`] gives.
fn serialize_field<T: AsField, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    match v.field() {
        Field::Null => s.serialize_none(),
        Field::Text(t) => s.serialize_str(t),
        Field::Int(n) => s.serialize_i64(n),
    }
}

/// Defines the record: the struct, its column list and its values in order.
macro_rules! record {
    ($($(#[$meta:meta])* $name:ident: $ty:ty,)*) => {
        /// One audit event. Empty texts are stored as NULL (JSON `null`,
        /// COPY `\N`).
        #[derive(Serialize, Clone, Copy, Debug)]
        pub struct Record<'a> {
            $(
                $(#[$meta])*
                #[serde(serialize_with = "serialize_field")]
                pub $name: $ty,
            )*
        }

        /// The columns of `ai_agent_safety.audit_log` a record fills, in the
        /// order of its COPY line.
        pub const COLUMNS: &[&str] = &[$(stringify!($name)),*];

        impl<'a> Record<'a> {
            /// The values, in the order of [`COLUMNS`].
            #[inline]
            pub fn fields(&self) -> [Field<'_>; COLUMNS.len()] {
                [$(AsField::field(&self.$name)),*]
            }
        }
    };
}

record! {
    /// ISO 8601 UTC with microseconds, as [`crate::time::iso_utc`] writes it.
    ts: &'a str,
    database: &'a str,
    pid: Option<i32>,
    client_addr: &'a str,
    application_name: &'a str,
    session_user_name: &'a str,
    current_user_name: &'a str,
    task_id: &'a str,
    source: Source,
    event: EventKind,
    decision: Verdict,
    operation: &'a str,
    object: &'a str,
    statement: &'a str,
    reason: &'a str,
    token: &'a str,
}

/// The columns of `ai_agent_safety.audit_log` a record fills, in the order of
/// its COPY line.
pub fn columns() -> &'static [&'static str] {
    COLUMNS
}

/// Where the columns [`copy_line_is_whole`] checks are in the line (a test
/// compares them with [`COLUMNS`]).
const TS_AT: usize = 0;
const PID_AT: usize = 2;
const TOKEN_AT: usize = 15;

/// The position of a column in the COPY line.
#[cfg(test)]
fn column_index(name: &str) -> usize {
    columns()
        .iter()
        .position(|c| *c == name)
        .expect("a column of Record")
}

/// Appends the JSON object of a record to `o`, byte for byte what
/// serde_json writes ([`to_json`]; the tests compare the two), with every
/// control character escaped, so the output holds no NUL (it can become a C
/// string as it is). Runs that need no escape are copied whole.
pub fn write_json(o: &mut Vec<u8>, r: &Record) {
    o.push(b'{');
    for (i, (name, v)) in COLUMNS.iter().zip(r.fields()).enumerate() {
        json_field(o, i == 0, name, v);
    }
    o.push(b'}');
}

/// Appends one `"name":value` pair of the JSON object.
#[inline]
pub(crate) fn json_field(o: &mut Vec<u8>, first: bool, name: &str, v: Field) {
    if !first {
        o.push(b',');
    }
    o.push(b'"');
    o.extend_from_slice(name.as_bytes());
    o.extend_from_slice(b"\":");
    match v {
        Field::Null => o.extend_from_slice(b"null"),
        Field::Int(n) => o.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Field::Text(s) => {
            o.push(b'"');
            push_json_escaped(o, s);
            o.push(b'"');
        }
    }
}

/// The spool's COPY line (without its newline) and the log line's JSON
/// object of one record: what every event writes.
pub fn write_both(copy: &mut String, json: &mut Vec<u8>, r: &Record) {
    json.push(b'{');
    for (i, (name, v)) in COLUMNS.iter().zip(r.fields()).enumerate() {
        copy_field(copy, i == 0, v);
        json_field(json, i == 0, name, v);
    }
    json.push(b'}');
}

/// The JSON object of a record, through serde_json: the reference that
/// [`write_json`] is tested against.
pub fn to_json(r: &Record) -> String {
    serde_json::to_string(r).expect("a Record always serializes to JSON")
}

/// Appends `s` escaped for a JSON string as serde_json escapes it: `"`, `\`,
/// the short escapes `\b \f \n \r \t`, and `\u00XX` for the other
/// control characters.
fn push_json_escaped(o: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    // Most texts need no escape: one pass without branches (which the
    // compiler vectorises) decides, and the text is copied whole.
    if !bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'\\') | (b == b'"')
    }) {
        o.extend_from_slice(bytes);
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b if b < 0x20 => b"",
            _ => continue,
        };
        o.extend_from_slice(&bytes[run..i]);
        if short.is_empty() {
            o.extend_from_slice(b"\\u00");
            o.push(HEX[(b >> 4) as usize]);
            o.push(HEX[(b & 15) as usize]);
        } else {
            o.extend_from_slice(short);
        }
        run = i + 1;
    }
    o.extend_from_slice(&bytes[run..]);
}

/// Appends the COPY text line of a record, without the newline, to `o`:
/// tab-separated, `\N` for NULL, backslash, newline, carriage return and tab
/// escaped.
pub fn write_copy_line(o: &mut String, r: &Record) {
    for (i, v) in r.fields().into_iter().enumerate() {
        copy_field(o, i == 0, v);
    }
}

/// Appends one field of the COPY line.
#[inline]
fn copy_field(o: &mut String, first: bool, v: Field) {
    if !first {
        o.push('\t');
    }
    match v {
        Field::Null => o.push_str("\\N"),
        Field::Int(n) => o.push_str(itoa::Buffer::new().format(n)),
        Field::Text(s) => push_copy_escaped(o, s),
    }
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
            // COPY cannot carry a NUL byte: shown as the text \u0000.
            0 => "\\\\u0000",
            _ => continue,
        };
        o.push_str(&s[run..i]);
        o.push_str(esc);
        run = i + 1;
    }
    o.push_str(&s[run..]);
}

/// A spool line with every non-ASCII character written as `<U+XXXX>`: what
/// the writer loads when a file failed to load once, so that no character a
/// database's encoding cannot store can keep an event (or the events beside
/// it) out of the audit log. ASCII is stored by every encoding.
pub fn ascii_folded(line: &str) -> std::borrow::Cow<'_, str> {
    if line.is_ascii() {
        return line.into();
    }
    let mut o = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if c.is_ascii() {
            o.push(c);
        } else {
            o.push_str(&format!("<U+{:04X}>", c as u32));
        }
    }
    o.into()
}

/// Is this spool line (without its newline) one whole record as
/// [`write_copy_line`] writes it? A line cut by a crash in mid-write runs into
/// the next one; the merged line has the wrong number of fields or, when the
/// cut fell inside the first field, a malformed timestamp. Such a line must be
/// left out, or the COPY of its whole file would fail.
pub fn copy_line_is_whole(line: &str) -> bool {
    // One pass over the fields, without collecting them: the writer checks
    // every line it loads.
    let mut n = 0;
    for f in super::spool_text::fields(line) {
        if !field_is_whole(n, f) {
            return false;
        }
        n += 1;
    }
    n == columns().len() && !line.ends_with('\\')
}

/// Is field `n` of a spool line as [`write_copy_line`] writes it? (The
/// fields a cut line shows: its time, pid and token.)
pub(crate) fn field_is_whole(n: usize, f: &str) -> bool {
    match n {
        TS_AT => is_iso_utc(f),
        PID_AT => f == "\\N" || (!f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())),
        TOKEN_AT => f == "\\N" || is_uuid(f),
        _ => true,
    }
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

/// An allowed read's record, for tests of the encodings.
#[cfg(test)]
pub(crate) fn allowed_read<'a>(
    ts: &'a str,
    statement: &'a str,
    token: &'a str,
    pid: Option<i32>,
) -> Record<'a> {
    Record {
        ts,
        database: "prod",
        pid,
        client_addr: "",
        application_name: "psql",
        session_user_name: "agent",
        current_user_name: "agent",
        task_id: "task-1",
        source: Source::Guard,
        event: EventKind::Allowed,
        decision: Verdict::Allow,
        operation: "SELECT",
        object: "",
        statement,
        reason: "",
        token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_columns_are_where_the_record_puts_them() {
        assert_eq!(column_index("ts"), TS_AT);
        assert_eq!(column_index("pid"), PID_AT);
        assert_eq!(column_index("token"), TOKEN_AT);
    }

    fn sample<'a>(statement: &'a str, token: &'a str) -> Record<'a> {
        Record {
            event: EventKind::Refused,
            decision: Verdict::Refuse,
            operation: "DELETE",
            object: "public.orders",
            reason: "DELETE is protected",
            ..allowed_read("2026-11-25T17:00:00.000000Z", statement, token, Some(4242))
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
    fn a_nul_byte_never_reaches_copy() {
        let l = to_copy_line(&sample("DELETE FROM t WHERE a = 'x\0y'", ""));
        assert!(!l.contains('\0'), "{l:?}");
        assert!(l.contains(r"x\\u0000y"), "{l}");
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

    fn fast_json(r: &Record) -> String {
        let mut o = Vec::new();
        write_json(&mut o, r);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn the_log_line_is_byte_for_byte_what_serde_json_writes() {
        let every_byte: String = (0u8..0x80).map(char::from).collect();
        let texts = [
            "",
            "SELECT 1",
            "DELETE FROM \"zoë\" WHERE note = 'a\"b\\c' -- 日本\n\t\r",
            &every_byte,
            "\u{7f}\u{80}\u{2028}\u{1F600}",
        ];
        for t in texts {
            for token in ["", "0b6f9d7e-3c1a-4f9e-9a2b-1c2d3e4f5a6b"] {
                let r = sample(t, token);
                assert_eq!(fast_json(&r), to_json(&r), "statement {t:?}");
                let r = Record {
                    pid: None,
                    reason: t,
                    ..r
                };
                assert_eq!(fast_json(&r), to_json(&r), "reason {t:?}");
            }
        }
    }

    #[test]
    fn one_walk_writes_both_lines_as_the_two_writers_do() {
        let r = sample(
            "DELETE\tFROM \"t\" -- a\\b\r\nnext",
            "0b6f9d7e-3c1a-4f9e-9a2b-1c2d3e4f5a6b",
        );
        let (mut copy, mut json) = (String::new(), Vec::new());
        write_both(&mut copy, &mut json, &r);
        assert_eq!(copy, to_copy_line(&r));
        assert_eq!(String::from_utf8(json).unwrap(), to_json(&r));
    }

    #[test]
    fn folded_lines_are_ascii_and_still_whole() {
        let l = to_copy_line(&sample("DELETE FROM \"zoë\" -- 日本", ""));
        let f = ascii_folded(&l);
        assert!(f.is_ascii());
        assert!(
            f.contains("zo<U+00EB>") && f.contains("<U+65E5><U+672C>"),
            "{f}"
        );
        assert!(copy_line_is_whole(&f));
        let plain = to_copy_line(&sample("SELECT 1", ""));
        assert!(matches!(
            ascii_folded(&plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn every_control_character_is_escaped_in_json() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let j = fast_json(&sample(&all, ""));
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
