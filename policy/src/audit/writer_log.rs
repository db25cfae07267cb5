//! Log lines the audit writer writes for agent backends.
//!
//! With `audit_destination = both`, an allowed statement's event is only
//! spooled, its line marked with [`MARK`]; the writer writes its log line as
//! it loads the line: the same JSON the backend would have written
//! ([`json_of_copy_line`]). Two agent backends that each append a line to the
//! server log for every statement contend for the log file: on this project's
//! 2-core machine that line cost an agent's select-only load about a third of
//! its throughput, against about 3 µs of the writer's CPU per line
//! (README, Performance). Refusals and every other decision are still logged
//! by the backend at the moment of the decision, and so is an allowed
//! statement's line whenever no writer is running for the database as it
//! is spooled, or the one running has not begun a pass for
//! [`LATE_AFTER_US`] ([`keeps_up`]): the spool keeps the mark only for a
//! writer that is getting through its loop, as nothing else would write
//! the line while no writer can start or one is held up.

use super::record::{self, Field, COLUMNS};
use super::spool_text;

/// The first byte of a spool line whose log line the writer owes. A line
/// otherwise begins with its time, a digit.
pub const MARK: char = '+';

/// How long a running writer may go without beginning a pass (it begins
/// one every 100 ms, and a pass loads what waits) before the backends log
/// their allowed statements' lines themselves: a writer held up (waiting
/// on a lock, say) would otherwise hold those lines back for as long as
/// that lasted.
pub const LATE_AFTER_US: i64 = 1_000_000;

/// Does a running writer that began its last pass at `pass_at` keep up at
/// `now` (both in microseconds), so that a line spooled now may leave its
/// log line to it? A clock that went back counts as keeping up.
pub fn keeps_up(pass_at: i64, now: i64) -> bool {
    now - pass_at < LATE_AFTER_US
}

/// The line without its mark, and whether it had one.
pub fn unmarked(line: &str) -> (bool, &str) {
    match line.strip_prefix(MARK) {
        Some(rest) => (true, rest),
        None => (false, line),
    }
}

/// The bytes a marked line sorts by: its time, as an unmarked line's.
pub fn unmarked_bytes(line: &[u8]) -> &[u8] {
    line.strip_prefix(&[MARK as u8]).unwrap_or(line)
}

