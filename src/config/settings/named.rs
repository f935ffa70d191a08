//! Named pools: `[pools.<name>]` in the config file and `DATABASE_URL_<NAME>`.

use super::super::DbConfig;
use super::super::error::ConfigError;
use super::super::params::POOL_KEYS;
use super::super::parse;
use super::scalar::Scalar;

/// One named pool's settings: `[pools.<name>]` in the config file (`url`, `required`, and
/// any pool parameter), or `DATABASE_URL_<NAME>` in the environment (which replaces the file's
/// `url` for the same name). Its own URL query wins over `params`, as for the primary.
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
}

impl std::fmt::Debug for NamedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedPool")
            .field("name", &self.name)
            .field("url", &"<set, not shown>")
            .field("params", &self.params)
            .field("required", &self.required)
            .finish()
    }
}

impl NamedPool {
    /// The validated configuration: the URL on top of the table's pool parameters. Errors
    /// are the parameter's; [`Pools`](crate::Pools) adds the pool's name.
    pub fn db_config(&self) -> Result<DbConfig, ConfigError> {
        DbConfig::from_parts(&self.url, &self.params)
    }
}

/// `[pools.<name>]` tables: `url` (required), `required`, and pool parameters.
pub(super) fn named_pools(value: Scalar) -> Result<Vec<NamedPool>, ConfigError> {
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
        let mut params = Vec::new();
        for (key, value) in entries {
            match (key.as_str(), value) {
                ("url", Scalar::Text(u)) => url = Some(u),
                ("url", _) => return Err(in_pool("`url` must be a string".into())),
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
                        "unknown setting `{key}`; known: url, required, {}",
                        POOL_KEYS.join(", ")
                    )));
                }
            }
        }
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Err(in_pool("`url` is missing".into()));
        };
        params.sort();
        named.push(NamedPool {
            name,
            url,
            params,
            required,
        });
    }
    Ok(named)
}
