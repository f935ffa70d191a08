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
    /// PostgreSQL: the `passfile` query parameter (libpq's), taken out of `driver_url`: sqlx
    /// does not know it, and reads passfiles itself only from the environment.
    pub passfile: Option<String>,
}

/// libpq's query parameter naming a `.pgpass`-format file (PostgreSQL only).
pub(crate) const PASSFILE: &str = "passfile";

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
    let mut passfile = None;
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
        } else if backend == Backend::Postgres && key == PASSFILE {
            if value.trim().is_empty() {
                return Err(ConfigError::InvalidValue {
                    param: PASSFILE.into(),
                    value,
                    reason: "must name a .pgpass-format file".into(),
                });
            }
            passfile = Some(value);
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
        passfile,
    })
}

impl std::fmt::Debug for SplitUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitUrl")
            .field("backend", &self.backend)
            .field("driver_url", &self.redacted())
            .field("params", &self.params)
            .field("hosts", &self.hosts)
            .field("passfile", &self.passfile)
            .finish()
    }
}

impl SplitUrl {
    /// The driver URL with every host, safe to show.
    pub fn redacted(&self) -> RedactedUrl {
        RedactedUrl::with_hosts(&self.driver_url, &self.hosts)
    }

    /// Whether the URL carries its own password (in the user info, or PostgreSQL's `password`
    /// query parameter). An empty one counts as none, as in libpq: the other sources apply.
    pub fn has_password(&self) -> bool {
        let in_userinfo = self.driver_url.password().is_some_and(|p| !p.is_empty());
        let in_query = self.backend == Backend::Postgres
            && self
                .driver_url
                .query_pairs()
                .any(|(k, v)| k == "password" && !v.is_empty());
        in_userinfo || in_query
    }
}

fn unknown_parameter(key: &str, backend: Backend) -> ConfigError {
    let ours: &[&str] = match backend {
        Backend::Postgres => &[PASSFILE],
        _ => &[],
    };
    let closest = POOL_KEYS
        .iter()
        .chain(backend.driver_keys())
        .chain(ours)
        .map(|known| (strsim::damerau_levenshtein(key, known), *known))
        .min_by_key(|(distance, _)| *distance);
    let hint = match closest {
        Some((distance, known)) if distance <= 3 => format!(" (did you mean `{known}`?)"),
        _ => format!(
            "; pool parameters are {}; {} parameters are {}",
            POOL_KEYS.join(", "),
            backend.name(),
            backend
                .driver_keys()
                .iter()
                .chain(ours)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
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