/// A spool file's text without its marks, each owed line (unmarked)
/// given to `owed` in order; `None`, and nothing given, when no line is
/// marked. A last line without its newline (cut by a crash) stays so.
pub fn unmark_file(text: &str, mut owed: impl FnMut(&str)) -> Option<String> {
    let marked = text.starts_with(MARK) || text.contains(&format!("\n{MARK}"));
    if !marked {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    for l in spool_text::lines(text) {
        let (is_owed, line) = unmarked(l);
        if is_owed {
            owed(line);
        }
        out.push_str(line);
        out.push('\n');
    }
    if !text.ends_with('\n') {
        out.pop();
    }
    Some(out)
}

/// Appends the JSON object of a spooled event (its COPY line, without the
/// mark and the newline) to `o`: byte for byte what `record::write_json`
/// writes for the record the line came from. False, and nothing appended,
/// when the line is not one whole record (a line cut by a crash: it is not
/// loaded either).
pub fn json_of_copy_line(line: &str, o: &mut Vec<u8>) -> bool {
    if !record::copy_line_is_whole(line) {
        return false;
    }
    let mut text = String::new();
    o.push(b'{');
    for (i, (name, f)) in COLUMNS.iter().zip(spool_text::fields(line)).enumerate() {
        let v = if f == "\\N" {
            Field::Null
        } else if *name == "pid" {
            // Whole (checked above): digits.
            f.parse().map_or(Field::Null, Field::Int)
        } else if f.contains('\\') {
            text.clear();
            copy_unescaped(&mut text, f);
            Field::Text(&text)
        } else {
            Field::Text(f)
        };
        record::json_field(o, i == 0, name, v);
    }
    o.push(b'}');
    true
}

/// Appends a COPY text field with the escapes `record::write_copy_line`
/// writes (`\\`, `\n`, `\r`, `\t`) undone; another escaped character
/// stands for itself, as COPY reads it.
fn copy_unescaped(o: &mut String, f: &str) {
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => o.push('\n'),
            Some('r') => o.push('\r'),
            Some('t') => o.push('\t'),
            Some(c) => o.push(c),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{allowed_read, to_copy_line, write_json, Record};

    fn record<'a>(statement: &'a str, task: &'a str, pid: Option<i32>) -> Record<'a> {
        Record {
            client_addr: "[local]",
            application_name: "mcp \"server\"",
            task_id: task,
            ..allowed_read("2026-12-03T18:16:17.753456Z", statement, "", pid)
        }
    }

    #[test]
    fn the_writers_json_is_the_backends() {
        for (statement, task, pid) in [
            ("SELECT 1", "", Some(4242)),
            ("SELECT '\\\\x'\n\tFROM t\r -- \\n é", "task\t1", Some(1)),
            ("SELECT \"a\\\" FROM \u{1} x", "\\N", None),
            ("\\", "\\\\", Some(i32::MAX)),
        ] {
            let r = record(statement, task, pid);
            let mut want = Vec::new();
            write_json(&mut want, &r);
            let line = format!("{MARK}{}", to_copy_line(&r));
            let (marked, line) = unmarked(&line);
            assert!(marked);
            let mut got = b"ai_agent_safety: ".to_vec();
            assert!(json_of_copy_line(line, &mut got), "{line}");
            assert_eq!(
                String::from_utf8_lossy(&got[17..]),
                String::from_utf8_lossy(&want),
                "{statement:?}"
            );
        }
    }

    #[test]
    fn a_file_loses_its_marks_and_gives_its_owed_lines_in_order() {
        let a = to_copy_line(&record("SELECT 'a'", "", Some(1)));
        let b = to_copy_line(&record("SELECT 'b'", "", Some(2)));
        let text = format!("{MARK}{a}\n{b}\n{MARK}{b}\n{MARK}{a}");
        let mut owed = Vec::new();
        let clean = unmark_file(&text, |l| owed.push(l.to_string())).unwrap();
        assert_eq!(clean, format!("{a}\n{b}\n{b}\n{a}"));
        assert_eq!(owed, [a.clone(), b.clone(), a.clone()]);
        let plain = format!("{a}\n{b}\n");
        assert_eq!(unmark_file(&plain, |_| panic!("nothing owed")), None);
        assert_eq!(
            unmark_file(&format!("{MARK}{a}\n"), |_| {}),
            Some(format!("{a}\n"))
        );
    }

    #[test]
    fn a_cut_line_gives_no_json_and_an_unmarked_line_stays_as_it_is() {
        let line = to_copy_line(&record("SELECT 1", "", Some(7)));
        let mut o = Vec::new();
        assert!(!json_of_copy_line(&line[..line.len() - 4], &mut o));
        assert!(!json_of_copy_line(&format!("{MARK}{line}"), &mut o));
        assert!(o.is_empty());
        assert_eq!(unmarked(&line), (false, line.as_str()));
        assert_eq!(
            unmarked_bytes(format!("{MARK}{line}").as_bytes()),
            line.as_bytes()
        );
        assert_eq!(unmarked_bytes(line.as_bytes()), line.as_bytes());
    }

    #[test]
    fn a_writer_keeps_up_until_a_pass_is_a_second_late() {
        let pass = 1_000_000_000;
        assert!(keeps_up(pass, pass));
        assert!(keeps_up(pass, pass + LATE_AFTER_US - 1));
        assert!(!keeps_up(pass, pass + LATE_AFTER_US));
        assert!(!keeps_up(pass, pass + 60 * LATE_AFTER_US));
        // The clock went back: not a late writer.
        assert!(keeps_up(pass, pass - 5_000_000));
    }
}
