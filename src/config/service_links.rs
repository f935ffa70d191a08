//! Kubernetes' service-link variables: for every Service in the namespace each pod gets
//! `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`, `<NAME>_SERVICE_PORT_<PORT NAME>`,
//! `<NAME>_PORT=tcp://<ip>:<port>` and `<NAME>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]`. A Service
//! named `dbservice` (or `dbservice-<anything>`) puts them under our `DBSERVICE_` prefix, where
//! they would read as unknown settings; they are recognised by shape and left out.

/// Whether `name=value` has the shape of a variable Kubernetes injects for a Service.
///
/// `<NAME>_PORT` is also how our own `port` and `management_port` are spelled under the
/// prefix, so it counts only with a `proto://host:port` value, which no port setting accepts.
pub(crate) fn is_service_link(name: &str, value: &str) -> bool {
    if name.ends_with("_SERVICE_HOST") || name.ends_with("_SERVICE_PORT") {
        return true;
    }
    if name.contains("_SERVICE_PORT_") {
        return true;
    }
    if name.ends_with("_PORT") && is_link_address(value) {
        return true;
    }
    // `_PORT_<n>_<PROTO>` and its `_PROTO`, `_PORT`, `_ADDR` parts; the Service's own name may
    // contain `_PORT_` too, so every occurrence is tried.
    name.match_indices("_PORT_")
        .any(|(at, sep)| is_numbered_port(&name[at + sep.len()..]))
}

/// `<n>_<PROTO>` optionally followed by `_PROTO`, `_PORT` or `_ADDR`.
fn is_numbered_port(rest: &str) -> bool {
    let Some((number, rest)) = rest.split_once('_') else {
        return false;
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (proto, part) = rest.split_once('_').unwrap_or((rest, ""));
    matches!(proto, "TCP" | "UDP" | "SCTP") && matches!(part, "" | "PROTO" | "PORT" | "ADDR")
}

/// `tcp://10.0.0.1:80` (also `udp://`, `sctp://`, and a bracketed IPv6 host).
fn is_link_address(value: &str) -> bool {
    let Some((proto, address)) = value.split_once("://") else {
        return false;
    };
    matches!(proto, "tcp" | "udp" | "sctp")
        && address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        })
}

#[cfg(test)]
#[path = "tests/service_links.rs"]
mod tests;
