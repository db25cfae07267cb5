//! Times as PostgreSQL keeps them (microseconds since 2000-01-01 UTC), in
//! the text forms the audit log uses, through chrono.

use chrono::{DateTime, SecondsFormat};

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_UNIX_S: i64 = 946_684_800;

/// PostgreSQL-epoch microseconds as ISO 8601 UTC with microseconds:
/// `2026-11-25T17:00:00.000000Z`. Out-of-range times (beyond chrono's
/// years ±262,143) give the epoch, never a panic.
///
/// Every audit event's time is written here, in the agent's backend: for
/// years 0 to 9999 the digits are written directly, two at a time; other
/// years go through chrono, whose formatting cost 690 instructions per event
/// (callgrind, scenario 6t of scripts/bench). A unit test compares the two.
pub fn iso_utc(pg_us: i64) -> String {
    let unix_us = pg_us.saturating_add(PG_EPOCH_UNIX_S * 1_000_000);
    let days = unix_us.div_euclid(86_400_000_000);
    let in_day = unix_us.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return chrono_iso_utc(pg_us);
    }
    let secs = in_day / 1_000_000;
    let micros = in_day % 1_000_000;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    // Two digits at a time, from a table.
    const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    let mut put2 = |at: usize, v: i64| {
        let i = (v as usize % 100) * 2;
        b[at..at + 2].copy_from_slice(&PAIRS[i..i + 2]);
    };
    put2(0, y / 100);
    put2(2, y);
    put2(5, m);
    put2(8, d);
    put2(11, secs / 3600);
    put2(14, secs / 60 % 60);
    put2(17, secs % 60);
    put2(20, micros / 10_000);
    put2(22, micros / 100);
    put2(24, micros);
    // Only ASCII digits and separators were written.
    String::from_utf8(b.to_vec()).unwrap_or_default()
}

/// [`iso_utc`] through chrono: the reference, and years outside 0-9999.
fn chrono_iso_utc(pg_us: i64) -> String {
    let unix_us = pg_us.saturating_add(PG_EPOCH_UNIX_S * 1_000_000);
    DateTime::from_timestamp_micros(unix_us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The PostgreSQL-epoch microseconds of a time in RFC 3339. The shape
/// [`iso_utc`] writes (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) is read directly
/// (chrono's parse was 3.5% of the audit writer's CPU time: perf, 2 agents
/// with audit_level = all); anything else goes through chrono.
pub fn parse_iso_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let shaped = b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z';
    if shaped {
        if let (Some(y), Some(m), Some(d), Some(h), Some(mi), Some(sec), Some(us)) = (
            num(0, 4),
            num(5, 7),
            num(8, 10),
            num(11, 13),
            num(14, 16),
            num(17, 19),
            num(20, 26),
        ) {
            if (1..=12).contains(&m)
                && d >= 1
                && d <= days_in_month(y, m)
                && h < 24
                && mi < 60
                && sec < 60
            {
                let days = days_from_civil(y, m, d);
                let unix_us = (days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000 + us;
                return Some(unix_us - PG_EPOCH_UNIX_S * 1_000_000);
            }
        }
    }
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    t.timestamp_micros()
        .checked_sub(PG_EPOCH_UNIX_S * 1_000_000)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(super::iso_utc(0), "2000-01-01T00:00:00.000000Z");
        assert_eq!(super::iso_utc(-1), "1999-12-31T23:59:59.999999Z");
        // 2026-11-25 17:00:00 UTC
        let s = (1_795_626_000i64 - 946_684_800) * 1_000_000;
        assert_eq!(super::iso_utc(s), "2026-11-25T17:00:00.000000Z");
        assert_eq!(super::iso_utc(i64::MAX), "1970-01-01T00:00:00.000000Z");
    }

    /// Times spread over years 0 to 9999 and beyond, and the edges of days,
    /// months, leap years and centuries.
    fn samples() -> Vec<i64> {
        let mut v = vec![0, -1, 1, i64::MAX, i64::MIN, 849_539_244_915_102];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // About ±250,000 years around 2000: both paths of the format.
            v.push((i128::from(x % 15_800_000_000_000_000_000) - 7_900_000_000_000_000_000) as i64);
            // And years 0 to 9999, the direct path.
            v.push((i128::from(x % 315_000_000_000_000_000) - 63_000_000_000_000_000) as i64);
        }
        for y in [
            0i64, 1, 99, 100, 400, 1582, 1900, 1969, 1970, 1999, 2000, 2024, 2100, 9999, 10000, -1,
        ] {
            for (m, d) in [(1, 1), (2, 28), (2, 29), (3, 1), (12, 31)] {
                if let Some(date) = chrono::NaiveDate::from_ymd_opt(y as i32, m, d) {
                    let unix = date
                        .and_hms_opt(0, 0, 0)
                        .unwrap()
                        .and_utc()
                        .timestamp_micros();
                    for off in [-1i64, 0, 1, 86_399_999_999] {
                        v.push(unix - super::PG_EPOCH_UNIX_S * 1_000_000 + off);
                    }
                }
            }
        }
        v
    }

    #[test]
    fn the_direct_format_is_chronos() {
        for us in samples() {
            assert_eq!(super::iso_utc(us), super::chrono_iso_utc(us), "{us}");
        }
    }

    #[test]
    fn the_direct_parse_is_chronos() {
        let chrono_parse = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| {
                t.timestamp_micros()
                    .checked_sub(super::PG_EPOCH_UNIX_S * 1_000_000)
            })
        };
        for us in samples() {
            let s = super::iso_utc(us);
            assert_eq!(super::parse_iso_utc(&s), chrono_parse(&s), "{s}");
        }
        for s in [
            "2026-02-29T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-00-10T00:00:00.000000Z",
            "2026-04-31T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T23:60:00.000000Z",
            "2026-01-01T23:59:60.000000Z",
            "2026-01-01T23:59:59.00000aZ",
            "2026-01-01 23:59:59.000000Z",
            "2026-01-01T23:59:59.000000+01:00",
            "2026-01-01T23:59:59Z",
            "",
            "x",
        ] {
            assert_eq!(super::parse_iso_utc(s), chrono_parse(s), "{s}");
        }
    }
}
