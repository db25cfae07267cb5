//! Events stored many to a row: `ai_agent_safety.audit_batch`.
//!
//! A row of `audit_log` cost the writer about 25,000 instructions (callgrind,
//! binary COPY of 20,000 events: heap tuple, primary key btree, BRIN, WAL).
//! Stored as one row per batch of up to [`MAX_EVENTS`] events, the same
//! events cost about 1,500 each. A batch is the events in the binary form of
//! [`super::binary`] (the COPY binary file of its lines), compressed by
//! PostgreSQL's TOAST; the view `ai_agent_safety.audit_log` reads it back
//! with [`decode`], giving event `i` of a batch the id `first_id + i`.

use super::binary::{self, Kind, HEADER};
use super::record::COLUMNS;

/// The most events in one batch. Ids are reserved per batch from the
/// sequence, which therefore steps by this much.
pub const MAX_EVENTS: usize = 1024;
/// A batch closes before its lines pass this many bytes, so that reading
/// one event never means decompressing much more than a megabyte.
pub const MAX_BYTES: usize = 1 << 20;

/// The most bytes a stored batch may have: its lines (at most
/// [`MAX_BYTES`], or one longer line: a statement is cut at
/// `audit_statement_max`, at most 1,000,000 characters) in binary form.
/// [`decode`] reads nothing longer, so that what it is given costs a
/// bounded amount of memory.
pub const MAX_STORED: usize = 8 << 20;

/// One batch, ready for `audit_batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The events in binary form.
    pub rows: Vec<u8>,
    /// How many.
    pub events: usize,
    /// The earliest and the latest event's time, microseconds since
    /// 2000-01-01 UTC: retention and time filters skip whole batches.
    pub ts_first: i64,
    pub ts_last: i64,
}

/// The lines of a spool file (whole or not, in load order) cut into
/// batches, each line checked as it is converted (one walk over it, where
/// `copy_line_is_whole` and then the conversion took two): the batches, and how
/// many lines were left out as not whole. `None` when a whole line holds
/// something the binary form does not expect (or a batch would be longer
/// than [`MAX_STORED`]); the caller then checks the lines and loads them as
/// rows.
pub fn checked_batches(lines: &[&str]) -> Option<(Vec<Batch>, usize)> {
    let kinds = binary::kinds();
    let mut out = Vec::new();
    let mut left_out = 0;
    let mut open: Option<Open> = None;
    for line in lines {
        if let Some(o) = &open {
            if o.events > 0 && (o.events == MAX_EVENTS || o.bytes + line.len() > MAX_BYTES) {
                out.push(open.take()?.close()?);
            }
        }
        let o = open.get_or_insert_with(Open::new);
        match binary::whole_line_into(&mut o.rows, line, &kinds) {
            Ok(ts) => {
                o.events += 1;
                o.bytes += line.len();
                o.ts = (o.ts.0.min(ts), o.ts.1.max(ts));
            }
            Err(binary::NotAppended::NotWhole) => left_out += 1,
            Err(binary::NotAppended::Unexpected) => return None,
        }
    }
    if let Some(o) = open.filter(|o| o.events > 0) {
        out.push(o.close()?);
    }
    Some((out, left_out))
}

/// A batch being filled by [`checked_batches`].
struct Open {
    rows: Vec<u8>,
    events: usize,
    bytes: usize,
    ts: (i64, i64),
}

impl Open {
    fn new() -> Open {
        let mut rows = Vec::with_capacity(256 << 10);
        rows.extend_from_slice(HEADER);
        Open {
            rows,
            events: 0,
            bytes: 0,
            ts: (i64::MAX, i64::MIN),
        }
    }

    fn close(mut self) -> Option<Batch> {
        self.rows.extend_from_slice(&(-1i16).to_be_bytes());
        (self.rows.len() <= MAX_STORED && self.events > 0).then_some(Batch {
            rows: self.rows,
            events: self.events,
            ts_first: self.ts.0,
            ts_last: self.ts.1,
        })
    }
}

