//! libpq's host lists in a PostgreSQL URL, split off before `Url::parse` (which takes one
//! host): `postgres://u@db1:5432,[::1]:5433,db3/app`, and the query forms
//! `?host=db1,db2&port=5432,5433`.
//!
//! Only the authority is cut here (on commas outside `[...]`, then `:port`); each host is
//! checked by the `url` crate, and the query is read with its `form_urlencoded`. Errors name
//! the part by position and never quote the URL: a fragment could be a mis-encoded password.

use std::net::Ipv6Addr;

use percent_encoding::percent_decode_str;
use url::{Host, Url, form_urlencoded};

use super::error::ConfigError;
use super::hosts::{DEFAULT_PORT, HostSpec};

/// A PostgreSQL URL with its host list taken out. No `Debug`: it holds the password.
pub(super) struct HostList {
    /// The URL with only the first host (and its port) in the authority, everything else as
    /// written: what `Url::parse` and the driver get. A single-host URL comes back unchanged.
    pub single_host_url: String,
    /// Every host, in order; empty when the URL names none (the driver's default socket).
    pub hosts: Vec<HostSpec>,
    /// No host but a `port` in the query: the driver still needs that port from the query.
    pub keep_query_port: bool,
}

/// Splits the host list of `raw` (trimmed). `None` for URLs other than `postgres://` and
/// `postgresql://` (which `Url::parse` handles alone); a MySQL URL listing several hosts is
/// refused.
pub(super) fn pre_split(raw: &str) -> Result<Option<HostList>, ConfigError> {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Ok(None);
    };
    // The authority ends where the path, query or fragment starts, as in the `url` crate; its
    // userinfo ends at its last `@` (also the `url` crate's rule).
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (userinfo, list) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => {}
        "mysql" | "mariadb" if list.contains(',') => {
            return Err(invalid(
                "host",
                "a comma-separated list of hosts is only supported in PostgreSQL URLs",
            ));
        }
        _ => return Ok(None),
    }
    let before_query = tail.split('?').next().unwrap_or_default();
    if userinfo.is_none() && before_query.contains('@') {
        // `u:pa/ss@db` cuts the authority at the `/`: the host would be `u` and the port `pa`.
        return Err(invalid(
            "user info",
            "an `@` follows the host: percent-encode `/`, `?`, `#` and `@` in the user name and \
             password (`/` as %2F, `@` as %40)",
        ));
    }

    let query = tail
        .split('#')
        .next()
        .and_then(|t| t.split_once('?'))
        .map_or("", |(_, q)| q);
    let (mut q_host, mut q_port, mut hostaddr) = (None, None, false);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        // Later values win, as libpq stores query values over earlier ones.
        match &*key {
            "host" => q_host = Some(value.into_owned()),
            "port" => q_port = Some(value.into_owned()),
            "hostaddr" => hostaddr = true,
            _ => {}
        }
    }

    let items = if list.is_empty() {
        Vec::new()
    } else {
        split_outside_brackets(list)
    };
    let n = items.len();
    let mut authority_hosts = Vec::with_capacity(n);
    let mut authority_ports = Vec::with_capacity(n);
    for (i, item) in items.iter().enumerate() {
        let (host, port) = split_item(item).map_err(|r| invalid(&host_part(i, n), r))?;
        authority_hosts.push(host);
        authority_ports.push(port.unwrap_or_default());
    }

    // A `host` in the query replaces the authority's hosts; the authority's ports still count
    // (libpq keeps them as its `port` option) unless the query has `port` too.
    let (names, from_authority): (Vec<(String, String)>, bool) = match &q_host {
        Some(value) => {
            let parts: Vec<&str> = value.split(',').collect();
            let m = parts.len();
            let parsed = parts
                .iter()
                .enumerate()
                .map(|(i, p)| query_host(p).map_err(|r| invalid(&host_part(i, m), r)))
                .collect::<Result<_, _>>()?;
            (parsed, false)
        }
        None => {
            let parsed = authority_hosts
                .iter()
                .enumerate()
                .map(|(i, h)| authority_host(h).map_err(|r| invalid(&host_part(i, n), r)))
                .collect::<Result<_, _>>()?;
            (parsed, true)
        }
    };
    // Ports written in the authority count only when at least one is there: `db1,db2` with
    // `?host=a` is then one host on the default port (libpq would count two empty ports).
    let port_texts: Option<Vec<&str>> = match &q_port {
        Some(value) => Some(value.split(',').collect()),
        None if authority_ports.iter().any(|p| !p.is_empty()) => Some(authority_ports.clone()),
        None => None,
    };
    let ports = match_ports(port_texts.as_deref(), names.len())?;

    if hostaddr && names.len() > 1 {
        return Err(invalid(
            "hostaddr",
            "is only supported with a single host (a scope choice of dbservice: addresses are \
             not matched to a host list); write the addresses in the host list instead",
        ));
    }
    if userinfo.is_some() && names.is_empty() {
        return Err(invalid(
            "host",
            "missing: a URL with a user name or password must name a host (for a Unix socket, \
             add `?host=/path/to/socket/dir`)",
        ));
    }

    let hosts: Vec<HostSpec> = names
        .iter()
        .zip(&ports)
        .map(|((host, _), port)| HostSpec {
            host: host.clone(),
            port: port.unwrap_or(DEFAULT_PORT),
        })
        .collect();
    let single_host_url = match (names.first(), ports.first(), items.first()) {
        // As written, so a single-host URL reaches the driver byte for byte as before.
        (Some(_), _, Some(item)) if from_authority && q_port.is_none() => {
            rebuild(scheme, userinfo, item, tail)
        }
        (Some((_, written)), Some(port), _) => {
            let host = match port {
                Some(p) => format!("{written}:{p}"),
                None => written.clone(),
            };
            rebuild(scheme, userinfo, &host, tail)
        }
        _ => raw.to_owned(),
    };
    Ok(Some(HostList {
        single_host_url,
        keep_query_port: names.is_empty() && q_port.is_some(),
        hosts,
    }))
}

