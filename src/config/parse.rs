//! The parsers of the parameter table: each takes the parameter's name and the value as
//! written, and refuses a value with an error naming both and saying what is accepted.

use std::time::Duration;

pub(crate) use super::duration::{
    parse_duration as duration, parse_optional_duration as optional_duration,
};
use super::error::ConfigError;

/// An [`ConfigError::InvalidValue`] for `param` and `value`.
pub(crate) fn invalid(param: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        param: param.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// A whole number of at least `MIN`.
pub(crate) fn count<const MIN: u32>(param: &str, value: &str) -> Result<u32, ConfigError> {
    let n: u32 = value
        .trim()
        .parse()
        .map_err(|_| invalid(param, value, "expected a whole number"))?;
    if n < MIN {
        return Err(invalid(param, value, format!("must be at least {MIN}")));
    }
    Ok(n)
}

/// A percentage from 1 to 100.
pub(crate) fn percent(param: &str, value: &str) -> Result<u32, ConfigError> {
    let n = count::<1>(param, value)?;
    if n > 100 {
        return Err(invalid(param, value, "expected a percentage from 1 to 100"));
    }
    Ok(n)
}

/// A switch: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`.
pub(crate) fn switch(param: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(param, value, "expected true or false")),
    }
}

/// A duration above zero.
pub(crate) fn positive(param: &str, value: &str) -> Result<Duration, ConfigError> {
    let d = duration(param, value)?;
    if d.is_zero() {
        return Err(invalid(param, value, "must be greater than 0"));
    }
    Ok(d)
}

/// A count where `0` turns the limit off.
pub(crate) fn optional_uses(param: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    let n: u64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(param, value, "expected a whole number (0 turns it off)"))?;
    Ok((n > 0).then_some(n))
}

/// A statement cache's size; `0` is kept, since it disables the cache (not "the default").
pub(crate) fn cache_size(param: &str, value: &str) -> Result<Option<usize>, ConfigError> {
    let n: usize = value.trim().parse().map_err(|_| {
        invalid(
            param,
            value,
            "expected a whole number (0 disables the cache)",
        )
    })?;
    Ok(Some(n))
}

/// A `search_path` (see [`super::schema`]).
pub(crate) fn schema(param: &str, value: &str) -> Result<Option<String>, ConfigError> {
    super::schema::parse_schema(param, value).map(Some)
}

/// What PostgreSQL keeps of an `application_name`: at most 63 printable ASCII characters.
pub(crate) fn application_name(param: &str, value: &str) -> Result<String, ConfigError> {
    if value.len() > 63 || !value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err(invalid(
            param,
            value,
            "expected at most 63 printable ASCII characters",
        ));
    }
    Ok(value.to_owned())
}
