//! Where a [`DbConfig`]'s passwords come from besides its URLs: which sources the URL and the
//! environment name (filled by [`DbConfig::from_parts`]), the password file and the provider
//! set on top, and the `password` entry of [`DbConfig::sources`]. Nothing here reads a file:
//! [`crate::secrets`] does, when connections are opened, so a rotated secret is picked up.

use std::path::PathBuf;
use std::sync::Arc;

use super::backend::Backend;
use super::credentials::{CredentialSources, CredentialsProvider};
use super::error::ConfigError;
use super::profile::Source;
use super::url::{PASSFILE, SplitUrl};
use super::{DbConfig, NamedPath};

/// The setting a password file is named by unless a named pool's says otherwise.
pub(crate) const PASSWORD_FILE: &str = "DATABASE_PASSWORD_FILE";

/// The [`Sources`](super::Sources) key of where the password file's setting came from.
pub(crate) const PASSWORD_FILE_KEY: &str = "database_password_file";

/// The [`Sources`](super::Sources) key of where the password in effect comes from.
pub(crate) const PASSWORD_KEY: &str = "password";

/// How [`DbConfig::from_parts`] reads the environment: the process's, or a map in tests.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The sources `split` and the environment name. libpq's passfile settings are PostgreSQL's
/// only; an empty variable counts as unset, as in libpq.
pub(super) fn sources_of(split: &SplitUrl, env: EnvLookup<'_>) -> CredentialSources {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let env_password = match split.backend {
        Backend::Postgres => var("PGPASSWORD").map(|v| ("PGPASSWORD", v)),
        Backend::MySql => var("MYSQL_PWD").map(|v| ("MYSQL_PWD", v)),
        Backend::Sqlite => None,
    };
    let mut sources = CredentialSources {
        env_password,
        ..CredentialSources::default()
    };
    if split.backend != Backend::Postgres {
        return sources;
    }
    let named = |setting: &str, path: String| NamedPath {
        setting: setting.to_owned(),
        path: PathBuf::from(path),
    };
    sources.passfile = match &split.passfile {
        Some(path) => Some(named(PASSFILE, path.clone())),
        None => var("PGPASSFILE").map(|path| named("PGPASSFILE", path)),
    };
    if sources.passfile.is_none() {
        sources.default_passfile = var("HOME").map(|home| NamedPath {
            setting: "~/.pgpass".into(),
            path: PathBuf::from(home).join(".pgpass"),
        });
    }
    sources
}

/// The refusal of a `passfile` on a URL other than the pool's main one (`on`): one passfile
/// serves every URL of a pool, as the runtime reads one set of sources per configuration.
pub(super) fn passfile_elsewhere(on: &str, split: &SplitUrl) -> Result<(), ConfigError> {
    match &split.passfile {
        Some(path) => Err(ConfigError::InvalidValue {
            param: PASSFILE.into(),
            value: path.clone(),
            reason: format!(
                "given on {on}; set passfile on DATABASE_URL: it applies to every URL of the pool"
            ),
        }),
        None => Ok(()),
    }
}

impl DbConfig {
    /// Reads the password from a file when each connection is opened, so a rotated secret
    /// (a Kubernetes Secret volume, Docker secrets, a Vault agent's output) is used without a
    /// restart. The file holds the password alone; a trailing newline is not part of it. A
    /// password in the URL wins over the file; a [provider](Self::with_credentials) over both.
    /// Replica and direct URLs without their own password use it too.
    ///
    /// The file is read when the pool starts (a missing file is reported then), not here.
    /// Refused on SQLite, which has no password, and for an empty path.
    ///
    /// ```
    /// let cfg = dbservice::config::DbConfig::from_url("postgres://app@db/app")?
    ///     .with_password_file("/run/secrets/db_password")?;
    /// assert_eq!(cfg.sources()["password"].to_string(), "code");
    /// assert!(dbservice::config::DbConfig::from_url("sqlite::memory:")?
    ///     .with_password_file("/run/secrets/db_password")
    ///     .is_err());
    /// # Ok::<(), dbservice::config::ConfigError>(())
    /// ```
    pub fn with_password_file(self, path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        self.with_password_file_named(PASSWORD_FILE, path)
    }

