//! Durations as Prisma writes them: a bare number is seconds (`5`, `0.5`), and explicit units
//! (`500ms`, `2s`, `1m`, `1h 30m`) are parsed by `humantime`.

use std::time::Duration;

use super::error::ConfigError;

/// The longest duration any setting accepts: 365 days. Longer values are almost certainly a
/// mistake (a unit left off, milliseconds written as seconds), and bounding them keeps every
/// deadline computed from them (`Instant + d`, `d * 2`) far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `value` for parameter `param`; errors name both. Values above [`MAX_DURATION`] are
/// rejected.
pub(crate) fn parse_duration(param: &str, value: &str) -> Result<Duration, ConfigError> {
    let d = parse_unbounded(param, value)?;
    if d > MAX_DURATION {
        return Err(ConfigError::InvalidValue {
            param: param.to_owned(),
            value: value.to_owned(),
            reason: "longer than the maximum of 365 days".into(),
        });
    }
    Ok(d)
}

fn parse_unbounded(param: &str, value: &str) -> Result<Duration, ConfigError> {
    let trimmed = value.trim();
    let invalid = |reason: String| ConfigError::InvalidValue {
        param: param.to_owned(),
        value: value.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(invalid(
            "expected a duration such as `5`, `500ms`, `2s` or `1m`".into(),
        ));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = trimmed.parse().map_err(|_| {
            invalid("expected a number of seconds or a duration such as `500ms`".into())
        })?;
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| invalid(format!("out of range: {e}")));
    }
    humantime::parse_duration(trimmed).map_err(|e| {
        let expected = "expected a number of seconds or a duration such as `500ms`, `2s`, `1m`";
        match e {
            // The only humantime message that adds something: which unit it did not know.
            humantime::DurationError::UnknownUnit { unit, .. } => {
                invalid(format!("unknown unit `{unit}`; {expected}"))
            }
            _ => invalid(expected.to_owned()),
        }
    })
}

/// Like [`parse_duration`], but `0` means "no limit" and yields `None`.
pub(crate) fn parse_optional_duration(
    param: &str,
    value: &str,
) -> Result<Option<Duration>, ConfigError> {
    let d = parse_duration(param, value)?;
    Ok((!d.is_zero()).then_some(d))
}

/// Serializes a `Duration` as `humantime` text (`"10s"`, `"1m 30s"`).
pub(crate) mod human {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

/// Serializes an `Option<Duration>` as `humantime` text or `null` (no limit).
pub(crate) mod human_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
#[path = "tests/duration.rs"]
mod tests;
