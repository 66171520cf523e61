//! Wall-clock times as log lines write them, at a fixed offset from UTC (seconds east): no
//! time zone database needed.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The last second formatted on this thread: consecutive lines mostly share it.
    static LAST_TIME: std::cell::RefCell<(i64, i64, String)> =
        const { std::cell::RefCell::new((i64::MIN, 0, String::new())) };
}

pub fn with_formatted_time(time: SystemTime, utc_offset: i64, use_it: impl FnOnce(&str)) {
    let secs = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    LAST_TIME.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs || last.1 != utc_offset {
            *last = (secs, utc_offset, format_time(time, utc_offset));
        }
        use_it(&last.2);
    });
}

/// A wall-clock time at a fixed offset from UTC, split into its calendar fields.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    /// Seconds since midnight.
    second_of_day: i64,
    sign: char,
    offset_hours: i64,
    offset_minutes: i64,
}

impl Civil {
    fn at(time: SystemTime, utc_offset: i64) -> Self {
        let secs = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64 + utc_offset;
        let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Civil date from days since the epoch (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let offset = utc_offset.abs() / 60;
        Self {
            year,
            month,
            day,
            second_of_day,
            sign: if utc_offset < 0 { '-' } else { '+' },
            offset_hours: offset / 60,
            offset_minutes: offset % 60,
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS +HHMM` at a fixed offset from UTC (seconds east): no time zone
/// database needed.
pub fn format_time(time: SystemTime, utc_offset: i64) -> String {
    let c = Civil::at(time, utc_offset);
    let mut out = String::with_capacity(25);
    write_date_time(&mut out, &c, ' ');
    let _ = write!(out, " {}{:02}{:02}", c.sign, c.offset_hours, c.offset_minutes);
    out
}

/// ISO 8601 with milliseconds and the offset, `YYYY-MM-DDTHH:MM:SS.mmm+HH:MM`: what Python's
/// `datetime.isoformat(timespec='milliseconds')` writes for an aware time.
pub fn format_iso_time(time: SystemTime, utc_offset: i64) -> String {
    let c = Civil::at(time, utc_offset);
    let millis = time.duration_since(UNIX_EPOCH).unwrap_or_default().subsec_millis();
    let mut out = String::with_capacity(29);
    write_date_time(&mut out, &c, 'T');
    let _ = write!(
        out,
        ".{millis:03}{}{:02}:{:02}",
        c.sign, c.offset_hours, c.offset_minutes
    );
    out
}

/// `YYYY-MM-DD<sep>HH:MM:SS`.
fn write_date_time(out: &mut String, c: &Civil, sep: char) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
        c.year,
        c.month,
        c.day,
        c.second_of_day / 3600,
        c.second_of_day % 3600 / 60,
        c.second_of_day % 60,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(format_time(UNIX_EPOCH, 0), "1970-01-01 00:00:00 +0000");
        let leap_day = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(format_time(leap_day, 0), "2024-02-29 12:34:56 +0000");
        assert_eq!(format_time(leap_day, 5 * 3600 + 30 * 60), "2024-02-29 18:04:56 +0530");
        assert_eq!(format_time(leap_day, -13 * 3600), "2024-02-28 23:34:56 -1300");
    }

    #[test]
    fn iso_dates() {
        let leap_day = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(format_iso_time(leap_day, 0), "2024-02-29T12:34:56.789+00:00");
        assert_eq!(
            format_iso_time(leap_day, 5 * 3600 + 30 * 60),
            "2024-02-29T18:04:56.789+05:30"
        );
        assert_eq!(format_iso_time(leap_day, -13 * 3600), "2024-02-28T23:34:56.789-13:00");
        assert_eq!(format_iso_time(UNIX_EPOCH, 0), "1970-01-01T00:00:00.000+00:00");
    }

    #[test]
    fn cached_second() {
        let at = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        let mut seen = String::new();
        with_formatted_time(at, 0, |time| seen.push_str(time));
        with_formatted_time(at, 3600, |time| seen.push_str(time));
        assert_eq!(seen, "2024-02-29 12:34:56 +00002024-02-29 13:34:56 +0100");
    }
}
