//! The application's own keys in the layered settings, and their validated reading.

use std::collections::HashMap;
use std::time::Duration;

use super::super::duration::{parse_duration, parse_optional_duration};
use super::super::error::ConfigError;
use super::super::parse;

/// Keys an application adds to the layered settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppKeys<'a> {
    /// File keys; in the environment `DBSERVICE_<KEY>`.
    pub keys: &'a [&'a str],
    /// Bare environment names for some of them, e.g. `("HOST", "host")`.
    pub bare: &'a [(&'a str, &'a str)],
}

/// The application's settings as written, with parsers that name the key in their errors.
#[derive(Debug, Clone, Default)]
pub struct AppValues(pub(super) HashMap<String, String>);

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        param: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

impl AppValues {
    /// The value of `key` as written, trimmed; `None` when unset or empty.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A duration (bare numbers are seconds); `default` when unset.
    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.text(key)
            .map_or(Ok(default), |v| parse_duration(key, v))
    }

    /// A duration above zero; `default` when unset.
    pub fn positive_duration(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        self.text(key)
            .map_or(Ok(default), |v| parse::positive(key, v))
    }

    /// A duration where `0` means "none"; `default` when unset.
    pub fn optional_duration(
        &self,
        key: &str,
        default: Option<Duration>,
    ) -> Result<Option<Duration>, ConfigError> {
        self.text(key)
            .map_or(Ok(default), |v| parse_optional_duration(key, v))
    }

    /// A switch: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`; `default` when unset.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.text(key) {
            None => Ok(default),
            Some(v) => parse::switch(key, v),
        }
    }

    /// A whole number of at least `min`; `default` when unset.
    pub fn number<T>(&self, key: &str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let Some(v) = self.text(key) else {
            return Ok(default);
        };
        match v.parse::<T>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(invalid(
                key,
                v,
                format!("expected a whole number of at least {min}"),
            )),
        }
    }

    /// A TCP port (0 to 65535); `None` when unset.
    pub fn port(&self, key: &str) -> Result<Option<u16>, ConfigError> {
        self.text(key)
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| invalid(key, p, "expected a port number from 0 to 65535"))
            })
            .transpose()
    }
}
