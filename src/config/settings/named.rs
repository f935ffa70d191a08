//! Named pools: `[pools.<name>]` in the config file, `DATABASE_URL_<NAME>` and
//! `DATABASE_PASSWORD_FILE_<NAME>`.

use super::super::DbConfig;
use super::super::error::ConfigError;
use super::super::params::POOL_KEYS;
use super::super::parse;
use super::super::profile::Source;
use super::Settings;
use super::scalar::Scalar;

/// The environment's prefix of a named pool's password file.
pub(super) const PASSWORD_FILE_PREFIX: &str = "DATABASE_PASSWORD_FILE_";

/// One named pool's settings: `[pools.<name>]` in the config file (`url`, `required`,
/// `password_file`, and any pool parameter), or `DATABASE_URL_<NAME>` and
/// `DATABASE_PASSWORD_FILE_<NAME>` in the environment (each replaces the file's `url` or
/// `password_file` for the same name). Its own URL query wins over `params`, as for the
/// primary.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamedPool {
    /// The pool's name, lower case.
    pub name: String,
    /// Its database URL.
    pub url: String,
    /// Pool parameters from the file's table.
    pub params: Vec<(String, String)>,
    /// Whether readiness waits for it and fails while it fails. Default: false.
    pub required: bool,
    /// A file holding its password, re-read when it changes (see
    /// [`DbConfig::with_password_file`]).
    pub password_file: Option<String>,
    /// The setting that named `password_file` and where it came from, for messages and
    /// provenance; `None`: set in code.
    pub(crate) password_file_from: Option<(String, Source)>,
}

impl std::fmt::Debug for NamedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedPool")
            .field("name", &self.name)
            .field("url", &"<set, not shown>")
            .field("params", &self.params)
            .field("required", &self.required)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl NamedPool {
    /// The validated configuration: the URL on top of the table's pool parameters. Errors
    /// are the parameter's; [`Pools`](crate::Pools) adds the pool's name.
    pub fn db_config(&self) -> Result<DbConfig, ConfigError> {
        let config = DbConfig::from_parts(&self.url, &self.params)?;
        let Some(path) = &self.password_file else {
            return Ok(config);
        };
        let (setting, source) = self
            .password_file_from
            .clone()
            .unwrap_or_else(|| (self.file_setting(), Source::Code));
        let mut config = config.with_password_file_named(&setting, path)?;
        config.note_password_file_source(source);
        Ok(config)
    }

    /// `[pools.<name>] password_file`.
    fn file_setting(&self) -> String {
        format!("[pools.{}] password_file", self.name)
    }
}

impl Settings {
    /// Applies `DATABASE_PASSWORD_FILE_<NAME>` (`var`, `path`) to the pool of that name, which
    /// `DATABASE_URL_<NAME>` or the file must configure: a password without a URL is a mistake
    /// (a name misspelt in one of them), reported rather than ignored.
    pub(super) fn set_named_password_file(
        &mut self,
        var: &str,
        path: &str,
        source: Source,
    ) -> Result<(), ConfigError> {
        let raw = var.strip_prefix(PASSWORD_FILE_PREFIX).unwrap_or(var);
        let name = raw.to_ascii_lowercase();
        let Some(pool) = self.named.iter_mut().find(|p| p.name == name) else {
            let direct = if name == "direct" {
                "; DATABASE_URL_DIRECT uses DATABASE_PASSWORD_FILE"
            } else {
                ""
            };
            return Err(ConfigError::InvalidValue {
                param: var.into(),
                value: path.into(),
                reason: format!(
                    "no pool named `{name}` is configured: set DATABASE_URL_{raw} or `url` in \
                     [pools.{name}]{direct}"
                ),
            });
        };
        pool.password_file = Some(path.to_owned());
        pool.password_file_from = Some((var.to_owned(), source));
        Ok(())
    }
}

/// `[pools.<name>]` tables: `url` (required), `required`, `password_file`, and pool
/// parameters; `file`: the config file's label, for provenance.
pub(super) fn named_pools(value: Scalar, file: &str) -> Result<Vec<NamedPool>, ConfigError> {
    let Scalar::Table(tables) = value else {
        return Err(ConfigError::Source(
            "`pools` must be a table of named pools (`[pools.<name>]` with `url = ...`)".into(),
        ));
    };
    let mut named = Vec::new();
    for (name, table) in tables {
        let name = name.to_ascii_lowercase();
        let in_pool = |reason: String| ConfigError::Source(format!("[pools.{name}]: {reason}"));
        let Scalar::Table(entries) = table else {
            return Err(in_pool("expected a table (`url = ...`)".into()));
        };
        let mut url = None;
        let mut required = false;
        let mut password_file = None;
        let mut params = Vec::new();
        for (key, value) in entries {
            match (key.as_str(), value) {
                ("url", Scalar::Text(u)) => url = Some(u),
                ("url", _) => return Err(in_pool("`url` must be a string".into())),
                ("password_file", Scalar::Text(p)) => password_file = Some(p),
                ("password_file", _) => {
                    return Err(in_pool("`password_file` must be a string (a path)".into()));
                }
                ("required", Scalar::Bool(b)) => required = b,
                ("required", other) => {
                    required = parse::switch("required", &other.to_string())
                        .map_err(|e| in_pool(e.to_string()))?;
                }
                (_, Scalar::Table(_)) => {
                    return Err(in_pool(format!("`{key}` must be a value, not a table")));
                }
                (k, v) if POOL_KEYS.contains(&k) => params.push((k.to_owned(), v.to_string())),
                _ => {
                    return Err(in_pool(format!(
                        "unknown setting `{key}`; known: url, required, password_file, {}",
                        POOL_KEYS.join(", ")
                    )));
                }
            }
        }
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Err(in_pool("`url` is missing".into()));
        };
        params.sort();
        let password_file_from = password_file.as_ref().map(|_| {
            (
                format!("[pools.{name}] password_file"),
                Source::File(file.to_owned()),
            )
        });
        named.push(NamedPool {
            name,
            url,
            params,
            required,
            password_file,
            password_file_from,
        });
    }
    Ok(named)
}
