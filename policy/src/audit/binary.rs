//! Spool lines as a file of PostgreSQL's COPY binary format.
//!
//! The writer loads spooled events with `COPY ... FROM file`. In text
//! format, COPY splits and unescapes every field in C, and it runs each
//! column's input function; `timestamptz_in` alone costs about 4,000
//! instructions per row. That parsing was half of the 30,000 instructions
//! per row that the load cost (callgrind, one COPY of 20,000 events). In
//! binary format the server only checks each value's length and copies
//! it. The writer turns the spool's text lines into binary here, in one
//! pass that knows the record's fixed shape, and then loads that file.
//!
//! The spool itself stays text, one line per event: a line cut by a
//! crash is recognisable (`record::copy_line_is_whole`), and people can
//! read the file.

use super::record::{self, COLUMNS};

/// The file header: signature, flags, header extension length.
pub(crate) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// How each column of the record travels in binary format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// timestamptz: microseconds since 2000-01-01 UTC, 8 bytes.
    Timestamp,
    /// integer: 4 bytes.
    Int4,
    /// uuid: 16 bytes.
    Uuid,
    /// text or name: the characters (UTF-8 here; the server converts them
    /// from client_encoding, which the load sets to UTF8).
    Text,
}

pub(crate) fn kind(column: &str) -> Kind {
    match column {
        "ts" => Kind::Timestamp,
        "pid" => Kind::Int4,
        "token" => Kind::Uuid,
        _ => Kind::Text,
    }
}

/// A COPY binary file holding these spool lines (each one whole, as
/// `record::copy_line_is_whole` checks), in order. `None` when a line is
/// not whole or holds something the fixed shape does not expect (an escape
/// the spool's writer never writes, a value out of range): the caller then
/// loads the text.
pub fn copy_file(lines: &[&str]) -> Option<Vec<u8>> {
    copy_file_timed(lines).map(|(o, _)| o)
}

/// [`copy_file`], with the earliest and the latest of the lines' times
/// (microseconds since 2000-01-01 UTC; `(i64::MAX, i64::MIN)` for no lines).
pub fn copy_file_timed(lines: &[&str]) -> Option<(Vec<u8>, (i64, i64))> {
    let mut o =
        Vec::with_capacity(HEADER.len() + 2 + lines.iter().map(|l| l.len() + 96).sum::<usize>());
    o.extend_from_slice(HEADER);
    let mut range = (i64::MAX, i64::MIN);
    let kinds = kinds();
    for line in lines {
        let ts = whole_line_into(&mut o, line, &kinds).ok()?;
        range = (range.0.min(ts), range.1.max(ts));
    }
    o.extend_from_slice(&(-1i16).to_be_bytes());
    Some((o, range))
}

/// The kind of each column, in order.
pub(crate) fn kinds() -> [Kind; COLUMNS.len()] {
    let mut k = [Kind::Text; COLUMNS.len()];
    for (i, c) in COLUMNS.iter().enumerate() {
        k[i] = kind(c);
    }
    k
}

/// Why a line was not appended by [`whole_line_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAppended {
    /// Not whole (`record::copy_line_is_whole` says so): left out.
    NotWhole,
    /// Whole, but holding what the binary form does not expect.
    Unexpected,
}

/// Appends one spool line as a row of the binary form and returns its
/// time, checking as it goes what `record::copy_line_is_whole` checks: one
/// walk over the line instead of two. Nothing is appended when the line
/// is not.
pub(crate) fn whole_line_into(
    o: &mut Vec<u8>,
    line: &str,
    kinds: &[Kind; COLUMNS.len()],
) -> Result<i64, NotAppended> {
    let at = o.len();
    let r = line_into(o, line, kinds);
    if r.is_err() {
        o.truncate(at);
    }
    r
}

fn line_into(
    o: &mut Vec<u8>,
    line: &str,
    kinds: &[Kind; COLUMNS.len()],
) -> Result<i64, NotAppended> {
    use NotAppended::*;
    if line.ends_with('\\') {
        return Err(NotWhole);
    }
    o.extend_from_slice(&(COLUMNS.len() as i16).to_be_bytes());
    let mut ts = None;
    let mut n = 0;
    for f in super::spool_text::fields(line) {
        let k = *kinds.get(n).ok_or(NotWhole)?;
        if !record::field_is_whole(n, f) {
            return Err(NotWhole);
        }
        if let Some(t) = field(o, f, k).ok_or(Unexpected)? {
            ts = Some(t);
        }
        n += 1;
    }
    if n != COLUMNS.len() {
        return Err(NotWhole);
    }
    ts.ok_or(Unexpected)
}

