//! Times for people: relative when recent ("5 min ago"), else the local date and time
//! with the zone ("2026-11-25 17:30 CET"). The zone is the system's (`TZ`, else
//! `/etc/localtime`), UTC when it cannot be found.

use std::sync::OnceLock;

use jiff::{tz::TimeZone, Timestamp};

/// The zone times are shown in, found once.
fn local_zone() -> &'static TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| TimeZone::try_system().unwrap_or(TimeZone::UTC))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When `ms` (since the epoch) was, for people: relative within a day, else local time.
pub(crate) fn ago(ms: u64) -> String {
    ago_at(ms, now_ms(), local_zone())
}

/// `ms` as local date and time with the zone, never relative (for times to come).
pub(crate) fn local(ms: u64) -> String {
    local_in(ms, local_zone())
}

pub(crate) fn ago_at(ms: u64, now: u64, zone: &TimeZone) -> String {
    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    // A little in the future (clocks differ) counts as now.
    if ms > now + MINUTE {
        return local_in(ms, zone);
    }
    match now.saturating_sub(ms) {
        d if d < MINUTE => "just now".to_owned(),
        d if d < HOUR => format!("{} min ago", d / MINUTE),
        d if d < 24 * HOUR => format!("{} h ago", d / HOUR),
        _ => local_in(ms, zone),
    }
}

pub(crate) fn local_in(ms: u64, zone: &TimeZone) -> String {
    match i64::try_from(ms).ok().and_then(|ms| Timestamp::from_millisecond(ms).ok()) {
        Some(t) => t.to_zoned_datetime(zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string(),
        None => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_then_local_with_the_zone() {
        let utc = TimeZone::UTC;
        let now = 1_700_000_000_000;
        assert_eq!(ago_at(now - 5_000, now, &utc), "just now");
        assert_eq!(ago_at(now + 30_000, now, &utc), "just now");
        assert_eq!(ago_at(now - 5 * 60_000, now, &utc), "5 min ago");
        assert_eq!(ago_at(now - 3 * 3_600_000, now, &utc), "3 h ago");
        assert_eq!(ago_at(now - 2 * 86_400_000, now, &utc), "2023-11-12 22:13 UTC");
        assert_eq!(local_in(951_782_400_000, &utc), "2000-02-29 00:00 UTC");
        // Central European time, winter and summer.
        let cet = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap_or(TimeZone::UTC);
        assert_eq!(local_in(1_700_000_000_000, &cet), "2023-11-14 23:13 CET");
        assert_eq!(local_in(1_690_000_000_000, &cet), "2023-07-22 06:26 CEST");
        assert_eq!(ago_at(now + 86_400_000, now, &utc), "2023-11-15 22:13 UTC");
    }
}
