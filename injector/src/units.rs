//! Units of the annotation grammar: durations, sizes, probabilities and rates.
//!
//! - **Durations** are written the Go / Kubernetes way: a sequence of decimal numbers, each with
//!   a unit, such as `250ms`, `30s`, `2m`, `1h30m` or `1.5s`. Units are `ns`, `us` (or `µs`),
//!   `ms`, `s`, `m` and `h`. A bare `0` is accepted; negative durations are refused.
//! - **Sizes** are Kubernetes quantities: plain bytes (`1048576`), decimal suffixes `k`, `M`,
//!   `G`, `T`, `P`, `E` (powers of 1000) and binary suffixes `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`
//!   (powers of 1024), optionally with a fraction (`1.5Gi`); or a percentage of the container
//!   memory limit (`50%`), resolved once the limit is known (see [`Size::resolve`]).
//! - **Probabilities** are a fraction `0.25` (from `0` to `1`) or a percentage `25%`
//!   (from `0%` to `100%`).
//! - **Rates** follow `tc`: `500bit`, `100kbit`, `1mbit`, `1gbit`, `1tbit` are bits per second,
//!   `10kbps`, `1mbps` are *bytes* per second, IEC forms (`kibit`, `mibps`, ...) use powers of
//!   1024, a bare number is bits per second. Units are case-insensitive. Rates are stored as bytes
//!   per second.

use std::fmt;
use std::time::Duration;

/// Why a piece of text is not a valid duration, size, probability or rate.
///
/// The messages complete a sentence that starts with the offending text, e.g.
/// `after: "2x" is not a duration (examples: 250ms, 30s, 1h30m)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a Go-style duration.
    #[error("is not a duration (examples: 250ms, 30s, 1h30m)")]
    NotDuration,
    /// A negative duration.
    #[error("is negative; durations must be 0 or more")]
    NegativeDuration,
    /// Not a size.
    #[error("is not a size (examples: 256Mi, 1G, 1048576, 50%)")]
    NotSize,
    /// A percentage size outside (0%, 100%].
    #[error("is out of range: a percentage of the memory limit must be above 0% and at most 100%")]
    PercentOutOfRange,
    /// Not a probability.
    #[error("is not a probability (examples: 0.25, 25%)")]
    NotProbability,
    /// A probability outside 0..=1 / 0%..=100%.
    #[error("is out of range: use 0 to 1 (e.g. 0.25) or 0% to 100% (e.g. 25%)")]
    ProbabilityOutOfRange,
    /// Not a rate.
    #[error("is not a rate (examples: 500bit, 100kbit, 1mbit, 1gbit, 10kbps, 1mbps)")]
    NotRate,
    /// A number that does not fit.
    #[error("is too large")]
    TooLarge,
}

/// A decimal number `digits[.digits]`, kept exact: `int + frac / 10^frac_digits`.
#[derive(Debug, Clone, Copy)]
struct Decimal {
    int: u128,
    frac: u128,
    frac_digits: u32,
}

/// Fractional digits beyond this are ignored (they are below any unit we multiply by).
const MAX_FRAC_DIGITS: u32 = 18;

