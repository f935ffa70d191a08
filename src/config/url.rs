//! Splitting `DATABASE_URL` into the driver's URL and our pool parameters.
//!
//! sqlx's three drivers treat unknown query keys three ways (PostgreSQL logs them with their
//! values, MySQL ignores them, SQLite fails), so every key is classified here, in one place:
//! our keys are taken out, the driver's own keys pass through untouched, and anything else is
//! an error that names the key (with a suggestion when it looks like a typo of one of ours).

use url::Url;

use super::backend::Backend;
use super::error::ConfigError;
use super::host_list::pre_split;
use super::hosts::HostSpec;
use super::params::{PARAMS, POOL_KEYS};
use super::redact::RedactedUrl;

/// `DATABASE_URL` taken apart.
#[derive(Clone)]
pub(crate) struct SplitUrl {
    pub backend: Backend,
    /// The URL for the driver: our keys removed, driver keys untouched; PostgreSQL: only the
    /// first host in the authority, and no `host` or `port` in the query.
    pub driver_url: Url,
    /// Our parameters in the order written.
    pub params: Vec<(String, String)>,
    /// PostgreSQL: every host the URL names, in order (`driver_url` carries the first); empty
    /// when it names none (the driver's default socket) and for the other backends.
    pub hosts: Vec<HostSpec>,
}

/// Parses `raw` and separates our parameters from the driver's.
pub(crate) fn split(raw: &str) -> Result<SplitUrl, ConfigError> {
    let raw = raw.trim();
    // `Url::parse` takes one host: a PostgreSQL host list is taken out first.
    let host_list = pre_split(raw)?;
    let single = host_list
        .as_ref()
        .map_or(raw, |l| l.single_host_url.as_str());
    let mut url = Url::parse(single).map_err(|e| ConfigError::InvalidUrl {
        reason: e.to_string(),
    })?;
    let backend = match url.scheme() {
        "postgres" | "postgresql" => Backend::Postgres,
        "mysql" | "mariadb" => Backend::MySql,
        "sqlite" => Backend::Sqlite,
        other => {
            return Err(ConfigError::UnsupportedScheme {
                scheme: other.to_owned(),
            });
        }
    };
    if !backend.is_compiled() {
        return Err(ConfigError::BackendNotCompiled {
            scheme: url.scheme().to_owned(),
            feature: backend.feature(),
        });
    }
    if url.scheme() == "mariadb" {
        // sqlx's MySQL driver speaks to MariaDB too; give it the scheme it documents.
        let _ = url.set_scheme("mysql");
    }

    let mut params = Vec::new();
    let mut driver_pairs = Vec::new();
    for (key, value) in url.query_pairs() {
        let key = key.into_owned();
        let value = value.into_owned();
        if let Some(list) = &host_list {
            // In `hosts` now (and the first host in the authority); sqlx would take a list
            // here as one host named `db1,db2`. A port with no host is the default host's.
            let keep = key == "port" && list.keep_query_port;
            if (key == "host" || key == "port") && !keep {
                continue;
            }
        }
        // Our keys, and the other spellings the table accepts for some of them in the URL.
        let ours = PARAMS
            .iter()
            .find(|p| p.key == key || p.url_alias == Some(key.as_str()))
            .map(|p| p.key.to_owned());
        if let Some(name) = ours {
            params.push((name, value));
        } else if backend.driver_keys().contains(&key.as_str()) {
            driver_pairs.push((key, value));
        } else {
            return Err(unknown_parameter(&key, backend));
        }
    }

    if driver_pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(driver_pairs);
    }
    Ok(SplitUrl {
        backend,
        driver_url: url,
        params,
        hosts: host_list.map(|l| l.hosts).unwrap_or_default(),
    })
}

impl std::fmt::Debug for SplitUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitUrl")
            .field("backend", &self.backend)
            .field("driver_url", &self.redacted())
            .field("params", &self.params)
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl SplitUrl {
    /// The driver URL with every host, safe to show.
    pub fn redacted(&self) -> RedactedUrl {
        RedactedUrl::with_hosts(&self.driver_url, &self.hosts)
    }
}

fn unknown_parameter(key: &str, backend: Backend) -> ConfigError {
    let closest = POOL_KEYS
        .iter()
        .chain(backend.driver_keys())
        .map(|known| (strsim::damerau_levenshtein(key, known), *known))
        .min_by_key(|(distance, _)| *distance);
    let hint = match closest {
        Some((distance, known)) if distance <= 3 => format!(" (did you mean `{known}`?)"),
        _ => format!(
            "; pool parameters are {}; {} parameters are {}",
            POOL_KEYS.join(", "),
            backend.name(),
            backend.driver_keys().join(", ")
        ),
    };
    ConfigError::UnknownParameter {
        param: key.to_owned(),
        hint,
    }
}

#[cfg(test)]
#[path = "tests/url.rs"]
mod tests;
