//! Reading the plugin's log for timelines: the RFC 3339 timestamp tracing puts at the start of
//! each line, and `key=value` fields.

/// Unix time in nanoseconds of a line that starts with `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn line_time_ns(line: &str) -> Option<i64> {
    let stamp = line.split_whitespace().next()?;
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms_parts = hms.splitn(3, ':').map(str::parse::<i64>);
    let (hour, minute, second) = (
        hms_parts.next()?.ok()?,
        hms_parts.next()?.ok()?,
        hms_parts.next()?.ok()?,
    );
    let digits: String = frac.chars().take(9).collect();
    let nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000_000 + second * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The value of `key=value` in a log line (up to the next space).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    let rest = &line[start..];
    Some(rest.split(' ').next().unwrap_or(rest).trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracing_timestamps_and_fields() {
        let line = "2026-11-22T20:20:01.123456Z  INFO nri_chaos: signal sent pod=default/web lateness_us=412";
        assert_eq!(line_time_ns(line), Some(1_795_378_801_123_456_000));
        assert_eq!(field(line, "lateness_us"), Some("412"));
        assert_eq!(field(line, "pod"), Some("default/web"));
        assert_eq!(line_time_ns("1970-01-01T00:00:01Z x"), Some(1_000_000_000));
        assert_eq!(line_time_ns("garbage"), None);
    }
}
