//! Times as PostgreSQL keeps them (microseconds since 2000-01-01 UTC), in
//! the text forms the audit log uses, through chrono.

use chrono::{DateTime, SecondsFormat};

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_UNIX_S: i64 = 946_684_800;

/// PostgreSQL-epoch microseconds as ISO 8601 UTC with microseconds:
/// `2026-11-25T17:00:00.000000Z`. Out-of-range times (beyond chrono's
/// years ±262,143) give the epoch, never a panic.
pub fn iso_utc(pg_us: i64) -> String {
    let unix_us = pg_us.saturating_add(PG_EPOCH_UNIX_S * 1_000_000);
    DateTime::from_timestamp_micros(unix_us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
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
}
