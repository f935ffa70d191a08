//! Where a pool's user and password come from besides its URL: a password file
//! (`DATABASE_PASSWORD_FILE`), libpq's passfile (`passfile`, `PGPASSFILE`, `~/.pgpass`), the
//! environment (`PGPASSWORD`, `MYSQL_PWD`), or a [`CredentialsProvider`] set in code. The
//! configuration only names the sources; [`crate::secrets`] reads them for each new connection.

use std::path::PathBuf;
use std::sync::Arc;

/// What a [`CredentialsProvider`] is asked for: the server one new connection goes to.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CredentialsRequest<'a> {
    /// `postgresql` or `mysql`.
    pub backend: &'static str,
    /// The host (name, address or socket directory) this connection goes to.
    pub host: &'a str,
    /// Its port.
    pub port: u16,
    /// The database named by the URL, if any.
    pub database: Option<&'a str>,
    /// The user named by the URL (the driver's default when it names none).
    pub user: &'a str,
    /// The server just refused what the last answer gave: a provider that caches should
    /// fetch anew (the connection is tried once more with the new answer, if it differs).
    pub refused: bool,
}

/// What a [`CredentialsProvider`] answers. `Debug` never shows the password.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials {
    /// The user to log in as; `None` keeps the URL's.
    pub user: Option<String>,
    /// The password (or token); `None` sends none.
    pub password: Option<String>,
}

impl Credentials {
    /// A password for the URL's user.
    pub fn password(password: impl Into<String>) -> Self {
        Self {
            user: None,
            password: Some(password.into()),
        }
    }

    /// A user and its password (an IAM token's user, a Vault dynamic role's generated name).
    pub fn user_password(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: Some(user.into()),
            password: Some(password.into()),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<not shown>"))
            .finish()
    }
}

/// The error a provider returns; its text is shown in the connect failure, so it must not
/// hold the secret.
pub type ProviderError = Box<dyn std::error::Error + Send + Sync>;

/// Asked for the user and password of each new connection (not of each checkout): RDS/Aurora
/// IAM tokens, Azure Entra tokens, Vault dynamic secrets. The call is bounded by
/// `connect_timeout`; it may cache (a token lives 15 minutes, a connection is opened far more
/// often). The service never logs what it returns.
///
/// A provider replaces every other source, the URL's password included.
#[async_trait::async_trait]
pub trait CredentialsProvider: Send + Sync + 'static {
    /// The credentials for one new connection to `request`'s server.
    async fn credentials(
        &self,
        request: &CredentialsRequest<'_>,
    ) -> Result<Credentials, ProviderError>;
}

/// A file and the setting that named it (for messages: the setting and the path, never the
/// content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPath {
    /// `DATABASE_PASSWORD_FILE`, `password_file`, `passfile`, `PGPASSFILE`, `~/.pgpass`.
    pub setting: String,
    pub path: PathBuf,
}

impl std::fmt::Display for NamedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.setting, self.path.display())
    }
}

/// The sources of one configuration's passwords besides each URL's own, in precedence order.
#[derive(Clone, Default)]
pub(crate) struct CredentialSources {
    /// Replaces every other source.
    pub provider: Option<Arc<dyn CredentialsProvider>>,
    /// A file holding only the password (a trailing newline is not part of it).
    pub password_file: Option<NamedPath>,
    /// A `.pgpass`-format file named by the URL's `passfile` or `PGPASSFILE` (PostgreSQL).
    pub passfile: Option<NamedPath>,
    /// `PGPASSWORD` / `MYSQL_PWD`: (variable, value).
    pub env_password: Option<(&'static str, String)>,
    /// `~/.pgpass` when no passfile is named (PostgreSQL): after `PGPASSWORD`, as libpq.
    pub default_passfile: Option<NamedPath>,
}

impl std::fmt::Debug for CredentialSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSources")
            .field("provider", &self.provider.as_ref().map(|_| "<set>"))
            .field("password_file", &self.password_file)
            .field("passfile", &self.passfile)
            .field("env_password", &self.env_password.as_ref().map(|(v, _)| v))
            .field("default_passfile", &self.default_passfile)
            .finish()
    }
}
