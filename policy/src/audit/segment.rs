//! Spool segments: the file a backend maps into memory and appends its
//! audit events to, with a copy and a store (no system call, no lock).
//!
//! Layout: a header of [`HEADER_LEN`] bytes, then event lines (COPY text,
//! each with its newline). The header holds, as little-endian words:
//! the magic, `published` (the end of the last whole line: the backend
//! stores it after the line's bytes), `taken` (how far the audit writer has
//! moved lines into closed spool files) and `sealed` (the backend is done
//! with it). Everything here is the pure part: names, the rules for taking
//! and removing, and the merge of several segments' lines into one closed
//! file in time order.

/// Header bytes before the first line.
pub const HEADER_LEN: usize = 64;
/// `AASSEG01`, the header's first word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"AASSEG01");
/// Byte offsets of the header's words.
pub const OFF_MAGIC: usize = 0;
pub const OFF_PUBLISHED: usize = 8;
pub const OFF_TAKEN: usize = 16;
pub const OFF_SEALED: usize = 24;
/// A segment's size (a line that does not fit gets a segment of its own
/// size). The file is sparse: its disk blocks are allocated as the lines
/// reach them, [`FIRST_ALLOCATION`] bytes first, then twice what the
/// segment holds (see [`allocation`]), each time before a line is copied in,
/// so a full disk refuses that event then, never faults the copy into the
/// map; and a backend with an event or two holds one disk block, not a
/// megabyte.
pub const SIZE: usize = 1 << 20;
pub const FIRST_ALLOCATION: usize = 4 << 10;
/// A backend's first events go to the database's shared spool file, with
/// one `write()` each; it makes a segment only for the events after these,
/// so a segment's first block never holds less than the shared file
/// already got from it.
pub const SHARED_FIRST: u32 = 16;
/// At most this many bytes of waiting lines go into one closed file.
pub const TAKE_MAX: usize = 64 << 20;
/// File name suffix of a segment.
pub const EXT: &str = "seg";

/// The file name of a segment made at `created` (µs) by process `pid`:
/// names sort by when they were made, and name their owner.
pub fn name(created: i64, pid: i32) -> String {
    format!("{created:020}-{pid}.{EXT}")
}

/// When a segment was made, and by which process, from its file name.
pub fn parse_name(name: &str) -> Option<(i64, i32)> {
    let stem = name.strip_suffix(".seg")?;
    let (created, pid) = stem.split_once('-')?;
    if created.len() != 20 || !created.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((created.parse().ok()?, pid.parse().ok()?))
}

/// The size of a new segment for a first line of `line` bytes.
pub fn size_for(line: usize) -> usize {
    SIZE.max(HEADER_LEN + line)
}

/// How many bytes of a segment of `size` bytes to have allocated, when
/// `allocated` are and `needed` must be: none more when enough are, else
/// at least twice as many (from [`FIRST_ALLOCATION`]), never past its size.
pub fn allocation(allocated: usize, needed: usize, size: usize) -> usize {
    if needed <= allocated {
        return allocated;
    }
    (allocated * 2).max(FIRST_ALLOCATION).max(needed).min(size)
}

/// How much of `chunk` (lines, each ending with a newline) to take when
/// `room` bytes are left in the closed file: all of it when it fits, else
/// up to its last newline within `room` (at least its first line, so a line
/// longer than `room` still goes, alone).
pub fn take_len(chunk: &[u8], room: usize) -> usize {
    if chunk.len() <= room {
        return chunk.len();
    }
    match chunk[..room].iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => chunk
            .iter()
            .position(|b| *b == b'\n')
            .map_or(chunk.len(), |i| i + 1),
    }
}

/// What the writer reads in a segment's header, and knows of its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// The magic is there (a segment whose owner died while making it has none).
    pub valid: bool,
    pub published: u64,
    pub taken: u64,
    pub sealed: bool,
    /// The process that made it may still append (alive, and made since the
    /// server last started).
    pub owner_alive: bool,
    /// The file's length.
    pub len: u64,
}

impl State {
    /// The bytes waiting to be taken, as a range, when the header is sane.
    pub fn waiting(&self) -> Option<(u64, u64)> {
        let h = HEADER_LEN as u64;
        (self.valid && self.taken >= h && self.published <= self.len && self.taken < self.published)
            .then_some((self.taken, self.published))
    }

    /// Nothing more can arrive and nothing is left: the file can go. A
    /// header that is not sane (damaged by an OS crash) goes once its owner
    /// is gone, whatever it says, since nothing in it can be taken.
    pub fn removable(&self) -> bool {
        if self.owner_alive && !self.sealed {
            return false;
        }
        let h = HEADER_LEN as u64;
        let sane = self.valid && self.taken >= h && self.published <= self.len;
        !sane || self.taken >= self.published
    }
}

