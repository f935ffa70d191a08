//! A driver connection of one of the three backends, the server session it is, and the two
//! things done to it whatever its state: a liveness round trip and a polite close.

use std::time::Duration;

#[cfg(feature = "mysql")]
use sea_orm::sqlx::MySqlConnection;
#[cfg(feature = "postgres")]
use sea_orm::sqlx::PgConnection;
#[cfg(feature = "sqlite")]
use sea_orm::sqlx::SqliteConnection;
use sea_orm::sqlx::{self, Connection};

/// A driver connection of one of the three backends.
#[derive(Debug)]
pub(crate) enum RawConn {
    #[cfg(feature = "postgres")]
    Postgres(PgConnection),
    #[cfg(feature = "mysql")]
    MySql(MySqlConnection),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteConnection),
}

impl RawConn {
    /// Whether this is a PostgreSQL connection (false in a build without its driver).
    pub(crate) fn is_postgres(&self) -> bool {
        #[cfg(feature = "postgres")]
        return matches!(self, RawConn::Postgres(_));
        #[cfg(not(feature = "postgres"))]
        return false;
    }
}

/// Which server session a connection is, for a cancel sent over another connection: the
/// session's id there, and what tells that server apart from another one the same address may
/// lead to (a load balancer, a DNS failover): PostgreSQL's `backend_start`, MySQL's
/// `@@hostname:@@port`. A cancel whose side connection does not find both is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionId {
    pub(super) id: u64,
    pub(super) proof: String,
}

/// A connection opened by a connect (`Connector::connect`).
#[derive(Debug)]
pub(crate) struct Opened {
    pub raw: RawConn,
    pub host: usize,
    pub epoch: u64,
    pub session: Option<SessionId>,
}

/// A liveness round trip.
pub(crate) async fn ping(conn: &mut RawConn) -> Result<(), sqlx::Error> {
    match conn {
        #[cfg(feature = "postgres")]
        RawConn::Postgres(c) => c.ping().await,
        #[cfg(feature = "mysql")]
        RawConn::MySql(c) => c.ping().await,
        #[cfg(feature = "sqlite")]
        RawConn::Sqlite(c) => c.ping().await,
    }
}

/// Closes politely (PostgreSQL's `Terminate`, MySQL's `COM_QUIT`), within `bound`.
pub(crate) async fn close(conn: RawConn, bound: Duration) {
    let closing = async {
        match conn {
            #[cfg(feature = "postgres")]
            RawConn::Postgres(c) => c.close().await,
            #[cfg(feature = "mysql")]
            RawConn::MySql(c) => c.close().await,
            #[cfg(feature = "sqlite")]
            RawConn::Sqlite(c) => c.close().await,
        }
    };
    let _ = tokio::time::timeout(bound, closing).await;
}
