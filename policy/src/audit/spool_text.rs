//! Reading the spool's text as the writer loads it: every byte of every
//! spooled event passes through here, so the lines and fields are found
//! with `memchr`, and UTF-8 is checked the fast way first.

/// The fields of a spool line, as `line.split('\t')` yields them, found
/// with `memchr`: the writer splits every line it loads twice (checked,
/// then converted). Callgrind, 4,000 spooled selects, instructions per
/// line: the check 2,049 with `str::split`, 1,689 with this; the
/// conversion 4,154 and 3,198 (a plain byte loop: 1,845 and 3,316).
pub(crate) fn fields(line: &str) -> Fields<'_> {
    Fields { rest: Some(line) }
}

/// `String::from_utf8_lossy`, checked first the fast way: the lossy walk
/// goes a byte at a time, and the writer reads every spooled byte (1,343
/// instructions per event of the writer's pass, callgrind).
pub fn lossy_utf8(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// `text.split(|b| *b == b'\n')`, found with `memchr`.
pub fn split_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// The lines of a spool file, as `text.split_terminator('\n')` yields
/// them, found with `memchr`.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // A newline is ASCII: both sides are whole characters.
        let (line, after) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = after;
        Some(line)
    })
}

pub(crate) struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match memchr::memchr(b'\t', rest.as_bytes()) {
            // A tab is ASCII: both sides are whole characters.
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_as_slice_split_does() {
        for text in [&b""[..], b"a", b"\n", b"a\nb", b"a\n\nb\n", b"\nx\xff\ny"] {
            assert_eq!(
                split_lines(text).collect::<Vec<_>>(),
                text.split(|b| *b == b'\n').collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn fields_split_as_str_split_does() {
        for line in [
            "",
            "a",
            "\t",
            "a\tb",
            "a\t\tb\t",
            "\tx\u{e9}\ty\t\t",
            "\u{1F600}\t\u{e9}",
        ] {
            assert_eq!(
                fields(line).collect::<Vec<_>>(),
                line.split('\t').collect::<Vec<_>>(),
                "{line:?}"
            );
        }
    }

    #[test]
    fn lossy_utf8_is_from_utf8_lossy() {
        for b in [
            &b"abc"[..],
            b"",
            b"a\xffb",
            "\u{e9}".as_bytes(),
            b"\xe2\x82",
        ] {
            assert_eq!(lossy_utf8(b), String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn lines_split_as_split_terminator_does() {
        for text in [
            "",
            "a",
            "\n",
            "\n\n",
            "a\nb",
            "a\n\nb\n",
            "\nx\u{e9}\ny",
            "z\n",
        ] {
            assert_eq!(
                lines(text).collect::<Vec<_>>(),
                text.split_terminator('\n').collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }
}
