//! The layers merged: defaults < profile < config file < `.env` < environment, each key's
//! provenance, and the split into the library's, the pool's, the application's and unknown
//! keys.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::super::error::ConfigError;
use super::super::params::POOL_KEYS;
use super::super::profile::{Profile, Source, Sources};
use super::super::service_links::is_service_link;
use super::super::shutdown::ShutdownSettings;
use super::super::unknown::{self, Unknown};
use super::named::{PASSWORD_FILE_PREFIX, named_pools};
use super::scalar::Scalar;
use super::{AppKeys, AppValues, BARE, LIBRARY_KEYS, LogFormat, Settings};
use crate::config::replica::{
    DEFAULT_REPLICA_CHECK_INTERVAL, DEFAULT_REPLICA_MAX_LAG, DEFAULT_REPLICA_WAIT,
};

impl Settings {
    /// The layers merged; `from_dotenv`: the variables of `env` that came from `.env`.
    pub(super) fn load(
        env: &HashMap<String, String>,
        from_dotenv: &HashSet<String>,
        dir: &Path,
        app: AppKeys<'_>,
    ) -> Result<(Self, AppValues), ConfigError> {
        // Service links are dropped before any layer reads the environment: under our prefix
        // they would be unknown settings, or (`DBSERVICE_PORT=tcp://...`) a bad port.
        let (links, kept): (HashMap<_, _>, HashMap<_, _>) = env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, v)| k.starts_with("DBSERVICE_") && is_service_link(k, v));
        let env = &kept;
        let mut ignored: Vec<String> = links.into_keys().collect();
        ignored.sort();
        let source_err = |e: config::ConfigError| ConfigError::Source(e.to_string());
        let file = match env.get("DBSERVICE_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => config::File::from(PathBuf::from(path)).required(true),
            None => config::File::from(dir.join("dbservice.toml")).required(false),
        };
        let file_label = env
            .get("DBSERVICE_CONFIG")
            .filter(|p| !p.is_empty())
            .cloned()
            .unwrap_or_else(|| "dbservice.toml".into());
        // The file alone, to tell its keys from the environment's.
        let in_file: HashMap<String, Scalar> = config::Config::builder()
            .add_source(file.clone())
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(source_err)?;
        let mut builder = config::Config::builder().add_source(file);
        builder = builder.add_source(
            config::Environment::with_prefix("DBSERVICE")
                .prefix_separator("_")
                .ignore_empty(true)
                .source(Some(env.clone().into_iter().collect())),
        );
        for (var, key) in BARE.iter().chain(app.bare) {
            if let Some(v) = env.get(*var).filter(|v| !v.is_empty()) {
                builder = builder.set_override(*key, v.clone()).map_err(source_err)?;
            }
        }
        let mut raw: HashMap<String, Scalar> = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(source_err)?;
        // The profile: DBSERVICE_PROFILE, else APP_ENV, else the file's `profile`.
        let named = |var: &str| env.get(var).filter(|v| !v.trim().is_empty());
        // A value naming none of our profiles is an error either way: silently running without
        // the profile an operator meant (production's JSON logs, its required DATABASE_URL) is
        // worse than not starting. APP_ENV is shared with the rest of a deployment, which may
        // use values of its own (`staging`); DBSERVICE_PROFILE wins over it for that case.
        let profile = match (named("DBSERVICE_PROFILE"), named("APP_ENV")) {
            (Some(v), _) => Some(Profile::parse("DBSERVICE_PROFILE", v)?),
            (None, Some(v)) => Some(Profile::parse("APP_ENV", v).map_err(|e| match e {
                ConfigError::InvalidValue {
                    param,
                    value,
                    reason,
                } => ConfigError::InvalidValue {
                    param,
                    value,
                    reason: format!("{reason}; or set DBSERVICE_PROFILE, which wins over APP_ENV"),
                },
                other => other,
            })?),
            (None, None) => match raw.get("profile") {
                Some(v) => Some(Profile::parse("profile", &v.to_string())?),
                None => None,
            },
        };
        // Where each key came from; the profile fills what nothing else set.
        let mut sources = Sources::new();
        let keys: Vec<&str> = LIBRARY_KEYS
            .iter()
            .chain(POOL_KEYS)
            .chain(app.keys)
            .copied()
            .collect();
        for key in keys {
            // A bare name (DATABASE_URL) and its prefixed form (DBSERVICE_DATABASE_URL) both
            // count as the environment.
            let prefixed = format!("DBSERVICE_{}", key.to_ascii_uppercase());
            let bare = BARE
                .iter()
                .chain(app.bare)
                .find(|(_, k)| *k == key)
                .map(|(var, _)| (*var).to_owned());
            let set_as = bare
                .into_iter()
                .chain([prefixed])
                .find(|var| env.get(var).is_some_and(|v| !v.is_empty()));
            let source = if let Some(var) = set_as {
                if from_dotenv.contains(&var) {
                    Source::DotEnv
                } else {
                    Source::Environment
                }
            } else if in_file.contains_key(key) {
                Source::File(file_label.clone())
            } else if let Some(p) = profile
                && let Some((_, value)) = p.defaults().iter().find(|(k, _)| *k == key)
            {
                raw.insert(key.to_owned(), Scalar::Text((*value).to_owned()));
                Source::Profile(p)
            } else {
                Source::Default
            };
            sources.insert(key.to_owned(), source);
        }
        if profile.is_some() && named("DBSERVICE_PROFILE").is_none() && named("APP_ENV").is_some() {
            let source = if from_dotenv.contains("APP_ENV") {
                Source::DotEnv
            } else {
                Source::Environment
            };
            sources.insert("profile".into(), source);
        }
        let (mut settings, values, strangers) = Self::from_raw(raw, app, &file_label)?;
        let known: Vec<&str> = LIBRARY_KEYS
            .iter()
            .chain(app.keys)
            .chain(POOL_KEYS)
            .copied()
            .collect();
        let messages = strangers
            .iter()
            .map(|key| {
                let var = format!("DBSERVICE_{}", key.to_ascii_uppercase());
                let variable =
                    (env.contains_key(&var) || !in_file.contains_key(key)).then_some(var);
                unknown::describe(&Unknown { key, variable }, &known, &file_label)
            })
            .collect();
        settings.warnings = unknown::judge(messages, profile)?;
        settings.ignored = ignored;
        settings.profile = profile;
        settings.sources = sources;
        for (k, v) in env {
            let Some(name) = k.strip_prefix("DATABASE_URL_") else {
                continue;
            };
            if name != "DIRECT" && !name.is_empty() && !v.is_empty() {
                settings.set_named_pool(name, v.clone());
            }
        }
        // After every URL is known; sorted, so the first error is the same at every start.
        // `DATABASE_PASSWORD_FILE` itself is the primary's (a bare library key).
        let mut files: Vec<(&String, &String)> = env
            .iter()
            .filter(|(k, v)| {
                k.strip_prefix(PASSWORD_FILE_PREFIX)
                    .is_some_and(|name| !name.is_empty())
                    && !v.is_empty()
            })
            .collect();
        files.sort();
        for (var, path) in files {
            let source = if from_dotenv.contains(var) {
                Source::DotEnv
            } else {
                Source::Environment
            };
            settings.set_named_password_file(var, path, source)?;
        }
        Ok((settings, values))
    }

    /// The merged layers split into ours, the application's and the unknown keys (sorted).
    fn from_raw(
        raw: HashMap<String, Scalar>,
        app: AppKeys<'_>,
        file_label: &str,
    ) -> Result<(Self, AppValues, Vec<String>), ConfigError> {
        let mut strangers = Vec::new();
        let mut ours = AppValues::default();
        let mut theirs = AppValues::default();
        let mut pool: Vec<(String, String)> = Vec::new();
        let mut named = Vec::new();
        for (key, value) in raw {
            if key == "config" {
                continue;
            }
            if key == "pools" {
                named = named_pools(value, file_label)?;
            } else if let Scalar::Table(_) = value {
                return Err(ConfigError::Source(format!(
                    "`{key}` is a table; only `pools` holds tables (`[pools.<name>]`)"
                )));
            } else if LIBRARY_KEYS.contains(&key.as_str()) {
                ours.0.insert(key, value.to_string());
            } else if POOL_KEYS.contains(&key.as_str()) {
                pool.push((key, value.to_string()));
            } else if app.keys.contains(&key.as_str()) {
                theirs.0.insert(key, value.to_string());
            } else {
                strangers.push(key);
            }
        }
        strangers.sort();
        pool.sort();
        let defaults = ShutdownSettings::default();
        let log_format = match ours.text("log_format") {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::InvalidValue {
                    param: "log_format".into(),
                    value: other.into(),
                    reason: "expected `pretty` or `json`".into(),
                });
            }
        };
        let settings = Self {
            database_url: ours.text("database_url").map(str::to_owned),
            database_url_direct: ours.text("database_url_direct").map(str::to_owned),
            password_file: ours.0.get("database_password_file").map(PathBuf::from),
            replica_urls: ours.text("database_replica_urls").map(str::to_owned),
            replica_bounds: (
                ours.duration("replica_wait", DEFAULT_REPLICA_WAIT)?,
                ours.positive_duration("replica_max_lag", DEFAULT_REPLICA_MAX_LAG)?,
                ours.positive_duration("replica_check_interval", DEFAULT_REPLICA_CHECK_INTERVAL)?,
            ),
            named,
            pool,
            log_format,
            profile: None,
            sources: Sources::new(),
            ignored: Vec::new(),
            warnings: Vec::new(),
            shutdown: ShutdownSettings {
                grace: ours.duration("shutdown_grace", defaults.grace)?,
                drain_timeout: ours.duration("drain_timeout", defaults.drain_timeout)?,
                pool_close_timeout: ours
                    .duration("pool_close_timeout", defaults.pool_close_timeout)?,
            },
        };
        Ok((settings, theirs, strangers))
    }
}