    /// [`with_password_file`](Self::with_password_file) under the name of the setting that
    /// gave it (`[pools.<name>] password_file`, `DATABASE_PASSWORD_FILE_<NAME>`), which the
    /// refusals here and the runtime's messages show.
    pub(crate) fn with_password_file_named(
        mut self,
        setting: &str,
        path: impl Into<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let path = path.into();
        self.refuse_on_sqlite(setting)?;
        if path.to_string_lossy().trim().is_empty() {
            return Err(ConfigError::InvalidValue {
                param: setting.into(),
                value: path.to_string_lossy().into_owned(),
                reason: "must name the file that holds the password".into(),
            });
        }
        self.credentials.password_file = Some(NamedPath {
            setting: setting.to_owned(),
            path,
        });
        self.sources.insert(PASSWORD_FILE_KEY.into(), Source::Code);
        self.note_password();
        Ok(self)
    }

    /// Asks `provider` for the user and password of each new connection (RDS/Aurora IAM
    /// tokens, Azure Entra tokens, Vault dynamic secrets), for the primary, direct and replica
    /// URLs alike. It replaces every other source, the URLs' own passwords included.
    ///
    /// Refused on SQLite, which has no password: a provider there would be silently unused.
    pub fn with_credentials(self, provider: impl CredentialsProvider) -> Result<Self, ConfigError> {
        self.with_credentials_arc(Arc::new(provider))
    }

    /// [`with_credentials`](Self::with_credentials) with a provider the application shares
    /// (with other pools, or with its own clients).
    pub fn with_credentials_arc(
        mut self,
        provider: Arc<dyn CredentialsProvider>,
    ) -> Result<Self, ConfigError> {
        self.refuse_on_sqlite("credentials provider")?;
        self.credentials.provider = Some(provider);
        self.note_password();
        Ok(self)
    }

    /// The password sources besides the URLs' own, for the runtime that reads them.
    pub(crate) fn credential_sources(&self) -> &CredentialSources {
        &self.credentials
    }

    /// Whether `DATABASE_URL` carries its own password (then only a provider replaces it).
    pub(crate) fn url_has_password(&self) -> bool {
        self.url.has_password()
    }

    /// Whether `DATABASE_URL_DIRECT` carries its own password; `false` when it is not set.
    /// (Each replica is a `DbConfig` of its own: ask it with
    /// [`url_has_password`](Self::url_has_password).)
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    pub(crate) fn direct_url_has_password(&self) -> bool {
        self.direct.as_ref().is_some_and(SplitUrl::has_password)
    }

    /// Records where the password file's setting came from (the settings' layers), for
    /// [`sources`](Self::sources); no effect without a password file.
    pub(crate) fn note_password_file_source(&mut self, source: Source) {
        if self.credentials.password_file.is_some() {
            self.sources.insert(PASSWORD_FILE_KEY.into(), source);
            self.note_password();
        }
    }

    /// Sets the `password` entry of the sources to the source in effect, in the runtime's
    /// precedence: provider, the URL's own, the password file, the passfile, `PGPASSWORD` /
    /// `MYSQL_PWD`; `default` for `~/.pgpass` or none at all.
    pub(super) fn note_password(&mut self) {
        let c = &self.credentials;
        let source = if c.provider.is_some() {
            Source::Code
        } else if self.url.has_password() {
            Source::Url
        } else if c.password_file.is_some() {
            self.sources
                .get(PASSWORD_FILE_KEY)
                .cloned()
                .unwrap_or(Source::Code)
        } else if let Some(passfile) = &c.passfile {
            if passfile.setting == PASSFILE {
                Source::Url
            } else {
                Source::Environment
            }
        } else if c.env_password.is_some() {
            Source::Environment
        } else {
            Source::Default
        };
        self.sources.insert(PASSWORD_KEY.into(), source);
    }

    fn refuse_on_sqlite(&self, setting: &str) -> Result<(), ConfigError> {
        if self.url.backend == Backend::Sqlite {
            return Err(ConfigError::Conflict {
                first: setting.into(),
                second: "DATABASE_URL".into(),
                reason: "DATABASE_URL is a SQLite URL, and SQLite has no password".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "tests/password.rs"]
mod tests;

#[cfg(test)]
#[path = "tests/password_settings.rs"]
mod settings_tests;
