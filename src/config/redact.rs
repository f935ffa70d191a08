//! URLs that can be shown anywhere.
//!
//! The only way this crate formats a database URL is through [`RedactedUrl`], whose `Display`
//! and `Debug` replace the password (in the userinfo and in a `password=` query parameter) with
//! `***`. [`scrub`] removes the password from text we did not write, such as driver errors.

use std::fmt;

use url::{Position, Url};

use super::hosts::HostSpec;

const MASK: &str = "***";

/// A database URL with its password masked; safe for logs, errors and HTTP bodies.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// Masks the password of `url`.
    pub fn new(url: &Url) -> Self {
        Self(masked(url).to_string())
    }

    /// Masks the password of `url` and shows every host of `hosts` in its authority:
    /// `postgres://app:***@db1:5432,db2:5432/app`. With one host or none, the same as
    /// [`new`](Self::new), so a single-host URL shows as written.
    pub fn with_hosts(url: &Url, hosts: &[HostSpec]) -> Self {
        if hosts.len() < 2 {
            return Self::new(url);
        }
        let shown = masked(url);
        let list: Vec<String> = hosts.iter().map(HostSpec::url_authority).collect();
        Self(format!(
            "{}{}{}",
            &shown[..Position::BeforeHost],
            list.join(","),
            &shown[Position::AfterPort..]
        ))
    }

    /// The redacted text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `url` with its password (userinfo and query) replaced by the mask.
fn masked(url: &Url) -> Url {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // `set_password` fails only for URLs that cannot have credentials (`cannot-be-a-base`),
        // which also cannot carry a password to hide.
        let _ = shown.set_password(Some(MASK));
    }
    if shown.query_pairs().any(|(k, _)| is_secret_key(&k)) {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    MASK.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({})", self.0)
    }
}

impl serde::Serialize for RedactedUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

fn is_secret_key(key: &str) -> bool {
    matches!(key, "password" | "sslpassword" | "ssl-password")
}

/// The secrets of `url` in every spelling a message might contain them: raw, percent-decoded,
/// and the full URL text, both as parsed and as written (`raw`, which for a PostgreSQL host
/// list differs from the driver's single-host URL).
pub(crate) fn secrets_of(url: &Url, raw: &str, env_password: Option<&str>) -> Vec<String> {
    let mut secrets = Vec::new();
    // The driver also takes the password from the environment (`PGPASSWORD`) when the URL
    // has none; it is as secret as one in the URL.
    if let Some(pw) = env_password.filter(|p| !p.is_empty()) {
        secrets.push(pw.to_owned());
    }
    if let Some(pw) = url.password().filter(|p| !p.is_empty()) {
        secrets.push(url.as_str().to_owned());
        secrets.push(pw.to_owned());
        if let Ok(decoded) = percent_encoding::percent_decode_str(pw).decode_utf8() {
            secrets.push(decoded.into_owned());
        }
    }
    for (k, v) in url.query_pairs() {
        if is_secret_key(&k) && !v.is_empty() {
            secrets.push(url.as_str().to_owned());
            secrets.push(v.into_owned());
        }
    }
    if secrets.iter().any(|s| s == url.as_str()) && !raw.trim().is_empty() {
        secrets.push(raw.trim().to_owned());
    }
    // Longest first, so the full URL is replaced before the password inside it.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// Replaces every occurrence of each secret in `text` with `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
#[path = "tests/redact.rs"]
mod tests;
