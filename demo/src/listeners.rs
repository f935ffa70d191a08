//! The demo's listeners: the public one (API and the orchestrator's probes) and, when
//! `management_port` is set, a management one for `/metrics` and `/health/db`, which reveal
//! configuration, host and database names, and traffic figures that the public has no business
//! reading. Both are served by the same workers; [`route_by_listener`] keeps each to its paths.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use dbservice::http::ApiError;
use dbservice::{Error, Result};

/// Which port is the management listener's, if there is one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    pub management_port: Option<u16>,
}

/// Binds `host:port` with a listen backlog of `backlog` (std's `bind` fixes it at 128).
pub(crate) fn bind(host: &str, port: u16, backlog: u32) -> Result<TcpListener> {
    let cannot =
        |e: &dyn std::fmt::Display| Error::Startup(format!("cannot listen on {host}:{port}: {e}"));
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(|e| cannot(&e))?
        .next()
        .ok_or_else(|| cannot(&"the host resolves to no address"))?;
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| cannot(&e))?;
    // A restarted server can bind while connections of the old one linger in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(|e| cannot(&e))?;
    socket.bind(addr).map_err(|e| cannot(&e))?;
    let listener = socket.listen(backlog).map_err(|e| cannot(&e))?;
    listener.into_std().map_err(|e| cannot(&e))
}

/// The port a listener is bound to (the one picked, for port 0).
pub(crate) fn port_of(listener: &TcpListener) -> Result<u16> {
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Startup(format!("cannot read the bound address: {e}")))
}

/// Paths only the management listener serves when there is one.
fn management_only(path: &str) -> bool {
    path == "/metrics" || path == "/health/db"
}

/// Paths the management listener serves.
fn on_management(path: &str) -> bool {
    management_only(path) || path.starts_with("/health/")
}

/// actix middleware: with a management listener, `/metrics` and `/health/db` answer 404 on
/// the public one, and the management one answers only those and the probes.
pub(crate) async fn route_by_listener(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> std::result::Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let management = req
        .app_data::<web::Data<Split>>()
        .and_then(|s| s.management_port);
    if let Some(port) = management {
        let on_management_port = req.app_config().local_addr().port() == port;
        let path = req.path();
        let allowed = if on_management_port {
            on_management(path)
        } else {
            !management_only(path)
        };
        if !allowed {
            let res = actix_web::ResponseError::error_response(&ApiError::not_found(
                "not_found",
                "no such resource on this listener",
            ));
            return Ok(req.into_response(res).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
