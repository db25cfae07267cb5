//! Time formatting without a server.

/// PostgreSQL-epoch microseconds as ISO 8601 UTC: `2026-11-25T17:00:00.000000Z`.
pub fn iso_utc(pg_us: i64) -> String {
    let mut o = String::with_capacity(27);
    write_iso_utc(&mut o, pg_us);
    o
}

/// Appends [`iso_utc`] to `o` (no formatting machinery: this runs for every
/// audit event).
pub fn write_iso_utc(o: &mut String, pg_us: i64) {
    const PG_EPOCH_UNIX_S: i64 = 946_684_800;
    let us = pg_us.rem_euclid(1_000_000);
    let secs = pg_us.div_euclid(1_000_000) + PG_EPOCH_UNIX_S;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let mut put = |sep: Option<char>, n: i64, width: u32| {
        if let Some(c) = sep {
            o.push(c);
        }
        for k in (0..width).rev() {
            o.push(char::from(b'0' + (n / 10i64.pow(k) % 10) as u8));
        }
    };
    put(None, y, 4);
    put(Some('-'), m, 2);
    put(Some('-'), d, 2);
    put(Some('T'), sod / 3600, 2);
    put(Some(':'), (sod / 60) % 60, 2);
    put(Some(':'), sod % 60, 2);
    put(Some('.'), us, 6);
    o.push('Z');
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
    }
}