/// `scheme://[userinfo@]host` followed by the rest as written.
fn rebuild(scheme: &str, userinfo: Option<&str>, host: &str, tail: &str) -> String {
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{host}{tail}"),
        None => format!("{scheme}://{host}{tail}"),
    }
}

fn invalid(part: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidHosts {
        part: part.to_owned(),
        reason: reason.into(),
    }
}

/// `host 2 of 3`, or `host` when there is only one.
fn host_part(i: usize, n: usize) -> String {
    if n > 1 {
        format!("host {} of {n}", i + 1)
    } else {
        "host".to_owned()
    }
}

const EMPTY: &str = "the host name is empty (two commas in a row, or one at an end?)";

/// Splits on the commas that are not inside `[...]`.
fn split_outside_brackets(list: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut in_brackets, mut start) = (false, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ',' if !in_brackets => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items
}

/// One authority item: its host as written (`[v6]` with brackets) and its port text, if any.
fn split_item(item: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = item.strip_prefix('[') {
        let close = inner.find(']').ok_or("`[` has no matching `]`")?;
        let (host, rest) = item.split_at(close + 2);
        return match rest.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if rest.is_empty() => Ok((host, None)),
            None => Err("only `:port` may follow the `]` of an IPv6 address".into()),
        };
    }
    match item.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            Err("an IPv6 address needs brackets, as in [::1]:5432".into())
        }
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((item, None)),
    }
}

/// An authority host checked by the `url` crate: the bare name (percent-decoded; a socket
/// directory from `%2F...`) or IPv6 address, and how it is written in an authority.
fn authority_host(written: &str) -> Result<(String, String), String> {
    if written.is_empty() {
        return Err(EMPTY.into());
    }
    let probe = Url::parse(&format!("postgres://{written}/"))
        .map_err(|e| format!("not a valid host name or address ({e})"))?;
    let bare = match probe.host() {
        Some(Host::Ipv6(addr)) => addr.to_string(),
        Some(Host::Ipv4(addr)) => addr.to_string(),
        Some(Host::Domain(name)) => percent_decode_str(name)
            .decode_utf8()
            .map_err(|_| "the host name is not UTF-8 once percent-decoded")?
            .into_owned(),
        None => return Err(EMPTY.into()),
    };
    Ok((bare, written.to_owned()))
}

/// A host from the query's `host` (already percent-decoded): a socket directory, an IPv6
/// address (brackets optional) or a name the `url` crate accepts as a host.
fn query_host(value: &str) -> Result<(String, String), String> {
    if value.is_empty() {
        return Err(EMPTY.into());
    }
    if value.starts_with('/') {
        let spec = HostSpec {
            host: value.to_owned(),
            port: DEFAULT_PORT,
        };
        return Ok((spec.host.clone(), spec.url_host()));
    }
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    if bare.contains(':') {
        let addr: Ipv6Addr = bare
            .parse()
            .map_err(|_| "not a host name or an IPv6 address (ports go in `port=`)")?;
        return Ok((addr.to_string(), format!("[{addr}]")));
    }
    Url::parse(&format!("postgres://{value}/"))
        .map_err(|e| format!("not a valid host name or address ({e})"))?;
    Ok((value.to_owned(), value.to_owned()))
}

/// libpq's rule: one port for every host, or exactly one per host. `None` per host where no
/// port is written (the default); with no host at all, one port is allowed (the default
/// host's).
fn match_ports(texts: Option<&[&str]>, hosts: usize) -> Result<Vec<Option<u16>>, ConfigError> {
    let Some(texts) = texts else {
        return Ok(vec![None; hosts]);
    };
    if texts.len() == 1 {
        let port = port(texts[0]).map_err(|r| invalid("port", r))?;
        return Ok(vec![port; hosts]);
    }
    if texts.len() != hosts {
        return Err(invalid(
            "port",
            format!(
                "could not match {} port numbers to {} hosts (write one port for every host, \
                 or exactly one per host)",
                texts.len(),
                hosts.max(1)
            ),
        ));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| port(t).map_err(|r| invalid(&host_part(i, hosts), format!("port is {r}"))))
        .collect()
}

/// A port number; empty means the default, as in libpq.
fn port(text: &str) -> Result<Option<u16>, &'static str> {
    if text.is_empty() {
        return Ok(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number (1-65535)");
    }
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err("out of range (1-65535)"),
    }
}
