//! The passwords of new connections, read from their sources when each connection is opened:
//! files are re-read only when they changed (a `stat` per connect otherwise), the last good
//! secret is kept (with one WARN) when a file turns bad after startup, and a provider is asked
//! within a bound. Nothing here logs or returns a secret in a message.

// A SQLite-only build has no password to read: the sources stay, unused.
#![cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]

mod file;
mod pgpass;
#[cfg(all(test, unix))]
mod tests;

use std::time::Duration;

use crate::config::CredentialSources;
use crate::config::CredentialsRequest;
use crate::config::NamedPath;

use self::file::Rules;
use self::file::Watched;
use self::pgpass::Passfile;
use self::pgpass::Password;

/// The source label of a provider's answers.
const PROVIDER: &str = "credentials provider";

/// Why no credentials could be had. Messages name the setting, the file and the line, never
/// the content.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SecretError {
    /// A file could not be read (missing, unreadable, not a file).
    #[error("{setting} {path}: {reason}")]
    File {
        setting: String,
        path: String,
        reason: String,
    },
    /// A password file holds nothing but whitespace.
    #[error("{setting} {path}: the file is empty")]
    Empty { setting: String, path: String },
    /// A passfile line is not `host:port:database:user:password`.
    #[error("{setting} {path} line {line}: {reason}")]
    Malformed {
        setting: String,
        path: String,
        line: usize,
        reason: String,
    },
    /// The provider returned an error (its text).
    #[error("credentials provider failed: {0}")]
    Provider(String),
    /// The provider did not answer within the bound.
    #[error("credentials provider gave no answer within {0:?}")]
    ProviderTimedOut(Duration),
}

impl SecretError {
    /// As a configuration error at startup: the setting as the parameter, the file as the
    /// value (a path, never the content).
    pub fn into_config_error(self) -> crate::config::ConfigError {
        use crate::config::ConfigError;
        match self {
            SecretError::File {
                setting,
                path,
                reason,
            } => ConfigError::InvalidValue {
                param: setting,
                value: path,
                reason,
            },
            SecretError::Empty { setting, path } => ConfigError::InvalidValue {
                param: setting,
                value: path,
                reason: "the file is empty".into(),
            },
            SecretError::Malformed {
                setting,
                path,
                line,
                reason,
            } => ConfigError::InvalidValue {
                param: setting,
                value: path,
                reason: format!("line {line}: {reason}"),
            },
            other => ConfigError::Source(other.to_string()),
        }
    }

    /// Worth retrying at startup: a provider may answer next time; a bad file will not change
    /// by itself within `connect_retry_timeout`... unless it is being written, which startup
    /// does not wait for.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SecretError::Provider(_) | SecretError::ProviderTimedOut(_)
        )
    }
}

/// The credentials for one connection, and where they came from.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Replaces the URL's user.
    pub user: Option<String>,
    /// `None`: none of the sources had one (the URL's own, or none, is used).
    pub password: Option<String>,
    /// Where the password came from, for messages: `DATABASE_PASSWORD_FILE /run/secrets/pw`,
    /// `passfile /home/app/.pgpass`, `PGPASSWORD`, `credentials provider`; `None` when it is
    /// the URL's or there is none.
    pub source: Option<String>,
    /// A fresh read may give another answer (a file or a provider).
    pub rereadable: bool,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<not shown>"))
            .field("source", &self.source)
            .finish()
    }
}

/// The password sources of one configuration (shared by its primary, direct and replica
/// endpoints), with each file's last good content.
pub(crate) struct Secrets {
    sources: CredentialSources,
    /// `sources.password_file`, read.
    password_file: Option<Watched<Password>>,
    /// `sources.passfile`, read.
    passfile: Option<Watched<Passfile>>,
    /// `sources.default_passfile`, read (absent is fine).
    default_passfile: Option<Watched<Passfile>>,
}

impl Secrets {
    /// Reads each configured file once: a missing, unreadable or empty password file, or a
    /// malformed passfile line, is an error now. A passfile readable by group or others is
    /// ignored with a WARN naming the file and its mode, as libpq does.
    pub fn open(sources: CredentialSources) -> Result<Self, SecretError> {
        let strict = Rules {
            check_mode: false,
            lenient: false,
        };
        let password_file = watch(&sources.password_file, strict, |file, bytes, _, _| {
            pgpass::password_file(file, bytes)
        })?;
        let passfile = watch(
            &sources.passfile,
            Rules {
                check_mode: true,
                lenient: false,
            },
            pgpass::passfile,
        )?;
        let default_passfile = watch(
            &sources.default_passfile,
            Rules {
                check_mode: true,
                lenient: true,
            },
            pgpass::passfile,
        )?;
        Ok(Self {
            sources,
            password_file,
            passfile,
            default_passfile,
        })
    }