impl Decimal {
    /// Parses the leading decimal number of `text`, returning it and the rest.
    /// `None` when there is no digit at all or the integer part overflows.
    fn parse_prefix(text: &str) -> Option<Result<(Decimal, &str), UnitError>> {
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut int: u128 = 0;
        let mut digits = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            int = match int
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(bytes[i] - b'0')))
            {
                Some(v) => v,
                None => return Some(Err(UnitError::TooLarge)),
            };
            digits += 1;
            i += 1;
        }
        let mut frac: u128 = 0;
        let mut frac_digits = 0;
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                if frac_digits < MAX_FRAC_DIGITS {
                    frac = frac * 10 + u128::from(bytes[i] - b'0');
                    frac_digits += 1;
                }
                digits += 1;
                i += 1;
            }
        }
        if digits == 0 {
            return None;
        }
        Some(Ok((
            Decimal {
                int,
                frac,
                frac_digits,
            },
            &text[i..],
        )))
    }

    /// Parses the whole of `text` as a decimal number.
    fn parse_all(text: &str) -> Option<Result<Decimal, UnitError>> {
        match Decimal::parse_prefix(text)? {
            Ok((d, "")) => Some(Ok(d)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// `self * unit / divisor`, truncated.
    fn scale(self, unit: u128, divisor: u128) -> Result<u128, UnitError> {
        let whole = self.int.checked_mul(unit).ok_or(UnitError::TooLarge)?;
        let pow = 10u128.pow(self.frac_digits);
        let part = self.frac.checked_mul(unit).ok_or(UnitError::TooLarge)? / pow;
        Ok(whole.checked_add(part).ok_or(UnitError::TooLarge)? / divisor.max(1))
    }

    fn as_f64(self) -> f64 {
        // Precision loss is fine: used only for percentages and probabilities.
        self.int as f64 + self.frac as f64 / 10f64.powi(self.frac_digits as i32)
    }
}

/// Parses a Go / Kubernetes duration (`250ms`, `30s`, `1h30m`, `1.5s`, `0`).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (negative, mut rest): (bool, &str) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest.starts_with(['-', '+']) {
        return Err(UnitError::NotDuration);
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(UnitError::NotDuration);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (number, after) = match Decimal::parse_prefix(rest) {
            Some(r) => r?,
            None => return Err(UnitError::NotDuration),
        };
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let unit: u128 = match &after[..unit_len] {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(UnitError::NotDuration),
        };
        total = total
            .checked_add(number.scale(unit, 1)?)
            .ok_or(UnitError::TooLarge)?;
        rest = &after[unit_len..];
    }
    if negative && total != 0 {
        return Err(UnitError::NegativeDuration);
    }
    let nanos = u64::try_from(total).map_err(|_| UnitError::TooLarge)?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration compactly in the grammar's own syntax (`1h30m`, `250ms`, `1.5s`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    const S: u128 = 1_000_000_000;
    if nanos.is_multiple_of(S) {
        let secs = nanos / S;
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if s > 0 {
            out.push_str(&format!("{s}s"));
        }
        return out;
    }
    for (unit, name) in [(S, "s"), (1_000_000, "ms"), (1_000, "us"), (1, "ns")] {
        if nanos >= unit {
            let whole = nanos / unit;
            let frac = nanos % unit;
            if frac == 0 {
                return format!("{whole}{name}");
            }
            let width = unit.ilog10() as usize;
            let digits = format!("{frac:0width$}");
            return format!("{whole}.{}{name}", digits.trim_end_matches('0'));
        }
    }
    format!("{nanos}ns")
}

/// A memory size: absolute bytes, or a percentage of the container memory limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A percentage (above 0, at most 100) of the container memory limit.
    PercentOfLimit(f64),
}

impl Size {
    /// The size in bytes; a percentage needs the container memory limit (`None` without one).
    pub fn resolve(self, memory_limit_bytes: Option<u64>) -> Option<u64> {
        match self {
            Size::Bytes(b) => Some(b),
            Size::PercentOfLimit(p) => {
                let limit = memory_limit_bytes?;
                // f64 -> u64 `as` saturates; p is within (0, 100].
                Some((limit as f64 * p / 100.0) as u64)
            }
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Size::PercentOfLimit(p) => write!(f, "{p}%"),
            Size::Bytes(b) => {
                for (unit, name) in [(1u64 << 30, "Gi"), (1 << 20, "Mi"), (1 << 10, "Ki")] {
                    if b >= unit && b.is_multiple_of(unit) {
                        return write!(f, "{}{name}", b / unit);
                    }
                }
                write!(f, "{b}")
            }
        }
    }
}

/// Parses a size: `256Mi`, `1G`, `1.5Gi`, `1048576`, or `50%` of the memory limit.
pub fn parse_size(text: &str) -> Result<Size, UnitError> {
    if let Some(p) = text.strip_suffix('%') {
        let d = match Decimal::parse_all(p) {
            Some(d) => d?,
            None => return Err(UnitError::NotSize),
        };
        let pct = d.as_f64();
        if !(pct > 0.0 && pct <= 100.0) {
            return Err(UnitError::PercentOutOfRange);
        }
        return Ok(Size::PercentOfLimit(pct));
    }
    let (number, suffix) = match Decimal::parse_prefix(text) {
        Some(r) => r?,
        None => return Err(UnitError::NotSize),
    };
    let unit: u128 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return Err(UnitError::NotSize),
    };
    let bytes = number.scale(unit, 1)?;
    Ok(Size::Bytes(
        u64::try_from(bytes).map_err(|_| UnitError::TooLarge)?,
    ))
}

