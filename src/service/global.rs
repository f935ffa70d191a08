//! The process-wide instance: a write-once `OnceLock`. Library code never reaches for it;
//! it is for a backend's `main` and code that cannot be handed a `DbService`.

use std::sync::OnceLock;

use super::DbService;
use crate::config::DbConfig;
use crate::error::{Error, Result};

static GLOBAL: OnceLock<DbService> = OnceLock::new();

impl DbService {
    /// Installs `db` as the process-wide instance. Fails if one is installed already.
    pub fn install_global(db: DbService) -> Result<&'static DbService> {
        GLOBAL.set(db).map_err(|_| Error::AlreadyInitialized)?;
        GLOBAL.get().ok_or(Error::AlreadyInitialized)
    }

    /// The process-wide instance, if one was installed.
    pub fn global() -> Option<&'static DbService> {
        GLOBAL.get()
    }

    /// Creates the service, waits for the database ([`DbService::connect`]) and installs it
    /// as the process-wide instance.
    pub async fn init(config: DbConfig) -> Result<&'static DbService> {
        if GLOBAL.get().is_some() {
            return Err(Error::AlreadyInitialized);
        }
        let db = DbService::new(config)?;
        db.connect().await?;
        Self::install_global(db)
    }
}