/// Merges the lines of several segments' chunks (each in the order its
/// backend wrote them) into one closed spool file, ordered by the time each
/// line begins with (ISO 8601 UTC, so bytes sort as times; a stable sort, so
/// one backend's lines keep their order). Every line ends with a newline;
/// a chunk's last piece without one (an OS crash) stays a line of its own,
/// for the loader to check and count.
pub fn merge(chunks: &[&[u8]]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = Vec::new();
    for c in chunks {
        let c = c.strip_suffix(b"\n").unwrap_or(c);
        if !c.is_empty() {
            lines.extend(super::spool_text::split_lines(c));
        }
    }
    if chunks.len() > 1 {
        // Each line's time found once, not at every comparison.
        let mut keyed: Vec<(&[u8], &[u8])> = lines.iter().map(|l| (time_of(l), *l)).collect();
        keyed.sort_by(|a, b| a.0.cmp(b.0));
        lines = keyed.into_iter().map(|(_, l)| l).collect();
    }
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// The time a spool line begins with (after the mark of `writer_log`).
fn time_of(line: &[u8]) -> &[u8] {
    let line = super::writer_log::unmarked_bytes(line);
    match memchr::memchr(b'\t', line) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The sidecar of a closed file made from segments: which segment it took
/// how far. Written before the closed file appears, applied to the
/// segments' headers after; at a writer's start, a sidecar whose closed
/// file exists is applied again (and one without it is discarded), so a
/// writer killed in between neither loses nor repeats a line.
pub fn format_ranges(ranges: &[(String, u64)]) -> String {
    ranges
        .iter()
        .map(|(s, end)| format!("{s} {end}\n"))
        .collect()
}

pub fn parse_ranges(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (s, end) = l.split_once(' ')?;
            parse_name(s)?;
            Some((s.to_string(), end.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let a = name(123, 4567);
        assert_eq!(a, "00000000000000000123-4567.seg");
        assert_eq!(parse_name(&a), Some((123, 4567)));
        assert!(name(99, 9) < name(100, 1));
        assert_eq!(parse_name("current.copy"), None);
        assert_eq!(parse_name("123-4.seg"), None);
        assert_eq!(parse_name("0000000000000000012x-4.seg"), None);
    }

    #[test]
    fn allocation_grows_from_one_block_to_the_segment() {
        assert_eq!(size_for(10), SIZE);
        assert_eq!(size_for(SIZE), SIZE + HEADER_LEN);
        assert_eq!(allocation(0, 100, SIZE), FIRST_ALLOCATION);
        assert_eq!(allocation(FIRST_ALLOCATION, 100, SIZE), FIRST_ALLOCATION);
        assert_eq!(
            allocation(FIRST_ALLOCATION, FIRST_ALLOCATION + 1, SIZE),
            2 * FIRST_ALLOCATION
        );
        assert_eq!(allocation(SIZE / 2 + 1, SIZE / 2 + 2, SIZE), SIZE);
        // A large line's own segment: all of it at once.
        assert_eq!(allocation(0, 5 * SIZE, 5 * SIZE), 5 * SIZE);
    }

    #[test]
    fn a_take_ends_on_a_line() {
        assert_eq!(take_len(b"a\nb\n", 10), 4);
        assert_eq!(take_len(b"a\nbb\nc\n", 5), 5);
        assert_eq!(take_len(b"a\nbb\nc\n", 4), 2);
        // A first line longer than the room goes alone.
        assert_eq!(take_len(b"aaaa\nb\n", 2), 5);
    }

    fn st(published: u64, taken: u64, sealed: bool, alive: bool) -> State {
        State {
            valid: true,
            published,
            taken,
            sealed,
            owner_alive: alive,
            len: SIZE as u64,
        }
    }

    #[test]
    fn waiting_and_removable() {
        let h = HEADER_LEN as u64;
        assert_eq!(st(h, h, false, true).waiting(), None);
        assert_eq!(st(h + 10, h, false, true).waiting(), Some((h, h + 10)));
        // A live owner's segment stays, even when everything is taken.
        assert!(!st(h + 10, h + 10, false, true).removable());
        // Sealed or its owner gone, and everything taken: it goes.
        assert!(st(h + 10, h + 10, true, true).removable());
        assert!(st(h + 10, h + 10, false, false).removable());
        // Lines still waiting: it stays, whoever owns it.
        assert!(!st(h + 10, h, true, false).removable());
        // A header past the file's end (OS crash): nothing to take; it goes
        // once its owner is gone.
        let mut bad = st(SIZE as u64 + 1, h, false, false);
        assert_eq!(bad.waiting(), None);
        assert!(bad.removable());
        bad.owner_alive = true;
        assert!(!bad.removable());
        let mut no_magic = st(0, 0, false, false);
        no_magic.valid = false;
        assert_eq!(no_magic.waiting(), None);
        assert!(no_magic.removable());
    }

    #[test]
    fn merge_orders_by_time_and_keeps_each_backends_order() {
        let a = b"2026-01-01T00:00:01.000000Z\ta1\n2026-01-01T00:00:03.000000Z\ta2\n";
        let b = b"2026-01-01T00:00:02.000000Z\tb1\n2026-01-01T00:00:03.000000Z\tb2\n";
        let m = merge(&[a, b]);
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "2026-01-01T00:00:01.000000Z\ta1\n2026-01-01T00:00:02.000000Z\tb1\n\
             2026-01-01T00:00:03.000000Z\ta2\n2026-01-01T00:00:03.000000Z\tb2\n"
        );
        // A line whose log line the writer owes sorts by its time too.
        let c = b"+2026-01-01T00:00:00.500000Z\tc1\n+2026-01-01T00:00:02.500000Z\tc2\n";
        let m = String::from_utf8(merge(&[a, c])).unwrap();
        let order: Vec<&str> = m.lines().map(|l| &l[l.len() - 2..]).collect();
        assert_eq!(order, ["c1", "a1", "c2", "a2"], "{m}");
        // One chunk: as it is. A piece with no newline becomes a line.
        assert_eq!(merge(&[b"x\ny"]), b"x\ny\n");
        assert_eq!(merge(&[b""]), b"");
    }

    #[test]
    fn ranges_round_trip() {
        let r = vec![(name(1, 2), 64), (name(3, 4), 1000)];
        assert_eq!(parse_ranges(&format_ranges(&r)), r);
        assert_eq!(parse_ranges("junk\nx.seg 5\n"), vec![]);
    }
}