    /// Whether any source besides the URL's own password is configured (else connections
    /// use the driver's options untouched).
    pub fn is_configured(&self) -> bool {
        let s = &self.sources;
        s.provider.is_some()
            || s.password_file.is_some()
            || s.passfile.is_some()
            || s.env_password.is_some()
            || s.default_passfile.is_some()
    }

    /// Whether a provider replaces every other source (the URL's password too).
    pub fn has_provider(&self) -> bool {
        self.sources.provider.is_some()
    }

    /// The credentials for one new connection to `request`'s server. `url_password`: the URL
    /// carries its own (then only a provider replaces it). `fresh`: read every source again
    /// whatever the caches say (the retry after a refused password). `bound`: how long a
    /// provider may take.
    pub async fn resolve(
        &self,
        request: &CredentialsRequest<'_>,
        url_password: bool,
        fresh: bool,
        bound: Duration,
    ) -> Result<Resolved, SecretError> {
        if let Some(provider) = &self.sources.provider {
            let answer = tokio::time::timeout(bound, provider.credentials(request))
                .await
                .map_err(|_| SecretError::ProviderTimedOut(bound))?
                .map_err(|e| SecretError::Provider(e.to_string()))?;
            return Ok(Resolved {
                user: answer.user,
                password: answer.password,
                source: Some(String::from(PROVIDER)),
                rereadable: true,
            });
        }
        if url_password {
            return Ok(Resolved::default());
        }
        if let Some(watched) = &self.password_file
            && let Some(password) = watched.current(fresh)?
        {
            return Ok(from_file(password.0.clone(), watched.file()));
        }
        if let Some(found) = lookup(&self.passfile, request, fresh)? {
            return Ok(found);
        }
        if let Some((variable, value)) = &self.sources.env_password {
            return Ok(Resolved {
                user: None,
                password: Some(value.clone()),
                source: Some((*variable).to_owned()),
                rereadable: false,
            });
        }
        let found = lookup(&self.default_passfile, request, fresh)?;
        Ok(found.unwrap_or_default())
    }

    /// Where passwords come from, for the settings' provenance (never a value):
    /// e.g. `DATABASE_PASSWORD_FILE /run/secrets/db_password`, `credentials provider`.
    /// Several sources are listed in precedence order, joined by ` > `; none is `url`.
    pub fn describe(&self) -> String {
        let s = &self.sources;
        // (source, whether it always answers): a passfile without a matching line falls
        // through to the next source, the others end the list.
        let candidates = [
            (s.provider.as_ref().map(|_| String::from(PROVIDER)), true),
            (s.password_file.as_ref().map(NamedPath::to_string), true),
            (s.passfile.as_ref().map(NamedPath::to_string), false),
            (s.env_password.as_ref().map(|(v, _)| (*v).to_owned()), true),
            (s.default_passfile.as_ref().map(NamedPath::to_string), false),
        ];
        let mut listed: Vec<String> = Vec::new();
        for (source, ends) in candidates {
            if let Some(source) = source {
                listed.push(source);
                if ends {
                    break;
                }
            }
        }
        if listed.is_empty() {
            String::from("url")
        } else {
            listed.join(" > ")
        }
    }
}

/// Opens `named`'s file under `rules`, if the configuration names one.
fn watch<T>(
    named: &Option<NamedPath>,
    rules: Rules,
    parse: file::Parser<T>,
) -> Result<Option<Watched<T>>, SecretError> {
    named
        .as_ref()
        .map(|n| Watched::open(n.clone(), rules, parse))
        .transpose()
}

/// The answer of a file: it may change, so a refused password is worth a fresh read.
fn from_file(password: String, named: &NamedPath) -> Resolved {
    Resolved {
        user: None,
        password: Some(password),
        source: Some(named.to_string()),
        rereadable: true,
    }
}

/// The password of `watched`'s first line matching `request`; `None` when no line matches
/// (or the file is ignored), so that the next source is asked.
fn lookup(
    watched: &Option<Watched<Passfile>>,
    request: &CredentialsRequest<'_>,
    fresh: bool,
) -> Result<Option<Resolved>, SecretError> {
    let Some(watched) = watched else {
        return Ok(None);
    };
    let Some(passfile) = watched.current(fresh)? else {
        return Ok(None);
    };
    Ok(passfile
        .lookup(request)
        .map(|password| from_file(password.to_owned(), watched.file())))
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("sources", &self.sources)
            .finish()
    }
}
