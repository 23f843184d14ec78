//! Times as the gateway shows them: Unix seconds inside, `YYYY-MM-DD HH:MM` outside.
//!
//! The gateway keeps one time zone, UTC, so that the simulator, the store and the model see
//! the same wall clock. "Today" is the day of the newest reading (the gateway's clock), so a
//! replayed or simulated day is "today" for the questions asked about it.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DD HH:MM`.
pub fn format_ts(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    let s = ts.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", s / 3600, s / 60 % 60)
}

/// Midnight (UTC) of the day holding `ts`.
pub fn start_of_day(ts: i64) -> i64 {
    ts.div_euclid(86_400) * 86_400
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the time {0:?}: use YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] (or with a T), Unix seconds, or today / yesterday / now")]
pub struct TimeError(pub String);

/// Reads a time: `today`, `yesterday` and `now` (relative to `now`), a date
/// (`YYYY-MM-DD`, its midnight), a date and time (`YYYY-MM-DD HH:MM[:SS]`, a `T` or a
/// trailing `Z` accepted), or Unix seconds.
pub fn parse_time(text: &str, now: i64) -> Result<i64, TimeError> {
    let t = text.trim();
    let err = || TimeError(text.to_string());
    match t.to_ascii_lowercase().as_str() {
        "now" => return Ok(now),
        "today" => return Ok(start_of_day(now)),
        "yesterday" => return Ok(start_of_day(now) - 86_400),
        _ => {}
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && t.len() > 8 {
        return t.parse().map_err(|_| err());
    }
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = match t.split_once([' ', 'T']) {
        Some((d, tm)) => (d, Some(tm)),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err());
    };
    let y: i64 = y.parse().map_err(|_| err())?;
    let m: u32 = m.parse().map_err(|_| err())?;
    let d: u32 = d.parse().map_err(|_| err())?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(err());
    }
    let mut secs = 0i64;
    if let Some(time) = time {
        let fields: Vec<&str> = time.split(':').collect();
        if !(2..=3).contains(&fields.len()) {
            return Err(err());
        }
        let limits = [24, 60, 60];
        for (i, f) in fields.iter().enumerate() {
            let v: i64 = f.parse().map_err(|_| err())?;
            if !(0..limits[i]).contains(&v) {
                return Err(err());
            }
            secs += v * [3600, 60, 1][i];
        }
    }
    Ok(days_from_civil(y, m, d) * 86_400 + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dates() {
        for day in [-800_000i64, -1, 0, 1, 11_016, 20_423, 60_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn parses_and_formats() {
        let noon = parse_time("2026-12-01 12:30", 0).unwrap();
        assert_eq!(format_ts(noon), "2026-12-01 12:30");
        assert_eq!(parse_time("2026-12-01T12:30:00Z", 0).unwrap(), noon);
        assert_eq!(parse_time("today", noon).unwrap(), noon - 45_000);
        assert_eq!(
            parse_time("yesterday", noon).unwrap(),
            noon - 45_000 - 86_400
        );
        assert_eq!(parse_time(&noon.to_string(), 0).unwrap(), noon);
        for bad in [
            "",
            "2026-13-01",
            "12:30",
            "2026-12-01 25:00",
            "tomorrow",
            "2026-12",
        ] {
            assert!(parse_time(bad, noon).is_err(), "{bad}");
        }
    }
}
