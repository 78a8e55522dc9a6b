//! Durations on the command line, read as coreutils `timeout(1)` reads them.
//!
//! A duration is a non-negative decimal number of seconds (`1`, `0.25`,
//! `1e3`), optionally followed by a unit: `s` seconds, `m` minutes, `h`
//! hours, `d` days. A value that is negative (`-1`, `-0`, `-1e-10000`), not
//! a number (`nan`), infinite (`inf`, `1e400`) or beyond the largest
//! accepted is refused with a message that says which.

use std::time::Duration;

/// What an option accepts beyond the syntax.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The largest value accepted.
    pub max: Duration,
    /// What the largest value is called in the message.
    pub max_name: &'static str,
}

/// `--timeout`: anything a `Duration` holds.
pub const TIMEOUT: Bounds = Bounds {
    max: Duration::MAX,
    max_name: "just under 2^64 seconds (about 5.8e11 years)",
};

/// `--cancel-timeout` and `--drain-timeout`: the library's limit.
pub const GRACE: Bounds = Bounds {
    max: actix_popen::MAX_TIMEOUT,
    max_name: "365 days",
};

/// Parses `text` as a duration within `bounds`.
///
/// # Errors
/// A message saying what is wrong with `text`, for clap to print as a
/// usage error.
pub fn parse(text: &str, bounds: Bounds) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (number, unit) = match trimmed.char_indices().last() {
        Some((at, 's')) => (&trimmed[..at], 1.0),
        Some((at, 'm')) => (&trimmed[..at], 60.0),
        Some((at, 'h')) => (&trimmed[..at], 3600.0),
        Some((at, 'd')) => (&trimmed[..at], 86400.0),
        _ => (trimmed, 1.0),
    };
    // `-0` and `-1e-10000` parse as -0.0: the sign is what is refused.
    if number.starts_with('-') {
        return Err(format!("`{text}` is negative; a duration is at least 0"));
    }
    let seconds: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a number of seconds (with an optional unit s, m, h or d)")
    })?;
    if seconds.is_nan() {
        return Err(format!("`{text}` is not a number"));
    }
    let seconds = seconds * unit;
    if seconds.is_infinite() {
        return Err(format!(
            "`{text}` is infinite; the largest accepted is {}",
            bounds.max_name
        ));
    }
    match Duration::try_from_secs_f64(seconds) {
        // A positive value below a nanosecond is not 0 (no timeout): it is
        // the shortest timeout there is, as timeout(1) takes `1e-10`.
        Ok(Duration::ZERO) if seconds > 0.0 => Ok(Duration::from_nanos(1)),
        Ok(duration) if duration <= bounds.max => Ok(duration),
        _ => Err(format!(
            "`{text}` is too large; the largest accepted is {}",
            bounds.max_name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_timeout_reads() {
        assert_eq!(parse("0", TIMEOUT), Ok(Duration::ZERO));
        assert_eq!(parse("1.5", TIMEOUT), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m", TIMEOUT), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h", TIMEOUT), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1d", TIMEOUT), Ok(Duration::from_secs(86400)));
        assert_eq!(parse("1e3s", TIMEOUT), Ok(Duration::from_secs(1000)));
        assert!(parse("1e19", TIMEOUT).is_ok());
        assert_eq!(parse("1e-10", TIMEOUT), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn refuses_what_timeout_refuses_saying_why() {
        for (text, why) in [
            ("-1", "negative"),
            ("-0", "negative"),
            ("-1e-10000", "negative"),
            ("nan", "not a number"),
            ("inf", "infinite"),
            ("1e400", "infinite"),
            ("1e20", "too large"),
            ("", "not a number"),
            ("5x", "not a number"),
        ] {
            let err = parse(text, TIMEOUT).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
        }
        let err = parse("366d", GRACE).expect_err("over a year");
        assert!(err.contains("365 days"), "{err}");
    }
}