/// Parses a probability: `0.25` (0 to 1) or `25%` (0% to 100%); returns a fraction in 0..=1.
pub fn parse_probability(text: &str) -> Result<f64, UnitError> {
    let (digits, scale) = match text.strip_suffix('%') {
        Some(p) => (p, 100.0),
        None => (text, 1.0),
    };
    let d = match Decimal::parse_all(digits) {
        Some(d) => d.map_err(|_| UnitError::ProbabilityOutOfRange)?,
        None => return Err(UnitError::NotProbability),
    };
    let value = d.as_f64();
    if value > scale {
        return Err(UnitError::ProbabilityOutOfRange);
    }
    Ok(value / scale)
}

/// Parses a `tc`-style rate into bytes per second (see the module documentation).
pub fn parse_rate(text: &str) -> Result<u64, UnitError> {
    let (number, suffix) = match Decimal::parse_prefix(text) {
        Some(r) => r?,
        None => return Err(UnitError::NotRate),
    };
    let lower = suffix.to_ascii_lowercase();
    // (multiplier, divisor) turning the number into bytes per second.
    let (mult, div): (u128, u128) = match lower.as_str() {
        "" | "bit" => (1, 8),
        "kbit" => (1_000, 8),
        "mbit" => (1_000_000, 8),
        "gbit" => (1_000_000_000, 8),
        "tbit" => (1_000_000_000_000, 8),
        "kibit" => (1 << 10, 8),
        "mibit" => (1 << 20, 8),
        "gibit" => (1 << 30, 8),
        "tibit" => (1 << 40, 8),
        "bps" => (1, 1),
        "kbps" => (1_000, 1),
        "mbps" => (1_000_000, 1),
        "gbps" => (1_000_000_000, 1),
        "tbps" => (1_000_000_000_000, 1),
        "kibps" => (1 << 10, 1),
        "mibps" => (1 << 20, 1),
        "gibps" => (1 << 30, 1),
        "tibps" => (1 << 40, 1),
        _ => return Err(UnitError::NotRate),
    };
    let bytes = number.scale(mult, div)?;
    u64::try_from(bytes).map_err(|_| UnitError::TooLarge)
}

