//! Read-your-writes over HTTP: the `Db-Position` header.
//!
//! With read replicas (`DATABASE_REPLICA_URLS`), every successful write answers with
//! `Db-Position: <WAL position>` (the instance's write position once the write committed). A
//! GET that carries it back reads from a replica only once that replica has replayed the
//! position, waiting at most `replica_wait`, else from the primary: the client sees its own
//! writes whichever instance serves it. A GET without it sees every write the serving instance
//! committed before it. Without replicas no header is sent and GETs read from the primary.

use actix_web::{HttpRequest, HttpResponseBuilder};

use crate::tenancy::Scope;
use dbservice::DbService;
use dbservice::http::ApiError;
use dbservice::replica::{PositionError, Reader, WalPosition};

/// The header name, on responses to writes and on requests that read.
pub const DB_POSITION: &str = "Db-Position";

/// The executor for a GET: a replica reader bound to the client's `Db-Position` if it sent
/// one, else to this instance's writes. A malformed header, or a position the primary has not
/// reached (a forged token would send every read to the primary after `replica_wait`), is a
/// 400 naming it. The reader carries the request's tenant, if any.
pub(crate) async fn reader(db: &Scope, req: &HttpRequest) -> Result<Reader, ApiError> {
    let Some(value) = req.headers().get(DB_POSITION) else {
        return Ok(db.read());
    };
    let invalid = |detail: String| {
        ApiError::bad_request(
            "invalid_db_position",
            format!("header {DB_POSITION}: {detail}"),
        )
    };
    let text = value
        .to_str()
        .map_err(|_| invalid("not visible ASCII".into()))?;
    let position: WalPosition = text.parse().map_err(|e| invalid(format!("{e}")))?;
    match db.read_after(position).verified().await {
        Ok(reader) => Ok(reader),
        Err(ahead @ PositionError::Ahead { .. }) => Err(invalid(ahead.to_string())),
        Err(other) => Err(ApiError::from(sea_orm::DbErr::from(other))),
    }
}

/// Adds `Db-Position` to a write's response (with replicas only).
pub(crate) fn tell_position(db: &DbService, response: &mut HttpResponseBuilder) {
    if let Some(position) = db.write_position() {
        response.insert_header((DB_POSITION, position.to_string()));
    }
}