/// Appends one field: its length (-1 for NULL) and its bytes. A time's
/// value comes back too.
fn field(o: &mut Vec<u8>, f: &str, k: Kind) -> Option<Option<i64>> {
    if f == "\\N" {
        o.extend_from_slice(&(-1i32).to_be_bytes());
        return Some(None);
    }
    match k {
        Kind::Timestamp => {
            let us = crate::time::parse_iso_utc(f)?;
            o.extend_from_slice(&8i32.to_be_bytes());
            o.extend_from_slice(&us.to_be_bytes());
            return Some(Some(us));
        }
        Kind::Int4 => {
            let n: i32 = f.parse().ok()?;
            o.extend_from_slice(&4i32.to_be_bytes());
            o.extend_from_slice(&n.to_be_bytes());
        }
        Kind::Uuid => {
            let u = uuid::Uuid::try_parse(f).ok()?;
            o.extend_from_slice(&16i32.to_be_bytes());
            o.extend_from_slice(u.as_bytes());
        }
        Kind::Text => {
            let at = o.len();
            o.extend_from_slice(&0i32.to_be_bytes());
            unescape(o, f)?;
            let len = i32::try_from(o.len() - at - 4).ok()?;
            o[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    Some(None)
}

/// Appends a text field without COPY's escapes, as the spool's writer
/// (`record::write_copy_line`) makes them: `\\`, `\n`, `\r`, `\t`.
fn unescape(o: &mut Vec<u8>, f: &str) -> Option<()> {
    let b = f.as_bytes();
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &b[i..]) {
        o.extend_from_slice(&b[i..i + p]);
        let c = match b.get(i + p + 1)? {
            b'\\' => b'\\',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            _ => return None,
        };
        o.push(c);
        i += p + 2;
    }
    o.extend_from_slice(&b[i..]);
    Some(())
}

/// The column list the binary file fills, as for the text load.
pub fn columns() -> &'static [&'static str] {
    record::columns()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{allowed_read, to_copy_line, Record};

    /// Reads a binary COPY file back: per row, each field's bytes or None.
    fn decode(b: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        assert!(b.starts_with(HEADER));
        let mut i = HEADER.len();
        let mut rows = Vec::new();
        loop {
            let n = i16::from_be_bytes([b[i], b[i + 1]]);
            i += 2;
            if n == -1 {
                assert_eq!(i, b.len(), "the trailer ends the file");
                return rows;
            }
            let mut row = Vec::new();
            for _ in 0..n {
                let len = i32::from_be_bytes(b[i..i + 4].try_into().unwrap());
                i += 4;
                if len < 0 {
                    row.push(None);
                } else {
                    row.push(Some(b[i..i + len as usize].to_vec()));
                    i += len as usize;
                }
            }
            rows.push(row);
        }
    }

    fn record<'a>(statement: &'a str, token: &'a str, pid: Option<i32>) -> Record<'a> {
        allowed_read("2026-12-02T15:07:24.915102Z", statement, token, pid)
    }

    #[test]
    fn every_field_travels_as_its_type() {
        let statement = "SELECT 1\t-- a tab,\na newline, \\ a backslash, \r, é and \u{0} a NUL";
        let token = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let a = to_copy_line(&record(statement, token, Some(4242)));
        let b = to_copy_line(&record("SELECT 2", "", None));
        let rows = decode(&copy_file(&[&a, &b]).expect("convertible"));
        assert_eq!(rows.len(), 2);
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        let r = &rows[0];
        assert_eq!(r.len(), COLUMNS.len());
        // 2026-12-02T15:07:24.915102Z, in microseconds since 2000-01-01.
        let ts = i64::from_be_bytes(r[col("ts")].clone().unwrap().try_into().unwrap());
        assert_eq!(ts, 849_539_244_915_102);
        assert_eq!(r[col("pid")], Some(4242i32.to_be_bytes().to_vec()));
        assert_eq!(
            r[col("token")],
            Some(uuid::Uuid::parse_str(token).unwrap().as_bytes().to_vec())
        );
        // COPY cannot carry a NUL: the spool writes it as the text \u0000.
        assert_eq!(
            r[col("statement")],
            Some(statement.replace('\u{0}', "\\u0000").into_bytes())
        );
        assert_eq!(r[col("client_addr")], None);
        assert_eq!(r[col("source")], Some(b"guard".to_vec()));
        assert_eq!(rows[1][col("pid")], None);
        assert_eq!(rows[1][col("token")], None);
    }

    #[test]
    fn the_epoch_and_before_it_are_exact() {
        let at = |ts: &str| {
            let line =
                to_copy_line(&record("x", "", None)).replacen("2026-12-02T15:07:24.915102Z", ts, 1);
            let rows = decode(&copy_file(&[&line]).unwrap());
            i64::from_be_bytes(rows[0][0].clone().unwrap().try_into().unwrap())
        };
        assert_eq!(at(&crate::time::iso_utc(0)), 0);
        assert_eq!(at(&crate::time::iso_utc(-1)), -1);
        assert_eq!(
            at(&crate::time::iso_utc(849_539_244_915_102)),
            849_539_244_915_102
        );
    }

    #[test]
    fn what_the_shape_does_not_expect_is_left_to_the_text_load() {
        let good = to_copy_line(&record("x", "", None));
        assert!(copy_file(&[&good]).is_some());
        // An escape the spool's writer never writes.
        assert!(copy_file(&[&good.replace("\tx\t", "\t\\x41\t")]).is_none());
        // A field too many, or a pid past int4.
        assert!(copy_file(&[&format!("{good}\textra")]).is_none());
        assert!(copy_file(&[&good.replacen("\t\\N\t", "\t99999999999\t", 1)]).is_none());
        // No lines: an empty file that COPY reads as no rows.
        assert_eq!(decode(&copy_file(&[]).unwrap()).len(), 0);
    }
}