/// Formats a rate in bytes per second the way `tc` prints it (`1Mbit`, `100Kbit`, `500bit`).
pub fn format_rate(bytes_per_sec: u64) -> String {
    let bits = u128::from(bytes_per_sec) * 8;
    for (unit, name) in [
        (1_000_000_000_000u128, "Tbit"),
        (1_000_000_000, "Gbit"),
        (1_000_000, "Mbit"),
        (1_000, "Kbit"),
    ] {
        if bits >= unit && bits.is_multiple_of(unit) {
            return format!("{}{name}", bits / unit);
        }
    }
    format!("{bits}bit")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_accepted() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("30s"), Ok(ms(30_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1.s"), Ok(ms(1000)));
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7μs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("1h1m1s1ms"), Ok(ms(3_661_001)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+5s"), Ok(ms(5000)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn durations_refused() {
        for bad in [
            "", "2x", "5", "s", "1.5", "ms", "1 s", " 1s", "1s ", "1S", "1sec", "1d", "--1s",
            "1..5s", "1s-", "0x10s", "inf", "NaN", "∞s", "1e3s",
        ] {
            assert_eq!(parse_duration(bad), Err(UnitError::NotDuration), "{bad:?}");
        }
        assert_eq!(parse_duration("-1s"), Err(UnitError::NegativeDuration));
        assert_eq!(parse_duration("-1h30m"), Err(UnitError::NegativeDuration));
        assert_eq!(parse_duration("99999999999h"), Err(UnitError::TooLarge));
        assert_eq!(
            parse_duration("999999999999999999999999999999999999999999s"),
            Err(UnitError::TooLarge)
        );
    }

    #[test]
    fn durations_format_round_trip() {
        for text in [
            "250ms", "30s", "2m", "1h30m", "1.5s", "0s", "1h0m1s", "10ns", "1.25ms",
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{text}");
        }
        assert_eq!(format_duration(ms(5_400_000)), "1h30m");
        assert_eq!(format_duration(ms(1500)), "1.5s");
        assert_eq!(format_duration(ms(250)), "250ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256Mi"), Ok(Size::Bytes(256 << 20)));
        assert_eq!(parse_size("1G"), Ok(Size::Bytes(1_000_000_000)));
        assert_eq!(parse_size("1Gi"), Ok(Size::Bytes(1 << 30)));
        assert_eq!(parse_size("64Mi"), Ok(Size::Bytes(64 << 20)));
        assert_eq!(parse_size("1048576"), Ok(Size::Bytes(1_048_576)));
        assert_eq!(parse_size("1.5Gi"), Ok(Size::Bytes(3 << 29)));
        assert_eq!(parse_size("10k"), Ok(Size::Bytes(10_000)));
        assert_eq!(parse_size("50%"), Ok(Size::PercentOfLimit(50.0)));
        assert_eq!(parse_size("12.5%"), Ok(Size::PercentOfLimit(12.5)));
        for bad in ["", "Mi", "1MB", "1mi", "-1Mi", "1 Mi", "abc", "%", "1e6"] {
            assert_eq!(parse_size(bad), Err(UnitError::NotSize), "{bad:?}");
        }
        assert_eq!(parse_size("0%"), Err(UnitError::PercentOutOfRange));
        assert_eq!(parse_size("101%"), Err(UnitError::PercentOutOfRange));
        assert_eq!(parse_size("20Ei"), Err(UnitError::TooLarge));
        assert_eq!(
            parse_size("99999999999999999999999999999999999999999999"),
            Err(UnitError::TooLarge)
        );
    }

    #[test]
    fn size_resolve_and_display() {
        assert_eq!(Size::Bytes(5).resolve(None), Some(5));
        assert_eq!(Size::PercentOfLimit(50.0).resolve(None), None);
        assert_eq!(
            Size::PercentOfLimit(50.0).resolve(Some(1 << 30)),
            Some(1 << 29)
        );
        assert_eq!(Size::Bytes(256 << 20).to_string(), "256Mi");
        assert_eq!(Size::Bytes(1000).to_string(), "1000");
        assert_eq!(Size::PercentOfLimit(50.0).to_string(), "50%");
    }

    #[test]
    fn probabilities() {
        assert_eq!(parse_probability("0.25"), Ok(0.25));
        assert_eq!(parse_probability("25%"), Ok(0.25));
        assert_eq!(parse_probability("0"), Ok(0.0));
        assert_eq!(parse_probability("1"), Ok(1.0));
        assert_eq!(parse_probability("100%"), Ok(1.0));
        assert_eq!(parse_probability("0%"), Ok(0.0));
        assert_eq!(parse_probability(".5"), Ok(0.5));
        for bad in ["", "%", "abc", "-0.1", "0.5 ", "NaN", "inf", "1e-3", "25 %"] {
            assert_eq!(
                parse_probability(bad),
                Err(UnitError::NotProbability),
                "{bad:?}"
            );
        }
        for bad in [
            "1.01",
            "2",
            "101%",
            "25.5.5",
            "99999999999999999999999999999999999999999",
        ] {
            assert!(parse_probability(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_probability("1.01"),
            Err(UnitError::ProbabilityOutOfRange)
        );
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1mbit"), Ok(125_000));
        assert_eq!(parse_rate("100kbit"), Ok(12_500));
        assert_eq!(parse_rate("1gbit"), Ok(125_000_000));
        assert_eq!(parse_rate("500bit"), Ok(62));
        assert_eq!(parse_rate("1mbps"), Ok(1_000_000));
        assert_eq!(parse_rate("10kbps"), Ok(10_000));
        assert_eq!(parse_rate("8000"), Ok(1000));
        assert_eq!(parse_rate("1Mbit"), Ok(125_000));
        assert_eq!(parse_rate("1.5mbit"), Ok(187_500));
        assert_eq!(parse_rate("1mibit"), Ok(131_072));
        assert_eq!(parse_rate("1kibps"), Ok(1024));
        for bad in ["", "mbit", "1 mbit", "1mb", "fast", "-1mbit"] {
            assert_eq!(parse_rate(bad), Err(UnitError::NotRate), "{bad:?}");
        }
        assert_eq!(
            parse_rate("99999999999999999999999999tbps"),
            Err(UnitError::TooLarge)
        );
        assert_eq!(format_rate(125_000), "1Mbit");
        assert_eq!(format_rate(62), "496bit");
    }
}