/// One value of a stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    /// Microseconds since 2000-01-01 UTC.
    Timestamp(i64),
    Int4(i32),
    Uuid([u8; 16]),
    Text(&'a str),
}

/// The events of a stored batch, each its values in the order of
/// [`COLUMNS`]. An error (never a panic) for bytes that are not a batch as
/// [`checked_batches`] makes them: a wrong header, count or length, a text that is
/// not UTF-8 or holds a NUL, or bytes after the trailer.
pub fn decode(b: &[u8]) -> Result<Vec<[Value<'_>; COLUMNS.len()]>, String> {
    if b.len() > MAX_STORED {
        return Err(format!(
            "not an audit batch: {} bytes, more than the {MAX_STORED} a batch may have",
            b.len()
        ));
    }
    let kinds: Vec<Kind> = COLUMNS.iter().map(|c| binary::kind(c)).collect();
    let rest = b
        .strip_prefix(HEADER)
        .ok_or("not an audit batch: wrong header")?;
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= rest.len())
            .ok_or("audit batch cut short")?;
        let s = &rest[*at..end];
        *at = end;
        Ok(s)
    };
    let mut events = Vec::new();
    loop {
        let n = i16::from_be_bytes(take(&mut at, 2)?.try_into().unwrap());
        if n == -1 {
            if at != rest.len() {
                return Err("audit batch: bytes after its end".into());
            }
            return Ok(events);
        }
        if events.len() == MAX_EVENTS {
            return Err(format!("audit batch: more than {MAX_EVENTS} events"));
        }
        if n as usize != kinds.len() {
            return Err(format!(
                "audit batch: an event of {n} values, expected {}",
                kinds.len()
            ));
        }
        let mut row = [Value::Null; COLUMNS.len()];
        for (slot, k) in row.iter_mut().zip(&kinds) {
            let len = i32::from_be_bytes(take(&mut at, 4)?.try_into().unwrap());
            if len == -1 {
                continue;
            }
            let len = usize::try_from(len).map_err(|_| "audit batch: a negative length")?;
            let v = take(&mut at, len)?;
            let wrong = || format!("audit batch: a {k:?} of {len} bytes");
            *slot = match k {
                Kind::Timestamp => {
                    Value::Timestamp(i64::from_be_bytes(v.try_into().map_err(|_| wrong())?))
                }
                Kind::Int4 => Value::Int4(i32::from_be_bytes(v.try_into().map_err(|_| wrong())?)),
                Kind::Uuid => Value::Uuid(v.try_into().map_err(|_| wrong())?),
                Kind::Text => {
                    let t = std::str::from_utf8(v).map_err(|_| "audit batch: a text not UTF-8")?;
                    if t.contains('\0') {
                        return Err("audit batch: a text holding a NUL".into());
                    }
                    Value::Text(t)
                }
            };
        }
        events.push(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{self, allowed_read, to_copy_line};

    fn line(ts: &str, statement: &str, pid: Option<i32>, token: &str) -> String {
        to_copy_line(&allowed_read(ts, statement, token, pid))
    }

    /// Whole lines cut into batches (none left out).
    fn batches(lines: &[&str]) -> Option<Vec<Batch>> {
        checked_batches(lines)
            .filter(|(_, left_out)| *left_out == 0)
            .map(|(b, _)| b)
    }

    fn col(name: &str) -> usize {
        COLUMNS.iter().position(|c| *c == name).unwrap()
    }

    #[test]
    fn a_batch_reads_back_as_its_events() {
        let token = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let a = line(
            "2026-12-02T15:07:24.915102Z",
            "SELECT 1\t-- tab\nnewline \\ é",
            Some(4242),
            token,
        );
        let b = line("2026-12-02T15:07:23.000001Z", "SELECT 2", None, "");
        let got = batches(&[&a, &b]).unwrap();
        assert_eq!(got.len(), 1);
        let batch = &got[0];
        assert_eq!(batch.events, 2);
        // Not in time order: the range is still the least and the most.
        assert_eq!(batch.ts_first, 849_539_243_000_001);
        assert_eq!(batch.ts_last, 849_539_244_915_102);
        let ev = decode(&batch.rows).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0][col("ts")], Value::Timestamp(849_539_244_915_102));
        assert_eq!(ev[0][col("pid")], Value::Int4(4242));
        assert_eq!(
            ev[0][col("token")],
            Value::Uuid(*uuid::Uuid::parse_str(token).unwrap().as_bytes())
        );
        assert_eq!(
            ev[0][col("statement")],
            Value::Text("SELECT 1\t-- tab\nnewline \\ é")
        );
        assert_eq!(ev[0][col("client_addr")], Value::Null);
        assert_eq!(ev[1][col("pid")], Value::Null);
        assert_eq!(ev[1][col("token")], Value::Null);
        assert_eq!(ev[1][col("statement")], Value::Text("SELECT 2"));
    }

    #[test]
    fn batches_close_at_their_event_and_byte_limits() {
        let l = line("2026-12-02T15:07:24.915102Z", "x", None, "");
        let many: Vec<&str> = std::iter::repeat_n(l.as_str(), 2 * MAX_EVENTS + 1).collect();
        let got = batches(&many).unwrap();
        assert_eq!(
            got.iter().map(|b| b.events).collect::<Vec<_>>(),
            [MAX_EVENTS, MAX_EVENTS, 1]
        );
        let big = line(
            "2026-12-02T15:07:24.915102Z",
            &"y".repeat(MAX_BYTES / 3),
            None,
            "",
        );
        let got = batches(&[&big, &big, &big, &big]).unwrap();
        assert_eq!(got.iter().map(|b| b.events).collect::<Vec<_>>(), [2, 2]);
        // A line longer than the byte limit still goes, alone.
        let huge = line(
            "2026-12-02T15:07:24.915102Z",
            &"z".repeat(MAX_BYTES + 1),
            None,
            "",
        );
        let got = batches(&[&l, &huge, &l]).unwrap();
        assert_eq!(got.iter().map(|b| b.events).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(batches(&[]).unwrap().is_empty());
    }

    #[test]
    fn what_is_not_a_batch_is_an_error_not_a_panic() {
        let l = line("2026-12-02T15:07:24.915102Z", "x", Some(7), "");
        let good = batches(&[&l]).unwrap().remove(0).rows;
        assert!(decode(&good).is_ok());
        assert!(decode(b"").is_err());
        assert!(decode(b"PGCOPY").is_err());
        // Cut anywhere, it is an error.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        // A text that is not UTF-8, or that holds a NUL.
        let at = good
            .windows(5)
            .position(|w| w == b"psql\0")
            .unwrap_or_else(|| good.windows(4).position(|w| w == b"psql").unwrap());
        for bad in [0xffu8, 0] {
            let mut b = good.clone();
            b[at] = bad;
            assert!(decode(&b).is_err(), "byte {bad:#x}");
        }
        // A pid of the wrong width.
        let pid_at = good
            .windows(8)
            .position(|w| w == [0, 0, 0, 4, 0, 0, 0, 7])
            .unwrap();
        let mut b = good.clone();
        b[pid_at + 3] = 3;
        assert!(decode(&b).is_err());
    }

    #[test]
    fn decode_reads_no_more_than_a_batch_may_hold() {
        let l = line("2026-12-02T15:07:24.915102Z", "x", None, "");
        let many: Vec<&str> = std::iter::repeat_n(l.as_str(), MAX_EVENTS + 1).collect();
        // What batches makes decodes...
        for b in batches(&many).unwrap() {
            assert_eq!(decode(&b.rows).unwrap().len(), b.events);
        }
        // ...but one more event than a batch holds is refused,
        let too_many = binary::copy_file(&many).unwrap();
        assert!(decode(&too_many)
            .unwrap_err()
            .contains("more than 1024 events"));
        // and so is anything longer than a batch may be.
        let mut long = vec![0u8; MAX_STORED + 1];
        long[..HEADER.len()].copy_from_slice(HEADER);
        assert!(decode(&long).unwrap_err().contains("more than"));
        // Lines too long for one batch make none: they are loaded as rows.
        let huge = line(
            "2026-12-02T15:07:24.915102Z",
            &"z".repeat(MAX_STORED),
            None,
            "",
        );
        assert!(batches(&[&huge]).is_none());
    }

    #[test]
    fn lines_the_binary_form_does_not_expect_make_no_batches() {
        let good = line("2026-12-02T15:07:24.915102Z", "x", None, "");
        let odd = good.replace("\tx\t", "\t\\x41\t");
        assert!(batches(&[&good, &odd]).is_none());
        assert!(checked_batches(&[&good, &odd]).is_none());
    }

    /// What `copy_line_is_whole` then `batches` make, in one walk: the
    /// same batches from whole lines; lines that are not whole left out and
    /// counted, whatever makes them so.
    #[test]
    fn checked_batches_are_the_whole_lines_batches() {
        let tok = "0b9c3c4e-6f1a-4d2b-9a51-3f1d2c4b5a69";
        let l = |i: usize| {
            line(
                &format!("2026-12-02T15:07:{:02}.{:06}Z", i % 60, i),
                &format!("SELECT {i}\tand a tab"),
                Some(i as i32),
                if i.is_multiple_of(7) { tok } else { "" },
            )
        };
        let many: Vec<String> = (0..2 * MAX_EVENTS + 5).map(l).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let big = line(
            "2026-12-02T15:07:24.915102Z",
            &"y".repeat(MAX_BYTES / 3),
            None,
            "",
        );
        let huge = line(
            "2026-12-02T15:07:24.915102Z",
            &"z".repeat(MAX_BYTES + 1),
            None,
            "",
        );
        for lines in [
            refs.clone(),
            vec![&big, &big, &big, &big],
            vec![&refs[0], &huge, &refs[1]],
            vec![],
        ] {
            assert_eq!(checked_batches(&lines), Some((batches(&lines).unwrap(), 0)));
        }
        let whole = &many[3];
        let cut = |n: usize| whole[..n].to_string();
        let not_whole: Vec<String> = vec![
            cut(10),                              // inside the time
            cut(whole.len() - 5),                 // a field short
            format!("{}{}", cut(40), whole),      // two run together
            format!("{whole}\\"),                 // ends in a backslash
            whole.replacen("\t3\t", "\t+3\t", 1), // a pid that is not digits
            whole.replacen('T', " ", 1),          // another time shape
            format!("{whole}\tone more"),         // a field too many
            String::new(),
        ];
        for bad in &not_whole {
            assert!(!record::copy_line_is_whole(bad), "{bad:?}");
        }
        let mut mixed: Vec<&str> = Vec::new();
        for (i, l) in refs.iter().enumerate() {
            mixed.push(l);
            if i.is_multiple_of(300) {
                mixed.extend(not_whole.iter().map(String::as_str));
            }
        }
        let (got, left_out) = checked_batches(&mixed).unwrap();
        let bad = mixed.len() - refs.len();
        assert_eq!(bad, not_whole.len() * refs.len().div_ceil(300));
        assert_eq!(left_out, bad);
        let want = batches(&refs).unwrap();
        let events = |bs: &[Batch]| -> Vec<Vec<String>> {
            bs.iter()
                .flat_map(|b| decode(&b.rows).unwrap())
                .map(|e| e.iter().map(|v| format!("{v:?}")).collect())
                .collect()
        };
        assert_eq!(events(&got), events(&want));
        assert_eq!(got.iter().map(|b| b.events).sum::<usize>(), refs.len());
    }
}
